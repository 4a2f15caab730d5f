"""Whole videos as timelines: windows, stitching, scene cuts, and the CLI on generated videos."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from captum_video.timeline import (
    NpyAppender,
    SceneCutDetector,
    WindowStitcher,
    explain_video,
    iter_video_frames,
    probe_video,
    window_starts,
)
from captum_video.visualization import VideoEncoder
from tests.helpers import assert_model_unchanged, model_snapshot

CLI = [sys.executable, "-m", "captum_video.cli"]
FPS, SECONDS, MOVING, CUT = 8, 6, (2.0, 4.0), 40


def make_video(path: Path, fps: int = FPS, size: int = 64) -> Path:
    """A square moves right only between 2 s and 4 s; the background brightens at frame 40."""
    with VideoEncoder(path, fps=fps) as encoder:
        for t in range(fps * SECONDS):
            time = t / fps
            frame = np.full((size, size, 3), 20 if t < CUT else 70, np.uint8)
            if MOVING[0] <= time < MOVING[1]:
                x = int(4 + (time - MOVING[0]) * 20)
                frame[24:36, x : x + 12] = (230, 40, 40)
            encoder.write(frame)
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "moving.mp4")


def test_window_starts_cover_every_frame() -> None:
    for total, clip, stride in [(20, 8, 4), (21, 8, 4), (8, 8, 3), (100, 16, 16), (17, 16, 5)]:
        starts = window_starts(total, clip, stride)
        covered = np.zeros(total, bool)
        for s in starts:
            covered[s : s + clip] = True
        assert covered.all() and starts == sorted(starts) and starts[-1] + clip == total
    assert window_starts(5, 8, 4) == []


def test_stitcher_averages_overlaps_and_frees_finished_frames() -> None:
    stitcher = WindowStitcher(clip_frames=4)
    windows = {0: 1.0, 2: 3.0, 4: 5.0}
    out = []
    for start, value in windows.items():
        stitcher.add(start, torch.full((4, 2, 2), value))
        out += list(stitcher.pop_final(before=start))
        assert len(stitcher._sums) <= 4  # never more than one window of frames held
    out += list(stitcher.pop_final(None))
    expected = [1, 1, 2, 2, 4, 4, 5, 5]  # frames 2-3: (1+3)/2, frames 4-5: (3+5)/2
    assert [i for i, _ in out] == list(range(8))
    assert [float(m.mean()) for _, m in out] == expected
    with pytest.raises(ValueError, match="in order"):
        stitcher.add(0, torch.zeros(4, 2, 2))


def test_scene_cut_detector_ignores_motion_and_finds_cuts() -> None:
    detector = SceneCutDetector()
    flags = []
    for t in range(30):
        frame = np.full((64, 64, 3), 20 if t < 20 else 120, np.uint8)
        frame[20:40, t : t + 10] = 200  # a moving object is not a cut
        flags.append(detector.update(frame))
    assert [t for t, f in enumerate(flags) if f] == [20]


def test_decoding_at_a_chosen_rate_and_range(video: Path) -> None:
    info = probe_video(video)
    assert info["fps"] == FPS and info["frames"] == FPS * SECONDS
    native = list(iter_video_frames(video))
    assert len(native) == 48 and native[1].time == pytest.approx(1 / FPS)
    slower = list(iter_video_frames(video, fps=4, size=(32, 32), start=1.0, end=3.0))
    assert [f.time for f in slower] == pytest.approx([1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75])
    assert slower[0].image.shape == (32, 32, 3)
    # frame 2.25 s of the 4 fps sequence is the native frame shown at 2.25 s (index 18)
    np.testing.assert_array_equal(
        slower[5].image, list(iter_video_frames(video, size=(32, 32)))[18].image
    )


def test_npy_appender_writes_a_loadable_array(tmp_path: Path) -> None:
    with NpyAppender(tmp_path / "a.npy", np.float16) as rows:
        for t in range(5):
            rows.append(np.full((3, 2), t))
    loaded = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert loaded.shape == (5, 3, 2) and loaded.dtype == np.float16 and loaded[4, 0, 0] == 4
    assert not (tmp_path / "a.npy.rows").exists()


def test_explain_video_peaks_where_the_square_moves(video: Path, demo_model, tmp_path) -> None:
    before = model_snapshot(demo_model)
    timeline = explain_video(demo_model, video, "gradcam_tube", tmp_path, stride=4)
    assert_model_unchanged(before, demo_model)
    times = np.asarray(timeline.frame_times)
    curve = np.asarray(timeline.curve)
    assert timeline.num_frames == 48 and len(curve) == 48
    assert MOVING[0] <= timeline.peak_time() < MOVING[1]
    moving = (times >= MOVING[0]) & (times < MOVING[1])
    assert curve[moving].mean() > 2 * curve[~moving].mean()
    # while the square moves right the model says so
    during = [w for w in timeline.windows if w["start_time"] >= 2.0 and w["end_time"] < 4.0]
    assert during and all(w["label"] == "right" for w in during)
    assert timeline.scene_cuts == [CUT]
    flagged = {w["start_frame"] for w in timeline.windows if w["scene_cut"]}
    assert flagged == {w["start_frame"] for w in timeline.windows
                       if w["start_frame"] < CUT < w["end_frame"]}  # fmt: skip
    relevance = np.load(timeline.files["relevance"])
    assert relevance.shape == (48, 32, 32)


def test_cli_explains_a_video_as_a_timeline(video: Path, tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    out = tmp_path / "out"
    done = subprocess.run(
        [*CLI, "explain", str(video), "--out", str(out), "--stride", "4", "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "scene cuts at [5.0] s" in done.stdout and "'right'" in done.stdout
    assert "FFMPEG" not in done.stderr and "not supported" not in done.stderr
    data = json.loads((out / "timeline.json").read_text())
    assert data["num_frames"] == 48 and data["fps"] == FPS
    assert data["frame_times"][-1] == pytest.approx(47 / FPS)
    assert data["frame_numbering"].startswith("indices from 0")
    with av.open(str(out / "overlay.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert sum(1 for _ in container.decode(stream)) == 48
        assert float(stream.average_rate) == FPS
    assert (out / "timeline.png").stat().st_size > 0


def test_cli_options_and_refusals(video: Path, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*CLI, "explain", str(video), "--quiet", *args],
            capture_output=True,
            text=True,
            timeout=600,
        )

    done = run("--out", str(tmp_path / "a"), "--fps", "4", "--start", "1", "--end", "5",
               "--clip-frames", "8", "--stride", "8")  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "a" / "timeline.json").read_text())
    assert data["num_frames"] == 16 and data["frame_times"][0] == 1.0 and data["clip_frames"] == 8
    # random weights are never explained silently
    done = run("--model", "r3d_18", "--out", str(tmp_path / "b"))
    assert done.returncode == 2 and "--random-weights" in done.stderr, done.stderr
    done = run("--model", "r3d_18", "--random-weights", "--clip-frames", "8", "--size", "32",
               "--end", "2", "--out", str(tmp_path / "c"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "predicted" in done.stdout and "'" in done.stdout, done.stdout  # a Kinetics name
    # weights of another architecture: one error line naming the shapes
    from captum_video.registry import load_model

    torch.save(load_model("mc3_18", num_classes=4).state_dict(), tmp_path / "mc3.pt")
    done = run("--model", "r2plus1d_18", "--weights", str(tmp_path / "mc3.pt"))
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("captum-video: error:") and "expects" in lines[0], done.stderr
    # --layer and --class-names
    names = tmp_path / "names.txt"
    names.write_text("east\nwest\nsouth\nnorth\n")
    done = run("--layer", "layer2", "--class-names", str(names), "--out", str(tmp_path / "d"))
    assert done.returncode == 0, done.stderr
    assert "'east'" in done.stdout or "'south'" in done.stdout, done.stdout
    done = run("--layer", "nope", "--out", str(tmp_path / "e"))
    assert done.returncode == 2 and "--layer 'nope'" in done.stderr, done.stderr
    done = run("--size", "0", "--out", str(tmp_path / "f"))
    assert done.returncode == 2 and "--size" in done.stderr, done.stderr


def test_too_short_video_says_how_to_fit(tmp_path: Path, demo_model) -> None:
    short = tmp_path / "short.mp4"
    with VideoEncoder(short, fps=8) as encoder:
        encoder.write(np.zeros((5, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="fewer than one window of 16 frames"):
        explain_video(demo_model, short)
    png = tmp_path / "image.png"
    import cv2

    cv2.imwrite(str(png), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="still image, not a video|not a video"):
        explain_video(demo_model, png)

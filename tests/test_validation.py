"""The shared input checks give clear errors and leave tensors as they were."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from captum_video._model_state import (
    evaluating,
    in_eval_mode,
    preserve_grad_requirements,
    removing_hooks,
)
from captum_video._scalars import validate_fps, validate_positive_int
from captum_video._targets import validate_target
from captum_video._validation import (
    format_video_inputs,
    model_input_channels,
    model_min_frames,
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


def test_layouts_are_named_with_their_fix() -> None:
    model = nn.Sequential(nn.Conv3d(3, 4, 3), nn.ReLU())
    clip = torch.rand(2, 3, 8, 16, 16)
    cases = [
        (clip.permute(0, 2, 3, 4, 1), r"channels-last \(N, T, H, W, C\).*permute\(0, 4, 1, 2, 3\)"),
        (clip.permute(0, 2, 1, 3, 4), r"time-first \(N, T, C, H, W\).*permute\(0, 2, 1, 3, 4\)"),
        (clip[:, :1], r"forward_func \(Sequential\) takes 3 channels"),
    ]
    for bad, match in cases:
        with pytest.raises(ValueError, match=match):
            format_video_inputs(bad, model=model)
    # Without a model, a pixel clip's layout is still recognised.
    with pytest.raises(ValueError, match="channels-last"):
        format_video_inputs(clip.permute(0, 2, 3, 4, 1))
    # A second stream the first convolution may read: the first tensor is not held to it.
    format_video_inputs((torch.rand(2, 2, 8, 16, 16), clip), model=model)


def test_model_channels_and_frames() -> None:
    from captum_video.models import C3DSmall

    assert model_input_channels(C3DSmall()) == 3 and model_min_frames(C3DSmall()) == 4
    assert model_input_channels(C3DSmall().forward) == 3  # a bound method
    assert model_input_channels(nn.Sequential(nn.LazyConv3d(4, 3))) is None
    assert model_input_channels(lambda x: x) is None and model_min_frames(lambda x: x) == 1
    with pytest.raises(ValueError, match=r"C3DSmall\) needs at least 4"):
        format_video_inputs(torch.rand(1, 3, 3, 16, 16), model=C3DSmall())
    with pytest.raises(ValueError, match="at least 5 are needed"):
        format_video_inputs(torch.rand(1, 3, 4, 16, 16), model=C3DSmall(), min_frames=5)


@pytest.mark.parametrize(
    ("target", "error", "match"),
    [
        (1.5, TypeError, "got float 1.5"),
        ("up", TypeError, "got str 'up'"),
        (True, TypeError, "got bool"),
        ([0, 1.0], TypeError, "list of ints"),
        (torch.tensor([0.0]), TypeError, "integer tensor"),
        (torch.tensor([[0]]), ValueError, "0-D or 1-D"),
        (-1, ValueError, "negative indices are not accepted"),
        ([], ValueError, "empty"),
    ],
)
def test_target_types(target: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        validate_target(target)  # before the model ran: type and sign only


def test_evaluating_restores_every_mode_and_leaves_statistics() -> None:
    net = nn.Sequential(nn.Conv3d(3, 2, 1), nn.BatchNorm3d(2), nn.Dropout(0.5)).train()
    net[2].eval()  # partly in eval mode: stays so
    stats = net[1].running_mean.clone()
    with pytest.warns(UserWarning, match="runs the model in eval mode"):
        with evaluating(net, "X.attribute"):
            assert not any(m.training for m in net.modules())
            net(torch.rand(2, 3, 2, 4, 4))
    assert [m.training for m in net.modules()] == [True, True, True, False]
    assert torch.equal(net[1].running_mean, stats)
    plain = nn.Sequential(nn.Conv3d(3, 2, 1), nn.ReLU())  # train mode changes nothing here
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with evaluating(plain):
            assert not plain.training
    assert plain.training
    with pytest.raises(RuntimeError), pytest.warns(UserWarning), evaluating(net):
        raise RuntimeError("boom")
    assert net.training and not net[2].training


def test_in_eval_mode_and_numbers() -> None:
    class Method:
        def __init__(self, model: nn.Module) -> None:
            self.forward_func = model

        @in_eval_mode
        def attribute(self) -> bool:
            return self.forward_func.training

    net = nn.Sequential(nn.BatchNorm3d(2)).train()
    with pytest.warns(UserWarning, match=r"Method\.attribute runs the model in eval mode"):
        assert Method(net).attribute() is False
    assert net.training
    for bad in (0, -1, float("inf"), float("nan"), "8", True):
        with pytest.raises((ValueError, TypeError), match="fps"):
            validate_fps(bad)
    for bad in (0, -2, 1.5, "3", False):
        with pytest.raises((ValueError, TypeError), match="stride"):
            validate_positive_int(bad, "stride")
    assert validate_fps(25) == 25.0 and validate_positive_int(3, "stride") == 3

"""TemporalOcclusion and TemporalMask: parity with Captum Occlusion, an independent per-window
loop, peaks on the frames where the deciding event happens, and the library contracts."""

from __future__ import annotations

import pytest
import torch
from captum.attr import NoiseTunnel, Occlusion
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from captum_video.attr import TemporalMask, TemporalOcclusion
from captum_video.baselines import freeze, freeze_soft, occlude_window, shuffle
from captum_video.datasets import MovingShapes
from captum_video.models import C3DSmall
from captum_video.relevance import relevance_per_frame
from tests.helpers import assert_model_unchanged, model_snapshot

EVENT = (5, 11)


def frame_curve(attr: torch.Tensor) -> torch.Tensor:
    """The per-frame value of a frame-constant temporal attribution."""
    return relevance_per_frame(attr, sign="all", normalize="mean")


@pytest.fixture(scope="module")
def event_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Motion clips whose object moves only in frames 5..10 and stands still otherwise, so
    outside the event it looks like the static distractors."""
    clips, labels, _ = MovingShapes("motion", num_samples=3, seed=7, event_frames=EVENT).tensors()
    return clips, labels


@pytest.fixture(scope="module")
def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return C3DSmall().eval()


def _probabilities(model: torch.nn.Module):  # noqa: ANN202
    return lambda x: model(x).softmax(1)


@pytest.mark.parametrize("window, stride", [(2, 1), (4, 4), (5, 3)])
def test_matches_captum_occlusion_with_the_same_windows(small_model, window, stride) -> None:  # noqa: ANN001
    x = torch.rand(2, 3, 8, 16, 16)
    base = torch.rand(1, 3, 8, 16, 16)
    ours = TemporalOcclusion(small_model).attribute(
        x, window=window, stride=stride, baselines=base, target=[1, 2], perturbations_per_eval=3
    )
    theirs = Occlusion(small_model).attribute(
        x,
        sliding_window_shapes=(3, window, 16, 16),
        strides=(3, stride, 16, 16),
        baselines=base,
        target=[1, 2],
        perturbations_per_eval=8,
    )
    assert ours.shape == x.shape
    assert torch.allclose(ours, theirs, atol=1e-6)
    zero = TemporalOcclusion(small_model).attribute(
        x, window=window, stride=stride, baselines="zero", target=0
    )
    captum_zero = Occlusion(small_model).attribute(
        x,
        sliding_window_shapes=(3, window, 16, 16),
        strides=(3, stride, 16, 16),
        target=0,
        perturbations_per_eval=8,
    )
    assert torch.allclose(zero, captum_zero, atol=1e-6)


@pytest.mark.parametrize("baseline", ["freeze", "mean", "blur", 0.5, "callable"])
def test_matches_an_independent_per_window_loop(small_model, baseline) -> None:  # noqa: ANN001
    x = torch.rand(2, 3, 8, 16, 16)
    fill = shuffle if baseline == "callable" else baseline
    occ = TemporalOcclusion(small_model)
    got = [
        occ.attribute(x, window=3, stride=2, baselines=fill, target=1, perturbations_per_eval=p)
        for p in (1, 2, 10)
    ]
    torch.manual_seed(0)  # the callable is random: give it the same draw as below
    got.append(occ.attribute(x, window=3, stride=2, baselines=fill, target=1))
    torch.manual_seed(0)
    with torch.no_grad():
        clean = small_model(x)[:, 1]
        fixed = shuffle(x) if baseline == "callable" else None
        curve, count = torch.zeros(2, 8), torch.zeros(8)
        for start in (0, 2, 4, 6):  # ceil((8 - 3) / 2) + 1 windows, the last one clipped
            if fixed is not None:
                stop = min(start + 3, 8)
                occluded = x.clone()
                occluded[:, :, start:stop] = fixed[:, :, start:stop]
            else:
                occluded = occlude_window(x, start, 3, fill)  # type: ignore[arg-type]
            drop = clean - small_model(occluded)[:, 1]
            curve[:, start : start + 3] += drop[:, None]
            count[start : start + 3] += 1
    expected = curve / count
    if baseline != "callable":
        for attr in got:
            assert torch.allclose(frame_curve(attr), expected, atol=1e-6)
    assert torch.allclose(frame_curve(got[-1]), expected, atol=1e-6)
    assert bool((got[0] == got[0][:, :1, :, :1, :1]).all())  # constant over (C, H, W)


def test_peaks_on_the_event_frames(demo_model, event_batch) -> None:  # noqa: ANN001
    clips, labels = event_batch
    occ = TemporalOcclusion(_probabilities(demo_model))
    attr = occ.attribute(clips, window=4, stride=1, target=labels, perturbations_per_eval=13)
    curve = frame_curve(attr)
    inside = torch.zeros(16, dtype=torch.bool)
    inside[EVENT[0] : EVENT[1]] = True
    assert bool(inside[curve.argmax(1)].all()), curve
    assert bool((curve[:, inside].mean(1) > 5 * curve[:, ~inside].abs().mean(1)).all())


def test_temporal_mask_freeze_and_reverse_find_the_event(demo_model, event_batch) -> None:  # noqa: ANN001
    clips, labels = event_batch
    before = model_snapshot(demo_model)
    tm = TemporalMask(demo_model)
    inside = torch.zeros(16, dtype=torch.bool)
    inside[EVENT[0] : EVENT[1]] = True
    # Reversal only matters where the object moves: the mask sits on the event.
    reverse_mask = tm.attribute(clips[:1], target=labels[:1], perturbation="reverse", n_iter=40)
    assert reverse_mask.shape == (1, 16)
    assert bool(((reverse_mask >= 0) & (reverse_mask <= 1)).all())
    assert float(reverse_mask[0, inside].mean()) > float(reverse_mask[0, ~inside].mean()) + 0.4
    assert bool(inside[reverse_mask.argmax(1)].all())
    # Freezing must start at the event's onset: nothing before it is needed (after it the
    # object sits displaced, so freezing those frames too avoids a jump).
    x, y = clips[1:2], labels[1:2]
    freeze_mask = tm.attribute(x, target=y, perturbation="freeze", n_iter=40)
    assert float(freeze_mask[0, : EVENT[0]].mean()) < 0.3
    assert float(freeze_mask[0, EVENT[0] + 1 : EVENT[1]].mean()) > 0.7
    # and the mask does what it claims: freezing with it costs as much as freezing the whole
    # clip (the model has a static bias towards "down", so that is not always zero)
    with torch.no_grad():
        p_clean = demo_model(x).softmax(1)[0, y]
        p_masked = demo_model(freeze_soft(x, freeze_mask)).softmax(1)[0, y]
        p_static = demo_model(freeze(x)).softmax(1)[0, y]
    assert float(p_masked) < float(p_static) + 0.05 and float(p_masked) < float(p_clean) - 0.25
    assert_model_unchanged(before, demo_model)
    assert all(p.grad is None for p in demo_model.parameters())


def test_temporal_mask_is_repeatable_with_a_generator(small_model) -> None:  # noqa: ANN001
    x = torch.rand(1, 3, 8, 16, 16)
    tm = TemporalMask(small_model)
    a = tm.attribute(x, init="random", n_iter=3, generator=torch.Generator().manual_seed(1))
    b = tm.attribute(x, init="random", n_iter=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    pair = TemporalMask(_two_stream()).attribute(
        (x, torch.rand(1, 2, 8, 16, 16)), n_iter=2, additional_forward_args=1.0
    )
    assert isinstance(pair, tuple) and len(pair) == 2 and pair[0].shape == (1, 8)


def _two_stream():  # noqa: ANN202
    torch.manual_seed(0)
    rgb, flow = C3DSmall(in_channels=3).eval(), C3DSmall(in_channels=2).eval()

    def forward(a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
        return scale * (rgb(a) + flow(b))

    return forward


def test_tuple_inputs_and_additional_forward_args() -> None:
    forward = _two_stream()
    a, b = torch.rand(2, 3, 8, 16, 16), torch.rand(2, 2, 8, 16, 16)
    attr = TemporalOcclusion(forward).attribute(
        (a, b),
        window=2,
        stride=2,
        baselines="zero",
        target=0,
        additional_forward_args=2.0,
        perturbations_per_eval=4,
    )
    assert isinstance(attr, tuple) and attr[0].shape == a.shape and attr[1].shape == b.shape
    assert torch.allclose(frame_curve(attr[0]), frame_curve(attr[1]))
    with torch.no_grad():
        expected = (
            forward(a, b, 2.0)[:, 0]
            - forward(occlude_window(a, 2, 2, "zero"), occlude_window(b, 2, 2, "zero"), 2.0)[:, 0]
        )
    assert torch.allclose(frame_curve(attr[0])[:, 2], expected, atol=1e-5)


def test_dtype_device_and_untouched_inputs(small_model, device) -> None:  # noqa: ANN001
    model = C3DSmall().double().eval().to(device)
    x = torch.rand(1, 3, 8, 16, 16, dtype=torch.float64, device=device)
    keep = x.clone()
    attr = TemporalOcclusion(model).attribute(x, window=2, target=0, perturbations_per_eval=7)
    assert attr.dtype == torch.float64 and attr.device == x.device
    assert torch.equal(x, keep) and not x.requires_grad
    mask = TemporalMask(model).attribute(x, target=0, n_iter=3)
    assert mask.dtype == torch.float64 and mask.device == x.device


def test_bad_inputs_raise_and_leave_the_model_alone(small_model) -> None:  # noqa: ANN001
    before = model_snapshot(small_model)
    occ = TemporalOcclusion(small_model)
    x = torch.rand(1, 3, 8, 16, 16)
    with pytest.raises(ValueError, match="5-D"):
        occ.attribute(torch.rand(3, 8, 16, 16), target=0)
    with pytest.raises(ValueError, match="window"):
        occ.attribute(x, window=9, target=0)
    with pytest.raises(ValueError, match="stride"):
        occ.attribute(x, window=2, stride=3, target=0)
    with pytest.raises(ValueError, match="freeze"):
        occ.attribute(x, window=8, target=0)
    with pytest.raises(ValueError, match="baselines must be one of"):
        occ.attribute(x, baselines="grey", target=0)
    with pytest.raises(ValueError, match="broadcast"):
        occ.attribute(x, baselines=torch.zeros(1, 3, 4, 16, 16), target=0)
    with pytest.raises(ValueError, match="out of range"):
        occ.attribute(x, target=7)
    with pytest.raises(ValueError, match="NaN"):
        occ.attribute(x.clone().fill_(float("nan")), target=0)
    with pytest.raises(ValueError, match="perturbation"):
        TemporalMask(small_model).attribute(x, perturbation="rewind")
    with pytest.raises(ValueError, match="out of range"):
        TemporalMask(small_model).attribute(x, target=9)
    assert_model_unchanged(before, small_model)


def test_target_none_means_the_predicted_class(small_model) -> None:  # noqa: ANN001
    x = torch.rand(3, 3, 8, 16, 16)
    predicted = small_model(x).argmax(1)
    occ = TemporalOcclusion(small_model)
    torch.testing.assert_close(occ.attribute(x), occ.attribute(x, target=predicted))
    mask = TemporalMask(small_model)
    kwargs = {"n_iter": 3, "init": "random", "generator": torch.Generator().manual_seed(0)}
    default = mask.attribute(x, **kwargs)
    kwargs["generator"] = torch.Generator().manual_seed(0)
    torch.testing.assert_close(default, mask.attribute(x, target=predicted, **kwargs))


def test_captum_spelling_of_windows(small_model) -> None:  # noqa: ANN001
    x = torch.rand(2, 3, 8, 16, 16)
    occ = TemporalOcclusion(small_model)
    ours = occ.attribute(x, window=3, stride=2, target=1)
    captum = occ.attribute(
        x, sliding_window_shapes=(3, 3, 16, 16), strides=(3, 2, 16, 16), target=1
    )
    torch.testing.assert_close(ours, captum)
    torch.testing.assert_close(ours, occ.attribute(x, window=3, strides=2, target=1))
    with pytest.raises(ValueError, match="sliding_window_shapes must be"):
        occ.attribute(x, sliding_window_shapes=(3, 3, 8, 8), target=1)


def test_captum_contracts(small_model) -> None:  # noqa: ANN001
    assert hasattr(TemporalOcclusion.attribute, "__wrapped__")
    assert hasattr(TemporalMask.attribute, "__wrapped__")
    x = torch.rand(2, 3, 8, 16, 16)
    smooth = NoiseTunnel(TemporalOcclusion(small_model)).attribute(
        x, nt_samples=2, stdevs=0.01, window=4, stride=4, target=0
    )
    assert smooth.shape == x.shape
    assert TemporalOcclusion(small_model).multiplies_by_inputs


class _LargestStorage(TorchDispatchMode):
    """Records the largest storage of any tensor an operation returns while active."""

    def __init__(self) -> None:
        super().__init__()
        self.nbytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                self.nbytes = max(self.nbytes, value.untyped_storage().nbytes())
        return out


@pytest.mark.parametrize("baseline", ["freeze", "interpolate", "zero"])
def test_occluded_copies_are_built_per_forward_not_for_all_windows(baseline) -> None:  # noqa: ANN001
    """Cost is the forwards (one per window): besides them, nothing is as large as all the
    windows' copies; the largest tensor is one forward's batch at 16 and at 64 frames."""
    batches: list[int] = []

    def forward(v: torch.Tensor) -> torch.Tensor:
        batches.append(v.shape[0])
        return v.mean(dim=(2, 3, 4))  # (N, C) scores, no activations of its own

    occ = TemporalOcclusion(forward)
    for t in (16, 64):
        batches.clear()
        x = torch.rand(2, 3, t, 8, 8)
        with _LargestStorage() as spy:
            occ.attribute(
                x, window=2, stride=1, baselines=baseline, target=0, perturbations_per_eval=4
            )
        windows = t - 1
        assert batches == [2] + [8] * (windows // 4) + [2 * (windows % 4)] * (windows % 4 > 0)
        one_forward = 4 * x.nelement() * x.element_size()  # 4 windows of 2 clips
        assert spy.nbytes <= one_forward, (t, spy.nbytes / one_forward)

"""Temporal perturbation operators: identities, permutations, shapes, devices, Captum use."""

from __future__ import annotations

import pytest
import torch
from captum.attr import IntegratedGradients

from captum_video import baselines as B


def _clip(n: int = 2, t: int = 8, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.rand(n, 3, t, 6, 5, device=device)


def _frame_ids(x: torch.Tensor) -> torch.Tensor:
    """Clip whose every voxel of frame t holds the value t (to read frame orders back)."""
    n, c, t, h, w = x.shape
    return torch.arange(t, dtype=x.dtype, device=x.device).view(1, 1, t, 1, 1).expand(n, c, t, h, w)


def _order(y: torch.Tensor) -> torch.Tensor:
    return y[:, 0, :, 0, 0].long()


def test_reverse_is_an_involution(device: torch.device) -> None:
    x = _clip(device=device)
    assert torch.equal(B.reverse(B.reverse(x)), x)
    assert torch.equal(B.reverse(x)[:, :, 0], x[:, :, -1])


def test_shuffle_is_a_seeded_permutation_per_clip(device: torch.device) -> None:
    x = _frame_ids(_clip(n=4, t=16, device=device))
    a = B.shuffle(x, torch.Generator(device=device).manual_seed(3))
    b = B.shuffle(x, torch.Generator(device=device).manual_seed(3))
    c = B.shuffle(x, torch.Generator(device=device).manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    order = _order(a)
    assert torch.equal(order.sort(1).values, torch.arange(16, device=device).expand(4, 16))
    # whole frames move: every voxel of an output frame comes from one input frame
    assert bool((a == a[:, :1, :, :1, :1]).all())
    assert a.device == x.device


def test_freeze_has_zero_temporal_difference(device: torch.device) -> None:
    x = _clip(device=device)
    for frame in (0, 3, -1):
        y = B.freeze(x, frame)
        assert torch.count_nonzero(y.diff(dim=2)) == 0
        assert torch.equal(y[:, :, 0], x[:, :, frame])
    with pytest.raises(ValueError, match="frame"):
        B.freeze(x, 8)


def test_freeze_soft_matches_the_recursion() -> None:
    x = _clip(n=3, t=7)
    m = torch.rand(3, 7)
    y = B.freeze_soft(x, m)
    expected = [x[:, :, 0]]
    for t in range(1, 7):
        mt = m[:, t].view(3, 1, 1, 1)
        expected.append((1 - mt) * x[:, :, t] + mt * expected[-1])
    assert torch.allclose(y, torch.stack(expected, 2), atol=1e-6)
    assert torch.allclose(B.freeze_soft(x, torch.ones(7)), B.freeze(x), atol=1e-6)
    assert torch.allclose(B.freeze_soft(x, torch.zeros(7)), x)
    theta = torch.zeros(7, requires_grad=True)
    B.freeze_soft(x, torch.sigmoid(theta)).sum().backward()
    assert theta.grad is not None and bool(torch.isfinite(theta.grad).all())


def test_jumble_shuffles_only_inside_segments() -> None:
    x = _frame_ids(_clip(n=3, t=10))
    y = B.jumble(x, 4, torch.Generator().manual_seed(0))
    order = _order(y)
    assert torch.equal(order // 4, torch.arange(10).expand(3, 10) // 4)
    assert torch.equal(order.sort(1).values, torch.arange(10).expand(3, 10))
    assert not torch.equal(order, torch.arange(10).expand(3, 10))
    assert torch.equal(B.jumble(x, 1), x)


def test_reverse_masked_reverses_runs_and_blends() -> None:
    x = _frame_ids(_clip(n=1, t=8))
    m = torch.tensor([0.0, 1, 1, 1, 0, 1, 1, 0])
    assert _order(B.reverse_masked(x, m)).tolist() == [[0, 3, 2, 1, 4, 6, 5, 7]]
    half = B.reverse_masked(x, m * 0.5)[0, 0, :, 0, 0]
    assert torch.allclose(half[1], torch.tensor(0.5 * 1 + 0.5 * 3))
    assert torch.equal(B.reverse_masked(x, torch.ones(8)), B.reverse(x))


def test_subsample_blur_mean() -> None:
    x = _frame_ids(_clip(n=1, t=8))
    assert _order(B.subsample(x, 3)).tolist() == [[0, 0, 0, 3, 3, 3, 6, 6]]
    r = _clip()
    assert torch.equal(B.subsample(r, 1), r)
    blurred = B.temporal_blur(r, 1.5)
    assert torch.allclose(blurred.mean(2), r.mean(2), atol=0.2)  # smoothing, not shifting
    assert blurred.diff(dim=2).abs().mean() < r.diff(dim=2).abs().mean()
    assert torch.allclose(B.temporal_blur(torch.ones_like(r), 2.0), torch.ones_like(r))
    assert torch.allclose(B.spatial_blur(torch.ones_like(r), 2.0), torch.ones_like(r))
    assert torch.allclose(B.mean_frame(r), r.mean(2, keepdim=True).expand_as(r))


def test_occlude_window_fills() -> None:
    x = _frame_ids(_clip(n=2, t=8)) + 1
    assert _order(B.occlude_window(x, 2, 3, "freeze")).tolist()[0] == [1, 2, 2, 2, 2, 6, 7, 8]
    assert _order(B.occlude_window(x, 0, 2, "freeze")).tolist()[0] == [3, 3, 3, 4, 5, 6, 7, 8]
    assert _order(B.occlude_window(x, 6, 5, "zero")).tolist()[0] == [1, 2, 3, 4, 5, 6, 0, 0]
    interp = B.occlude_window(x, 2, 3, "interpolate")[0, 0, :, 0, 0]
    assert torch.allclose(interp, torch.arange(1.0, 9.0))  # a linear ramp is its own interpolation
    per_clip = B.occlude_window(x, torch.tensor([0, 4]), 2, 0.5)
    assert per_clip[0, 0, :2, 0, 0].tolist() == [0.5, 0.5] and per_clip[1, 0, 4, 0, 0] == 0.5
    with pytest.raises(ValueError, match="fill"):
        B.occlude_window(x, 0, 2, "nonsense")
    with pytest.raises(ValueError, match="start"):
        B.occlude_window(x, 9, 2)
    with pytest.raises(ValueError, match="covers the clip"):
        B.occlude_window(x, 0, 8, "freeze")


@pytest.mark.parametrize(
    "op",
    [
        B.freeze,
        B.reverse,
        B.mean_frame,
        lambda x: B.shuffle(x, torch.Generator().manual_seed(0)),
        lambda x: B.jumble(x, 3),
        lambda x: B.subsample(x, 2),
        lambda x: B.temporal_blur(x, 1.0),
        lambda x: B.spatial_blur(x, 1.0),
        lambda x: B.freeze_soft(x, torch.rand(8)),
        lambda x: B.occlude_window(x, 2, 3, "blur"),
    ],
)
def test_every_operator_keeps_shape_dtype_device_and_input(op) -> None:  # noqa: ANN001
    x = _clip().double()
    before = x.clone()
    y = op(x)
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert torch.equal(x, before)


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="5-D"):
        B.reverse(torch.rand(3, 8, 6, 6))
    with pytest.raises(TypeError):
        B.shuffle(torch.zeros(1, 3, 4, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="segment"):
        B.jumble(_clip(), 0)
    with pytest.raises(ValueError, match="rate"):
        B.subsample(_clip(), 0)
    with pytest.raises(ValueError, match="mask"):
        B.freeze_soft(_clip(), torch.rand(5))
    with pytest.raises(ValueError, match="unknown perturbation"):
        B.get_perturbation("rewind")


def test_integrated_gradients_from_a_frozen_clip(demo_model, motion_batch) -> None:  # noqa: ANN001
    """A frozen clip is a valid IG baseline ("motion-only IG"): completeness holds against it
    and frame 0, which equals the baseline, gets exactly zero attribution."""
    clips, labels, _ = motion_batch
    x, target = clips[:2], labels[:2]
    base = B.freeze(x)
    ig = IntegratedGradients(demo_model)
    attr, delta = ig.attribute(
        x, baselines=base, target=target, n_steps=32, return_convergence_delta=True
    )
    with torch.no_grad():
        gap = demo_model(x).gather(1, target[:, None]) - demo_model(base).gather(1, target[:, None])
    assert attr.shape == x.shape
    assert gap.abs().min() > 1.0  # freezing changes the motion model's logit a lot
    assert bool((delta.abs() < 0.05 * gap.abs().squeeze(1)).all())
    assert torch.count_nonzero(attr[:, :, 0]) == 0

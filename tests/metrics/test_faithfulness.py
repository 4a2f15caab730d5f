"""Deletion / insertion curves and AOPC: analytic answers on linear models, the spec's
endpoint identities on the demo model, and bad-input errors."""

from __future__ import annotations

import pytest
import scipy.ndimage
import torch
from torch import nn

from captum_video.baselines import spatial_blur
from captum_video.metrics import aopc, deletion, insertion
from tests.helpers import assert_model_unchanged, model_snapshot


class LinearScore(nn.Module):
    """``f(x) = sum(w * x)`` per clip, one output: contributions ``w * x`` are exact."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor, scale: float | torch.Tensor = 1.0) -> torch.Tensor:
        out = (x * self.weight).flatten(1).sum(1, keepdim=True)
        if isinstance(scale, torch.Tensor):
            scale = scale.view(-1, 1)
        return out * scale


class ConstantModel(nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1) + 0 * x.flatten(1)[:, :1]


def _linear_setup(device: torch.device, shape=(2, 1, 4, 4, 4)):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=gen).to(device)
    w = torch.rand(shape[1:], generator=gen).to(device)
    model = LinearScore(w).to(device)
    return model, x, (x * w).detach()


def test_deletion_follows_exact_contributions_on_a_linear_model(device):
    model, x, contrib = _linear_setup(device)
    result = deletion(model, x, contrib, target=0, n_steps=64, cell="voxel", apply_softmax=False)
    # Removing the k largest contributions (fade base = 0) leaves the sum of the rest.
    ranked = contrib.flatten(1).sort(1, descending=True).values
    expected = ranked.sum(1, keepdim=True) - torch.cat(
        [torch.zeros_like(ranked[:, :1]), ranked.cumsum(1)], 1
    )
    assert result.curve.shape == (2, 65) and result.fractions.shape == (65,)
    torch.testing.assert_close(result.curve, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(result.auc, torch.trapezoid(expected, result.fractions, dim=1))
    assert result.curve.device.type == device.type


def test_insertion_is_the_mirror_image_and_orders_compare(device):
    model, x, contrib = _linear_setup(device)
    kwargs = dict(target=0, n_steps=64, cell="voxel", apply_softmax=False)
    ins = insertion(model, x, contrib, **kwargs)
    ranked = contrib.flatten(1).sort(1, descending=True).values
    expected = torch.cat([torch.zeros_like(ranked[:, :1]), ranked.cumsum(1)], 1)
    torch.testing.assert_close(ins.curve, expected, rtol=1e-5, atol=1e-5)
    # Most-relevant-first deletion falls fastest; least-first slowest; random in between.
    most = deletion(model, x, contrib, **kwargs).auc
    least = deletion(model, x, contrib, order="least_first", **kwargs).auc
    gen = torch.Generator().manual_seed(3)
    rand = deletion(model, x, contrib, order="random", generator=gen, **kwargs).auc
    assert (most < rand).all() and (rand < least).all()


def test_endpoints_equal_p_of_clip_and_p_of_base_on_demo_model(demo_model, motion_batch):
    clips, labels, masks = motion_batch
    clips, labels, masks = clips[:3], labels[:3], masks[:3]
    attr = masks.unsqueeze(1).float() + 0.01 * torch.rand(3, 1, *masks.shape[1:])
    before = model_snapshot(demo_model)
    with torch.no_grad():
        p_x = demo_model(clips).softmax(1).gather(1, labels[:, None])[:, 0]
        p_fade = demo_model(torch.zeros_like(clips)).softmax(1).gather(1, labels[:, None])[:, 0]
        blurred = spatial_blur(clips, 20 / 112 * 32)
        p_blur = demo_model(blurred).softmax(1).gather(1, labels[:, None])[:, 0]
    for base, p_base in (("fade", p_fade), ("blur", p_blur)):
        dele = deletion(demo_model, clips, attr, target=labels, n_steps=6, base=base)
        ins = insertion(demo_model, clips, attr, target=labels, n_steps=6, base=base)
        torch.testing.assert_close(dele.curve[:, 0], p_x, atol=1e-5, rtol=0)
        torch.testing.assert_close(dele.curve[:, -1], p_base, atol=1e-5, rtol=0)
        torch.testing.assert_close(ins.curve[:, 0], p_base, atol=1e-5, rtol=0)
        torch.testing.assert_close(ins.curve[:, -1], p_x, atol=1e-5, rtol=0)
    assert_model_unchanged(before, demo_model)
    # target=None explains the predicted class (the model is right on these clips)
    pred = deletion(demo_model, clips, attr, n_steps=6)
    torch.testing.assert_close(pred.curve[:, 0], p_x, atol=1e-5, rtol=0)


def test_ground_truth_mask_beats_random_order_on_blurred_insertion(demo_model, motion_batch):
    clips, labels, masks = motion_batch
    attr = masks.unsqueeze(1).float()
    kwargs = dict(target=labels, n_steps=8, base="blur", perturbations_per_eval=9)
    truth = insertion(demo_model, clips, attr, **kwargs).auc.mean()
    gen = torch.Generator().manual_seed(0)
    rand = insertion(demo_model, clips, attr, order="random", generator=gen, **kwargs).auc.mean()
    assert truth > rand + 0.05


def test_constant_curve_has_the_constant_as_auc(device):
    logits = torch.tensor([0.3, -1.2, 2.0], device=device)
    model = ConstantModel(logits).to(device)
    x = torch.rand(2, 3, 4, 8, 8, device=device)
    attr = torch.rand(2, 1, 4, 8, 8, device=device)
    prob = logits.softmax(0)[2]
    for fn in (deletion, insertion):
        result = fn(model, x, attr, target=2, n_steps=7, cell=(2, 3, 3))
        torch.testing.assert_close(result.auc, prob.expand(2), atol=1e-6, rtol=0)
        raw = fn(model, x, attr, target=1, n_steps=5, apply_softmax=False)
        torch.testing.assert_close(raw.auc, logits[1].expand(2), atol=1e-6, rtol=0)


def test_frames_as_cells_and_capped_steps():
    model, x, contrib = _linear_setup(torch.device("cpu"), shape=(1, 1, 6, 3, 3))
    per_frame = contrib.sum((1, 3, 4))  # (1, T)
    frame_attr = per_frame.view(1, 1, 6, 1, 1).expand(1, 1, 6, 3, 3)
    result = deletion(
        model, x, frame_attr, target=0, n_steps=100, cell="frame", apply_softmax=False
    )
    assert result.fractions.tolist() == pytest.approx([k / 6 for k in range(7)])
    ranked = per_frame.sort(1, descending=True).values
    expected = ranked.sum() - torch.cat([torch.zeros(1, 1), ranked.cumsum(1)], 1)
    torch.testing.assert_close(result.curve, expected, rtol=1e-5, atol=1e-5)


def test_cells_rank_by_mean_and_uneven_edges():
    # 5 x 5 frame, 2 x 2 cells: edge cells are smaller; the counts still cover every voxel.
    model, x, contrib = _linear_setup(torch.device("cpu"), shape=(1, 1, 1, 5, 5))
    result = deletion(model, x, contrib, target=0, n_steps=9, cell=(1, 2, 2), apply_softmax=False)
    assert result.curve.shape == (1, 10)
    torch.testing.assert_close(result.curve[0, -1], torch.tensor(0.0))
    torch.testing.assert_close(result.curve[0, 0], contrib.sum())


def test_batching_and_additional_forward_args_do_not_change_results():
    model, x, contrib = _linear_setup(torch.device("cpu"))
    scale = torch.tensor([2.0, -1.0])
    one = deletion(
        model,
        x,
        contrib,
        target=0,
        additional_forward_args=(scale,),
        n_steps=10,
        cell="voxel",
        apply_softmax=False,
        perturbations_per_eval=1,
    )
    many = deletion(
        model,
        x,
        contrib,
        target=0,
        additional_forward_args=(scale,),
        n_steps=10,
        cell="voxel",
        apply_softmax=False,
        perturbations_per_eval=64,
    )
    torch.testing.assert_close(one.curve, many.curve)
    plain = deletion(model, x, contrib, target=0, n_steps=10, cell="voxel", apply_softmax=False)
    torch.testing.assert_close(one.curve, plain.curve * scale.view(2, 1))


def test_random_order_repeats_with_a_seed():
    model, x, contrib = _linear_setup(torch.device("cpu"))
    runs = [
        deletion(
            model,
            x,
            contrib,
            target=0,
            order="random",
            cell="voxel",
            generator=torch.Generator().manual_seed(5),
            apply_softmax=False,
        ).curve
        for _ in range(2)
    ]
    torch.testing.assert_close(runs[0], runs[1])


def test_aopc_morf_and_lerf_on_a_linear_model():
    model, x, contrib = _linear_setup(torch.device("cpu"), shape=(2, 1, 4, 6, 6))
    morf = aopc(
        model,
        x,
        contrib,
        target=0,
        region=(2, 3, 3),
        n_regions=100,
        perturbation="fade",
        apply_softmax=False,
    )
    # 2 x 2 x 2 = 8 regions: L is capped at 8; drops are the cumulated region sums.
    region_sum = contrib.view(2, 2, 2, 2, 3, 2, 3).sum((2, 4, 6)).flatten(1)
    ranked = region_sum.sort(1, descending=True).values
    drops = torch.cat([torch.zeros(2, 1), ranked.cumsum(1)], 1)
    torch.testing.assert_close(morf.drops, drops, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(morf.aopc, drops.mean(1), rtol=1e-5, atol=1e-5)
    lerf = aopc(
        model,
        x,
        contrib,
        target=0,
        region=(2, 3, 3),
        order="lerf",
        perturbation="fade",
        apply_softmax=False,
    )
    assert (morf.aopc > lerf.aopc).all()
    # Uniform noise is drawn once per call: the same seed gives the same curve.
    runs = [
        aopc(
            model,
            x,
            contrib,
            target=0,
            region=(1, 3, 3),
            n_regions=5,
            generator=torch.Generator().manual_seed(1),
        ).drops
        for _ in range(2)
    ]
    torch.testing.assert_close(runs[0], runs[1])


def test_spatial_blur_matches_scipy():
    x = torch.rand(1, 2, 3, 12, 10, dtype=torch.float64)
    ours = spatial_blur(x, sigma=2.0)
    ref = scipy.ndimage.gaussian_filter(
        x.numpy(), sigma=(0, 0, 0, 2.0, 2.0), mode="nearest", truncate=3.0
    )
    torch.testing.assert_close(ours, torch.from_numpy(ref))


def test_bad_inputs_raise_clear_errors_and_leave_model_alone(demo_model):
    x = torch.rand(1, 3, 16, 32, 32)
    attr = torch.rand(1, 1, 16, 32, 32)
    before = model_snapshot(demo_model)
    with pytest.raises(ValueError, match="5-D"):
        deletion(demo_model, x[0], attr)
    with pytest.raises(ValueError, match="attributions must have shape"):
        deletion(demo_model, x, attr[:, :, :8])
    with pytest.raises(ValueError, match="out of range"):
        insertion(demo_model, x, attr, target=7, n_steps=2)
    with pytest.raises(ValueError, match="cell"):
        deletion(demo_model, x, attr, cell=(0, 2, 2))
    with pytest.raises(ValueError, match="order"):
        deletion(demo_model, x, attr, order="best")
    with pytest.raises(ValueError, match="NaN"):
        deletion(demo_model, x, attr * float("nan"))
    with pytest.raises(ValueError, match="broadcast"):
        deletion(demo_model, x, attr, base=torch.zeros(2, 3, 1, 1, 1))
    assert_model_unchanged(before, demo_model)
    assert not x.requires_grad

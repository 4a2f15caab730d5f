"""Video feature masks: exact cover of the voxels, contiguous ids, and use in Captum's
FeatureAblation, ShapleyValueSampling, Lime and KernelShap (checked against the exact
per-feature contributions of an additive model)."""

from __future__ import annotations

import warnings

import pytest
import torch
from captum.attr import FeatureAblation, KernelShap, Lime, ShapleyValueSampling

from captum_video import masks as M
from captum_video.datasets import MovingShapes
from captum_video.flow import optical_flow


@pytest.fixture(scope="module")
def clips() -> torch.Tensor:
    return MovingShapes("motion", num_samples=2, seed=7).tensors()[0]  # (2, 3, 16, 32, 32)


def _check_cover(mask: torch.Tensor, x: torch.Tensor) -> None:
    """Every voxel has exactly one id, ids are 0..K_n-1 and every id is used, per clip."""
    assert mask.dtype == torch.long
    full = mask.expand(x.shape[0], 1, *x.shape[2:])  # broadcasts to the clip (channel axis 1)
    torch.broadcast_shapes(mask.shape, x.shape)
    for clip_mask in full:
        ids = clip_mask.flatten()
        k = int(ids.max()) + 1
        assert int(ids.min()) == 0
        counts = torch.bincount(ids, minlength=k)
        assert bool((counts > 0).all()), "an id has no voxel"
        assert int(counts.sum()) == x.shape[2] * x.shape[3] * x.shape[4]


def test_frame_and_segment_masks(clips: torch.Tensor) -> None:
    fm = M.frame_mask(clips)
    assert fm.shape == (1, 1, 16, 1, 1) and fm.flatten().tolist() == list(range(16))
    _check_cover(fm, clips)
    for k in (1, 3, 5, 16):
        sm = M.segment_mask(clips, k)
        _check_cover(sm, clips)
        sizes = torch.bincount(sm.flatten()).tolist()
        assert sizes == [len(s) for s in torch.arange(16).tensor_split(k)]
    with pytest.raises(ValueError, match="num_segments"):
        M.segment_mask(clips, 17)


def test_tube_mask_cells(clips: torch.Tensor) -> None:
    m = M.tube_mask(clips, (4, 8, 8))
    _check_cover(m, clips)
    assert M.num_features(m) == 4 * 4 * 4
    assert torch.bincount(m.flatten()).unique().tolist() == [4 * 8 * 8]
    ragged = M.tube_mask(clips, (None, 10, 12))  # full-length tubes, partial border cells
    _check_cover(ragged, clips)
    assert M.num_features(ragged) == 4 * 3
    assert bool((ragged[:, :, :1] == ragged).all())  # constant along time
    with pytest.raises(ValueError, match="cell h"):
        M.tube_mask(clips, (4, 0, 8))


def test_shifted_tube_mask_moves_the_boundaries(clips: torch.Tensor) -> None:
    # No shift: the plain grid.
    assert torch.equal(
        M.shifted_tube_mask(clips, (4, 8, 8), (0, 0, 0)), M.tube_mask(clips, (4, 8, 8))
    )
    for offset in [(1, 3, 5), (2, 4, 7), (3, 1, 2)]:
        mask = M.shifted_tube_mask(clips, (4, 8, 8), offset)
        _check_cover(mask, clips)
        # Boundaries where (i + o) % c == 0, except where a thin border cell was joined.
        for axis, (cell, o) in enumerate(zip((4, 8, 8), offset, strict=True)):
            ids = mask[0, 0].movedim(axis, 0).flatten(1)
            changes = {int(i) for i in ((ids[1:] != ids[:-1]).any(1).nonzero().flatten() + 1)}
            size = ids.shape[0]
            expected = {i for i in range(1, size) if (i + o) % cell == 0}
            first, last = min(expected), max(expected)
            if first * 2 < cell:
                expected.discard(first)  # the thin first cell joined the second
            if (size - last) * 2 < cell:
                expected.discard(last)  # the thin last cell joined the one before
            assert changes == expected, (axis, offset)
            # As many cells along the axis as the unshifted grid, give or take one.
            assert abs(len(changes) + 1 - size // cell) <= 1
    tubes = M.shifted_tube_mask(clips, (None, 8, 8), (0, 4, 4))
    assert bool((tubes[:, :, :1] == tubes).all())  # whole-clip tubes stay whole
    with pytest.raises(ValueError, match="offset"):
        M.shifted_tube_mask(clips, (4, 8, 8), (0, 8, 0))
    with pytest.raises(ValueError, match="cell h"):
        M.shifted_tube_mask(clips, (4, 0, 8), (0, 0, 0))


def test_supervoxels_cover_and_follow_the_content(clips: torch.Tensor) -> None:
    sv = M.supervoxel_mask(clips, n_segments=64)
    assert sv.shape == (2, 1, 16, 32, 32)
    _check_cover(sv, clips)
    assert 32 <= M.num_features(sv) <= 128
    # Supervoxels should not straddle the white squares and the background: measure purity
    # (voxel-weighted share of the majority class per supervoxel) against a plain grid.
    bright = clips.mean(1) > 0.6

    def purity(mask: torch.Tensor) -> float:
        mask = mask.expand(2, 1, 16, 32, 32)[:, 0]
        scores = []
        for i in range(2):
            lab, obj = mask[i].flatten(), bright[i].flatten().float()
            size = torch.bincount(lab).float()
            frac = torch.zeros_like(size).scatter_add_(0, lab, obj) / size
            scores.append(float((torch.maximum(frac, 1 - frac) * size).sum() / size.sum()))
        return min(scores)

    assert purity(sv) > 0.98
    assert purity(sv) > purity(M.tube_mask(clips, (4, 8, 8))) + 0.03
    repeat = M.supervoxel_mask(clips, n_segments=64)
    assert torch.equal(sv, repeat)  # deterministic
    # The middle of the cell is the default start; another start is another segmentation of
    # the same quality (what AggregatedPerturbation's drawn masks vary).
    assert torch.equal(M.supervoxel_mask(clips, n_segments=64, offset=(0.5, 0.5, 0.5)), sv)
    moved = M.supervoxel_mask(clips, n_segments=64, offset=(0.1, 0.9, 0.3))
    _check_cover(moved, clips)
    assert (moved != sv).any()
    assert purity(moved) > 0.98
    with pytest.raises(ValueError, match="offset"):
        M.supervoxel_mask(clips, n_segments=64, offset=(0.5, 1.0, 0.5))


def test_flow_mask_separates_the_moving_object(clips: torch.Tensor) -> None:
    _, labels, truth = MovingShapes("motion", num_samples=2, seed=7).tensors()
    fm = M.flow_mask(clips, threshold=0.5, directions=4, num_segments=2)
    assert fm.shape == (2, 1, 16, 32, 32)
    _check_cover(fm, clips)
    flow = optical_flow(clips)  # (N, T, 2, H, W): what the mask was built from
    dyx = {0: (0.0, 1.0), 1: (0.0, -1.0), 2: (1.0, 0.0), 3: (-1.0, 0.0)}  # right left down up
    for i in range(2):
        ids = fm[i, 0]
        for seg in (slice(0, 8), slice(8, 16)):
            seg_ids, seg_truth = ids[seg], truth[i, seg]
            background = int(torch.bincount(seg_ids.flatten()).argmax())
            on_object = seg_ids[seg_truth]
            # the moving object is (almost) never lumped with the static background ...
            assert (on_object == background).float().mean() < 0.1
            # ... and its feature is the one whose flow points the way the object moves
            feature = int(torch.bincount(on_object).argmax())
            region = seg_ids == feature
            vx = flow[i, seg, 0][region].mean()
            vy = flow[i, seg, 1][region].mean()
            ey, ex = dyx[int(labels[i])]
            assert float(vx * ex + vy * ey) > 0.5 * float(torch.hypot(vx, vy))
    # segments never share a feature
    assert not set(fm[0, 0, :8].unique().tolist()) & set(fm[0, 0, 8:].unique().tolist())


def _linear_model(x: torch.Tensor) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    weight = torch.randn(1, *x.shape[1:])

    class Additive(torch.nn.Module):
        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return torch.stack([(v * weight).flatten(1).sum(1), -(v * weight).flatten(1).sum(1)], 1)

    return Additive(), weight


def _per_feature(values: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """Sum of ``values (N, C, T, H, W)`` over the voxels (and channels) of each feature."""
    full = mask.expand(values.shape[0], 1, *values.shape[2:]).flatten(1)
    return torch.zeros(values.shape[0], k).scatter_add_(1, full, values.sum(1).flatten(1))


_CHEAP = [
    (FeatureAblation, {"perturbations_per_eval": 8}, 1e-4),
    (ShapleyValueSampling, {"n_samples": 2, "perturbations_per_eval": 8}, 1e-4),
]
_KERNEL_SHAP = (KernelShap, {"n_samples": 80, "perturbations_per_eval": 80}, 1e-3)
_LIME = (Lime, {"n_samples": 120, "perturbations_per_eval": 64}, 0.05)
_BUILDERS = ["frame", "segment", "tube", "supervoxel", "flow"]
_CASES = [(b, *m) for b in _BUILDERS for m in _CHEAP] + [
    ("segment", *_KERNEL_SHAP),
    ("supervoxel", *_KERNEL_SHAP),
    ("frame", *_LIME),
    ("flow", *_LIME),
]


@pytest.mark.parametrize("builder, method, kwargs, tol", _CASES)
def test_masks_drive_captum_perturbation_methods(builder, method, kwargs, tol) -> None:  # noqa: ANN001
    """For an additive model the attribution of a feature is exactly its contribution
    sum(w * (x - baseline)) over its voxels (Lime's Lasso shrinks it slightly)."""
    x = MovingShapes("motion", num_samples=1, num_frames=8, size=24, seed=3).tensors()[0]
    mask = {
        "frame": lambda: M.frame_mask(x),
        "segment": lambda: M.segment_mask(x, 3),
        "tube": lambda: M.tube_mask(x, (4, 12, 12)),
        "supervoxel": lambda: M.supervoxel_mask(x, n_segments=12),
        "flow": lambda: M.flow_mask(x, num_segments=2),
    }[builder]()
    k = M.num_features(mask)
    assert k >= 3
    model, weight = _linear_model(x)
    expected = _per_feature(x * weight, mask, k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        attr = method(model).attribute(x, target=0, feature_mask=mask, **kwargs)
    assert attr.shape == x.shape
    # each feature's attribution is constant over its voxels; read it back per feature
    counts = _per_feature(torch.ones_like(x), mask, k)
    value = _per_feature(attr, mask, k) / counts
    scale = expected.abs().max()
    assert float((value - expected).abs().max() / scale) < tol

"""AggregatedPerturbation and the seed-stability measure.

* the stability measure equals scipy's Spearman correlation averaged over pairs (an
  independent oracle), is 1 for maps that only change scale and about 0 for noise;
* at the same number of model evaluations (counted by a wrapper around the model), the
  aggregate of 4 runs on shifted grids ranks the voxels more alike across seeds than one run,
  for Lime and for Kernel SHAP on the demo motion model, and keeps its relevance on the moving
  object (numbers printed with ``-s``);
* the runs are stratified shifted cuboid grids and the result is exactly the mean of Captum's
  own method on those grids; the budget split; clip-by-clip equals batched; seeds repeat and
  leave the caller's random state alone; the library contracts and bad input.
"""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
from captum.attr import FeatureAblation, KernelShap, Lime, Saliency
from torch import Tensor, nn

from captum_video.attr._aggregate import AggregatedPerturbation
from captum_video.datasets import MovingShapes
from captum_video.masks import num_features, tube_mask
from captum_video.metrics import relevance_mass, relevance_rank
from captum_video.metrics.stability import rank_stability, seed_stability
from captum_video.models import load_demo_model
from tests.helpers import assert_model_unchanged, model_snapshot

#: sklearn's Lasso (Captum Lime's surrogate) notes slow convergence on fits of a few samples.
pytestmark = pytest.mark.filterwarnings("ignore:Objective did not converge")

CELL = (16, 8, 8)
SEEDS = tuple(range(6))
BUDGET = 128


class CountingModel(nn.Module):
    """The model, counting the clips it evaluates (the budget of a perturbation method)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.evaluated = 0

    def forward(self, x: Tensor) -> Tensor:
        self.evaluated += x.shape[0]
        return self.model(x)


@pytest.fixture(scope="module")
def shapes() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Two motion clips, labels, object masks and a motion-removing baseline (each voxel's
    temporal mean: a replaced cuboid keeps its look but stops moving)."""
    clips, labels, masks = MovingShapes("motion", num_samples=2, seed=4242).tensors()
    baseline = clips.mean(2, keepdim=True).expand_as(clips).contiguous()
    return clips, labels, masks, baseline


# --- the stability measure -------------------------------------------------------------------


def test_rank_stability_equals_scipy_spearman_over_pairs() -> None:
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(0)
    # Rounded values: many ties, which scipy ranks by their average rank too.
    maps = (torch.randn(4, 3, 2, 3, 4, 5, generator=g) * 3).round()
    ours = rank_stability(maps, absolute=False)
    for n in range(3):
        pairs = [
            stats.spearmanr(maps[i, n].flatten().numpy(), maps[j, n].flatten().numpy())[0]
            for i, j in itertools.combinations(range(4), 2)
        ]
        assert ours[n].item() == pytest.approx(sum(pairs) / len(pairs), abs=1e-5)
    absolute = rank_stability(list(maps))
    expected = rank_stability(maps.abs(), absolute=False)
    assert torch.allclose(absolute, expected)


def test_rank_stability_reads_scale_as_stable_and_noise_as_unstable() -> None:
    g = torch.Generator().manual_seed(1)
    base = torch.rand(2, 1, 4, 8, 8, generator=g)
    assert torch.allclose(rank_stability([base, 3 * base, 0.5 * base]), torch.ones(2))
    noise = torch.rand(6, 2, 1, 4, 8, 8, generator=g)
    assert rank_stability(noise).abs().max() < 0.05
    constant = torch.stack([torch.ones(1, 5), torch.ones(1, 5)])
    assert torch.isnan(rank_stability(constant)).all()


def test_seed_stability_seeds_each_run_and_restores_the_callers_generator() -> None:
    x = torch.rand(2, 3, 4, 8, 8)
    state = torch.get_rng_state()
    noisy = seed_stability(lambda v, t: torch.rand_like(v), x, seeds=range(4))
    assert torch.equal(torch.get_rng_state(), state)
    assert noisy.maps.shape == (4, 2, 3, 4, 8, 8)
    assert not torch.equal(noisy.maps[0], noisy.maps[1])
    again = seed_stability(lambda v, t: torch.rand_like(v), x, seeds=range(4))
    assert torch.equal(again.maps, noisy.maps)  # seeded: the same maps again
    assert noisy.stability.abs().max() < 0.05
    fixed = seed_stability(lambda v, t: v * 2, x, seeds=[0, 1])
    assert torch.allclose(fixed.stability, torch.ones(2))


def test_stability_bad_input() -> None:
    x = torch.rand(1, 3, 4, 8, 8)
    with pytest.raises(ValueError, match="at least two distinct ints"):
        seed_stability(lambda v, t: v, x, seeds=[3])
    with pytest.raises(ValueError, match="at least two distinct ints"):
        seed_stability(lambda v, t: v, x, seeds=[1, 1])
    with pytest.raises(TypeError, match="bind them"):
        seed_stability(lambda v, t: v, x, seeds=[0, 1], n_samples=4)
    with pytest.raises(TypeError, match="explain must be"):
        seed_stability("lime", x, seeds=[0, 1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 2 runs"):
        rank_stability(torch.rand(1, 2, 5))
    with pytest.raises(ValueError, match="one shape"):
        rank_stability([torch.rand(1, 5), torch.rand(1, 6)])
    with pytest.raises(ValueError, match="NaN"):
        rank_stability(torch.full((2, 1, 5), float("nan")))


# --- the claim: more stable at the same budget, relevance still on the object ---------------


@pytest.mark.slow
@pytest.mark.parametrize("method", [Lime, KernelShap], ids=["lime", "kernel_shap"])
def test_aggregate_is_more_stable_than_one_run_at_the_same_budget(
    demo_model, shapes, method
) -> None:  # noqa: ANN001
    clips, labels, masks, baseline = shapes
    model = CountingModel(demo_model).eval()
    kwargs = {"n_samples": BUDGET, "perturbations_per_eval": 64, "baselines": baseline}
    results, evaluated = {}, {}
    for runs in (1, 4):
        model.evaluated = 0
        agg = AggregatedPerturbation(method(model), n_runs=runs, mask=CELL)
        results[runs] = seed_stability(agg, clips, SEEDS, target=labels, **kwargs)
        evaluated[runs] = model.evaluated
    # The same budget: n_samples evaluations per clip and seed, plus the one forward that
    # checks the target.
    assert evaluated[1] == evaluated[4] == (BUDGET + 1) * len(SEEDS) * len(clips)

    stability = {r: res.stability.mean().item() for r, res in results.items()}
    # Relevance mass and rank per (clip, seed): ``len(SEEDS) * len(clips)`` values each.
    mass = {
        r: torch.stack([relevance_mass(m, masks) for m in res.maps]).flatten()
        for r, res in results.items()
    }
    rank = {
        r: torch.stack([relevance_rank(m, masks) for m in res.maps]).mean().item()
        for r, res in results.items()
    }
    # A single run's mass swings with where its grid happens to fall (0.08 to 0.18 on these
    # clips), so "does not drop" is read against the noise of the two estimates: the
    # aggregate's mean mass may not lie more than two standard errors of the difference
    # below the single run's (a one-sided test at about the 2 % level).
    se = (mass[1].var() / mass[1].numel() + mass[4].var() / mass[4].numel()).sqrt().item()
    drop = (mass[1].mean() - mass[4].mean()).item()
    print(
        f"\n{method.__name__}: stability 1 run {stability[1]:.3f} vs 4 runs {stability[4]:.3f}; "
        f"relevance mass {mass[1].mean():.3f} vs {mass[4].mean():.3f} (difference "
        f"{-drop:+.3f}, standard error {se:.3f}); relevance rank {rank[1]:.3f} vs "
        f"{rank[4]:.3f} (object share of the clip {masks.float().mean():.3f})"
    )
    assert stability[4] > stability[1] + 0.1
    # The averaged map keeps its relevance on the moving object...
    assert drop < 2 * se
    assert mass[4].mean() > 2.5 * masks.float().mean()
    # ... and puts its top voxels there at least as often.
    assert rank[4] >= rank[1]


# --- what the runs are -----------------------------------------------------------------------


class RecordingAblation(FeatureAblation):
    """FeatureAblation that keeps the feature mask of every call."""

    def __init__(self, forward_func: nn.Module) -> None:
        super().__init__(forward_func)
        self.masks: list[Tensor] = []

    def attribute(  # type: ignore[override]
        self,
        inputs: Tensor,
        baselines: object = None,
        target: object = None,
        additional_forward_args: object = None,
        feature_mask: Tensor | None = None,
        perturbations_per_eval: int = 1,
        show_progress: bool = False,
    ) -> Tensor:
        assert feature_mask is not None
        self.masks.append(feature_mask)
        return super().attribute(
            inputs,
            baselines=baselines,  # type: ignore[arg-type]
            target=target,  # type: ignore[arg-type]
            additional_forward_args=additional_forward_args,
            feature_mask=feature_mask,
            perturbations_per_eval=perturbations_per_eval,
        )


def _offset(mask: Tensor, axis: int, cell: int) -> int:
    """The grid offset along ``axis`` read from where the feature ids change."""
    ids = mask[0, 0].movedim(axis, 0).flatten(1)
    changes = (ids[1:] != ids[:-1]).any(1).nonzero().flatten() + 1
    boundaries = {int(c) % cell for c in changes}
    assert len(boundaries) == 1, "the boundaries along an axis are one cell apart"
    return (-boundaries.pop()) % cell


def test_runs_are_stratified_shifted_grids_and_the_result_their_mean(demo_model, shapes) -> None:  # noqa: ANN001
    clips, labels, _, baseline = shapes
    x, y = clips[:1], labels[:1]
    recorder = RecordingAblation(demo_model)
    out = AggregatedPerturbation(recorder, n_runs=4, mask=CELL).attribute(
        x, target=y, baselines=baseline[:1], perturbations_per_eval=32, seed=3
    )
    assert len(recorder.masks) == 4
    for axis, extent in ((2, 8), (3, 8)):  # rows, columns
        offsets = [_offset(m, axis - 1, extent) for m in recorder.masks]
        # Stratified: one offset in each quarter of the cell.
        assert sorted(o // (extent // 4) for o in offsets) == [0, 1, 2, 3], offsets
    for m in recorder.masks:
        assert m.dtype == torch.long and m.shape == (1, 1, 16, 32, 32)
        sizes = torch.bincount(m.flatten())
        assert (sizes > 0).all()  # ids 0 .. K - 1, all used
        # As many features as the unshifted grid, give or take one per axis (no shift in
        # time: the cell spans the clip's 16 frames).
        assert 4 * 4 <= num_features(m) <= 5 * 5
        for k in range(num_features(m)):  # every feature is one box
            where = (m[0, 0] == k).nonzero()
            box = (where.max(0).values - where.min(0).values + 1).prod()
            assert box == sizes[k]
    oracle = torch.stack(
        [
            FeatureAblation(demo_model).attribute(
                x, target=y, baselines=baseline[:1], feature_mask=m, perturbations_per_eval=32
            )
            for m in recorder.masks
        ]
    ).mean(0)
    assert torch.allclose(out, oracle, atol=1e-6)


def test_budget_is_split_over_the_runs(demo_model) -> None:  # noqa: ANN001
    budgets: list[int] = []

    class RecordingLime(Lime):
        def attribute(self, inputs, n_samples=50, **kwargs):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN003, ANN201
            budgets.append(n_samples)
            return super().attribute(inputs, n_samples=n_samples, **kwargs)

    model = CountingModel(demo_model).eval()
    x = torch.rand(1, 3, 16, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's Lasso on 2-3 samples
        AggregatedPerturbation(RecordingLime(model), n_runs=4, mask=CELL).attribute(
            x, target=0, n_samples=10, perturbations_per_eval=8, seed=0
        )
    assert budgets == [3, 3, 2, 2]
    assert model.evaluated == 10 + 1  # and the forward that checks the target


def test_batch_equals_clip_by_clip_and_seeds_repeat(demo_model, shapes) -> None:  # noqa: ANN001
    clips, labels, _, baseline = shapes
    agg = AggregatedPerturbation(KernelShap(demo_model), n_runs=2, mask=CELL)
    kwargs = {"n_samples": 16, "perturbations_per_eval": 16, "seed": 5}
    state = torch.get_rng_state()
    batch = agg.attribute(clips, target=labels, baselines=baseline, **kwargs)
    assert torch.equal(torch.get_rng_state(), state)  # an explicit seed leaves it alone
    for i in range(2):
        alone = agg.attribute(
            clips[i : i + 1], target=labels[i : i + 1], baselines=baseline[i : i + 1], **kwargs
        )
        assert torch.allclose(batch[i : i + 1], alone, atol=1e-6)
    assert torch.equal(batch, agg.attribute(clips, target=labels, baselines=baseline, **kwargs))
    other = agg.attribute(clips, target=labels, baselines=baseline, **{**kwargs, "seed": 6})
    assert not torch.equal(batch, other)
    # seed=None draws from torch's generator, so torch.manual_seed repeats it (as Captum).
    free = {**kwargs, "seed": None}
    torch.manual_seed(9)
    first = agg.attribute(clips, target=labels, baselines=baseline, **free)
    torch.manual_seed(9)
    assert torch.equal(first, agg.attribute(clips, target=labels, baselines=baseline, **free))
    # target=None explains each clip's predicted class.
    predicted = demo_model(clips).argmax(1)
    by_prediction = agg.attribute(clips, target=predicted, baselines=baseline, **kwargs)
    assert torch.equal(agg.attribute(clips, baselines=baseline, **kwargs), by_prediction)


def test_tuple_inputs_callable_masks_and_fixed_masks(demo_model) -> None:  # noqa: ANN001
    x = torch.rand(1, 3, 16, 32, 32)
    flow = torch.rand(1, 3, 16, 32, 32)

    def two_streams(a: Tensor, b: Tensor) -> Tensor:
        return demo_model(a) + demo_model(b)

    agg = AggregatedPerturbation(FeatureAblation(two_streams), n_runs=2, mask=(None, 16, 16))
    out = agg.attribute((x, flow), target=1, perturbations_per_eval=8, seed=0)
    assert isinstance(out, tuple) and len(out) == 2
    assert out[0].shape == x.shape and out[1].shape == flow.shape
    # A fixed mask: a deterministic method then gives exactly one run's map.
    fixed = tube_mask(x, (8, 16, 16))
    ours = AggregatedPerturbation(FeatureAblation(demo_model), n_runs=3, mask=fixed).attribute(
        x, target=2, seed=0
    )
    theirs = FeatureAblation(demo_model).attribute(x, target=2, feature_mask=fixed)
    assert torch.allclose(ours, theirs, atol=1e-6)
    # A callable draws one mask per run from the run's generator.
    seen: list[Tensor] = []

    def drawn(inputs: Tensor, generator: torch.Generator) -> Tensor:
        seen.append(torch.randint(0, 2, (1,), generator=generator))
        return tube_mask(inputs, (16, 16, 16))

    AggregatedPerturbation(FeatureAblation(demo_model), n_runs=3, mask=drawn).attribute(
        x, target=0, seed=1
    )
    assert len(seen) == 3


def test_on_device_matches_cpu(demo_model, device) -> None:  # noqa: ANN001
    x = torch.rand(1, 3, 16, 32, 32)
    model = demo_model.to(device)
    try:
        agg = AggregatedPerturbation(FeatureAblation(model), n_runs=2, mask=(8, 16, 16))
        out = agg.attribute(x.to(device), target=1, seed=0)
    finally:
        demo_model.to("cpu")
    assert out.device.type == device.type
    cpu = AggregatedPerturbation(FeatureAblation(demo_model), n_runs=2, mask=(8, 16, 16))
    assert torch.allclose(out.cpu(), cpu.attribute(x, target=1, seed=0), atol=1e-4)


# --- contracts and bad input -------------------------------------------------------------------


def test_contracts_train_mode_model_and_caller_tensors(shapes) -> None:  # noqa: ANN001
    clips, labels, _, _ = shapes
    model = load_demo_model("motion").train()
    before = model_snapshot(model)
    x = clips[:1].clone()
    assert hasattr(AggregatedPerturbation.attribute, "__wrapped__")  # log_usage outermost
    agg = AggregatedPerturbation(FeatureAblation(model), n_runs=2, mask=(16, 16, 16))
    with pytest.warns(UserWarning, match="eval mode"):
        agg.attribute(x, target=labels[:1], seed=0)
    assert_model_unchanged(before, model)
    assert torch.equal(x, clips[:1])
    with (
        pytest.warns(UserWarning),
        pytest.raises(ValueError, match="n_samples must be an int >= 4"),
    ):
        AggregatedPerturbation(Lime(model), n_runs=4).attribute(x, target=0, n_samples=3)
    assert_model_unchanged(before, model)


def test_bad_input(demo_model) -> None:  # noqa: ANN001
    x = torch.rand(1, 3, 16, 32, 32)
    with pytest.raises(TypeError, match="perturbation attribution"):
        AggregatedPerturbation(Saliency(demo_model))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_runs"):
        AggregatedPerturbation(Lime(demo_model), n_runs=0)
    with pytest.raises(ValueError, match="cell h must be a positive int"):
        AggregatedPerturbation(Lime(demo_model), mask=(4, 0, 8))
    with pytest.raises(TypeError, match="mask must be a cell"):
        AggregatedPerturbation(Lime(demo_model), mask="supervoxels")  # type: ignore[arg-type]
    agg = AggregatedPerturbation(FeatureAblation(demo_model), n_runs=2)
    with pytest.raises(ValueError, match="takes none"):
        agg.attribute(x, target=0, n_samples=10)
    with pytest.raises(ValueError, match="5-D video"):
        agg.attribute(x[0], target=0)
    with pytest.raises(ValueError, match="out of range"):
        agg.attribute(x, target=7)
    with pytest.raises(TypeError, match="feature_mask must be a cell"):
        agg.attribute(x, target=0, feature_mask=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed"):
        agg.attribute(x, target=0, seed=-1)

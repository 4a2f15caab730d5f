"""AggregatedPerturbation against one run at the same budget: cost, stability across seeds and
localisation on the demo motion model.

**Cost.** Per method (Captum ``Lime`` and ``KernelShap``), every contender is timed as a whole
call on the same clip, all of them together by :func:`~benchmarks._common.interleaved_times`:

* ``forward_backward``: one forward recording the graph + the backward from the target score
  to the input (the unit every ratio is given in);
* ``captum_fixed_grid``: the Captum method on one fixed cuboid grid
  (``feature_mask=tube_mask(clip, cell)``), ``n_samples`` evaluations;
* ``one_run``: :class:`~captum_video.attr.AggregatedPerturbation` with ``n_runs=1`` (one run
  on a seed-drawn shifted grid), same budget;
* ``aggregate``: ``n_runs`` runs sharing the same budget.

Ratios are round by round against ``forward_backward`` and ``aggregate`` against
``captum_fixed_grid`` (median, min, max over rounds); on the CPU also with process CPU time
(``*_cpu``), which a busy shared machine distorts far less.

**Quality** (``--quality``, also in ``--full``). For the same three contenders on
``MovingShapes("motion")`` clips: the mean pairwise Spearman correlation of the maps over
seeds (:func:`~captum_video.metrics.stability.seed_stability`), the relevance mass and the
relevance rank on the moving object (:mod:`captum_video.metrics.localization`), and the
number of model evaluations (counted). ``--masks supervoxels`` runs the same three on
supervoxels (:func:`~captum_video.masks.supervoxel_mask`): Captum on one segmentation, one run
and the aggregate on segmentations whose k-means starts at drawn places.

Run ``python -m benchmarks.stability --quick`` (cost only, 128 samples; ``--quality`` adds
quality on 2 clips x 6 seeds) or ``--full`` (256 samples, quality on 4 clips x 8 seeds),
``--out FILE.json``.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable
from typing import Any

import torch
from captum.attr import KernelShap, Lime
from torch import Tensor, nn

from benchmarks._common import emit, interleaved_times, ratio
from captum_video.attr._aggregate import AggregatedPerturbation
from captum_video.datasets import MovingShapes
from captum_video.masks import supervoxel_mask, tube_mask
from captum_video.metrics import relevance_mass, relevance_rank
from captum_video.metrics.stability import seed_stability
from captum_video.models import load_demo_model

CELL = (16, 8, 8)
#: About as many supervoxels as the grid has cells on a 16 x 32 x 32 clip (18 come out).
SUPERVOXELS = 18
METHODS = {"lime": Lime, "kernel_shap": KernelShap}


class CountingModel(nn.Module):
    """The model, counting the clips it evaluates."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.evaluated = 0

    def forward(self, x: Tensor) -> Tensor:
        self.evaluated += x.shape[0]
        return self.model(x)


def drawn_supervoxels(clips: Tensor, generator: torch.Generator) -> Tensor:
    """Supervoxels whose k-means starts at a random place in its grid cells (one segmentation
    of many equally valid ones, drawn from the run's generator)."""
    offset = tuple(torch.rand(3, generator=generator).tolist())
    return supervoxel_mask(clips, n_segments=SUPERVOXELS, offset=offset)  # type: ignore[arg-type]


def contenders(
    method: type, model: nn.Module, clip: Tensor, n_runs: int, masks: str = "cells"
) -> dict[str, tuple[Any, dict[str, Any]]]:
    """name -> (attribution object, extra attribute keywords) of the three contenders.

    ``masks="cells"``: cuboids of ``CELL`` (a fixed grid, shifted grids); ``"supervoxels"``:
    ``SUPERVOXELS`` supervoxels (started in the cells' middles, or at drawn places).
    """
    if masks == "supervoxels":
        fixed: Tensor = supervoxel_mask(clip, n_segments=SUPERVOXELS)
        drawn: Any = drawn_supervoxels
    else:
        fixed, drawn = tube_mask(clip, CELL), CELL
    return {
        "captum_fixed_grid": (method(model), {"feature_mask": fixed}),
        "one_run": (AggregatedPerturbation(method(model), n_runs=1, mask=drawn), {}),
        "aggregate": (AggregatedPerturbation(method(model), n_runs=n_runs, mask=drawn), {}),
    }


def forward_backward(model: nn.Module, x: Tensor, target: Tensor) -> Callable[[], Tensor]:
    """One forward + the backward from the target scores down to the input."""
    rows = torch.arange(len(target), device=x.device)

    def run() -> Tensor:
        inp = x.detach().requires_grad_()
        return torch.autograd.grad(model(inp)[rows, target].sum(), inp)[0]

    return run


def bench_cost(
    name: str, n_samples: int, n_runs: int, repeats: int, device: torch.device
) -> dict[str, Any]:
    """Time the contenders of one method on one clip; returns timings and ratios."""
    model = load_demo_model("motion").to(device)
    clips, labels, _ = MovingShapes("motion", num_samples=1, seed=4242).tensors()
    x, y = clips.to(device), labels.to(device)
    baseline = x.mean(2, keepdim=True).expand_as(x).contiguous()
    common = {"n_samples": n_samples, "perturbations_per_eval": 64, "baselines": baseline}
    fns: dict[str, Callable[[], Any]] = {"forward_backward": forward_backward(model, x, y)}
    for key, (method, extra) in contenders(METHODS[name], model, x, n_runs).items():
        fns[key] = lambda m=method, e=extra: m.attribute(x, target=y, **common, **e)
    times = interleaved_times(fns, device, repeats)
    ratios: dict[str, Any] = {
        "vs_forward_backward": {key: ratio(times, key, "forward_backward") for key in fns},
        "aggregate_vs_captum_fixed_grid": ratio(times, "aggregate", "captum_fixed_grid"),
    }
    if device.type == "cpu":
        ratios["vs_forward_backward_cpu"] = {
            key: ratio(times, key, "forward_backward", cpu=True) for key in fns
        }
        ratios["aggregate_vs_captum_fixed_grid_cpu"] = ratio(
            times, "aggregate", "captum_fixed_grid", cpu=True
        )
    return {
        "method": name,
        "clip": list(x.shape),
        "cell": list(CELL),
        "n_samples": n_samples,
        "n_runs": n_runs,
        "times": times,
        "ratios": ratios,
    }


def bench_quality(
    name: str,
    n_samples: int,
    n_runs: int,
    num_clips: int,
    seeds: int,
    device: torch.device,
    data_seed: int = 4242,
    masks_kind: str = "cells",
) -> dict[str, Any]:
    """Stability over seeds, relevance mass and rank of the three contenders."""
    model = CountingModel(load_demo_model("motion")).eval().to(device)
    clips, labels, masks = MovingShapes("motion", num_samples=num_clips, seed=data_seed).tensors()
    clips, labels, masks = clips.to(device), labels.to(device), masks.to(device)
    baseline = clips.mean(2, keepdim=True).expand_as(clips).contiguous()
    common = {"n_samples": n_samples, "perturbations_per_eval": 64, "baselines": baseline}
    rows: dict[str, Any] = {}
    for key, (method, extra) in contenders(METHODS[name], model, clips, n_runs, masks_kind).items():
        model.evaluated = 0
        result = seed_stability(method, clips, range(seeds), target=labels, **common, **extra)
        # One value per (seed, clip): a single run's mass swings with where its grid falls,
        # so its standard error is reported with it.
        mass = torch.stack([relevance_mass(m, masks) for m in result.maps]).flatten()
        rank = torch.stack([relevance_rank(m, masks) for m in result.maps]).flatten()
        rows[key] = {
            "stability": result.stability.mean().item(),
            "stability_per_clip": result.stability.tolist(),
            "relevance_mass": mass.mean().item(),
            "relevance_mass_standard_error": (mass.std() / mass.numel() ** 0.5).item(),
            "relevance_rank": rank.mean().item(),
            "model_evaluations_per_clip_and_seed": model.evaluated / (num_clips * seeds),
        }
    return {
        "method": name,
        "clips": num_clips,
        "data_seed": data_seed,
        "seeds": seeds,
        "n_samples": n_samples,
        "n_runs": n_runs,
        "masks": masks_kind,
        "object_share": masks.float().mean().item(),
        "contenders": rows,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print (and optionally write) its JSON.

    Args:
        argv (list of str, optional): ``--quick`` (default) or ``--full``, ``--quality``,
            ``--repeats``, ``--n-samples``, ``--n-runs``, ``--data-seed``, ``--seeds``,
            ``--masks``, ``--device``, ``--out FILE.json``.
            Default: ``sys.argv``

    Returns:
        dict: the emitted payload.

    Example::

        >>> payload = main(["--quick", "--repeats", "1"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="cost only, 128 samples (default)")
    size.add_argument("--full", action="store_true", help="256 samples, with --quality")
    parser.add_argument("--quality", action="store_true", help="stability and localisation")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (after 1 warm-up)")
    parser.add_argument("--n-samples", type=int, default=None, help="the budget of every run")
    parser.add_argument("--n-runs", type=int, default=4)
    parser.add_argument("--data-seed", type=int, default=4242, help="seed of the quality clips")
    parser.add_argument(
        "--masks",
        choices=("cells", "supervoxels"),
        default="cells",
        help="features of the quality contenders: cuboid cells or supervoxels",
    )
    parser.add_argument("--seeds", type=int, default=None, help="seeds per clip (6; 8 with --full)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    n_samples = args.n_samples or (256 if args.full else 128)
    repeats = args.repeats or (5 if args.full else 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's Lasso convergence notes on tiny fits
        cost = [bench_cost(name, n_samples, args.n_runs, repeats, device) for name in METHODS]
        quality = (
            [
                bench_quality(
                    name,
                    n_samples,
                    args.n_runs,
                    4 if args.full else 2,
                    args.seeds or (8 if args.full else 6),
                    device,
                    args.data_seed,
                    args.masks,
                )
                for name in METHODS
            ]
            if args.quality or args.full
            else []
        )
    payload = {"mode": "full" if args.full else "quick", "cost": cost, "quality": quality}
    return emit("stability", payload, args.out)


if __name__ == "__main__":
    main()

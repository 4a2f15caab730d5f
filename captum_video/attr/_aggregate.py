r"""Aggregated perturbation attribution: one budget of model calls, several runs, one map.

LIME's map changes with the random seed and with its segmentation (Hiley et al. 2019,
"Explainable Deep Learning for Video Recognition Tasks: A Framework & Recommendations", who
recommend aggregating runs; Alvarez-Melis and Jaakkola 2018, "On the Robustness of
Interpretability Methods"; Visani et al. 2020, "Statistical stability indices for LIME").
:class:`AggregatedPerturbation` wraps any Captum perturbation method (``Lime``,
``KernelShap``, ``ShapleyValueSampling``, ``FeatureAblation``, ...), splits the budget
``n_samples`` over ``n_runs`` runs, each with its own seed and its own placement of the
segmentation, and averages the maps.

What aggregation buys at an equal budget is independence from where the features happen to
lie, not less sampling noise. Averaging runs on one fixed grid is no more repeatable across
seeds than one run with all the samples. But a single run's map is tied to the arbitrary
placement of its grid: single runs on seed-drawn grids a few pixels apart rank the voxels
alike only at about 0.5, and each map carries its grid's block edges. Averaging runs on
stratified shifted grids averages that choice away. Measured on the demo motion model
(2 clips, 6 seeds, 128 counted model calls, cells of 16 x 8 x 8, the clip's temporal mean as
the baseline): mean pairwise rank correlation over seeds 0.54 for one run on a seed-drawn grid
and 0.76 for 4 runs (LIME), 0.48 and 0.58 (Kernel SHAP); the share of the 3.5 % object voxels
among the most relevant ones (relevance rank) rises from 0.19 to 0.29 and 0.18 to 0.28; the
relevance mass stays (0.127 and 0.127, 0.117 and 0.119, standard errors about 0.011 for one
run and 0.004 for the aggregate): for maps without a negative part, the mean map's mass is the
runs' masses averaged, weighted by their positive totals. A single run on one *fixed* grid
repeats better across these seeds (0.83, 0.74), because its seeds share every block edge; its
stability is that of one arbitrary segmentation, and its relevance rank is lower (0.14, 0.16).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from captum._utils.common import (
    _format_additional_forward_args,
    _format_output,
    _run_forward,
)
from captum._utils.typing import TargetType
from captum.attr import PerturbationAttribution
from captum.attr._core.lime import LimeBase
from captum.attr._utils.batching import _batch_example_iterator
from captum.log import log_usage
from torch import Tensor

from captum_video._model_state import in_eval_mode
from captum_video._scalars import validate_positive_int
from captum_video._targets import resolve_target
from captum_video._validation import format_video_inputs
from captum_video.masks import cuboid_ids, shifted_tube_mask

__all__ = ["AggregatedPerturbation"]

#: A cuboid cell ``(t, h, w)`` (``t = None``: whole-clip tubes), a fixed feature mask, or a
#: callable ``mask(inputs, generator) -> feature_mask`` drawn once per run.
MaskSpec = tuple[int | None, int, int] | Tensor | tuple[Tensor, ...] | Callable[..., Any]


class AggregatedPerturbation(PerturbationAttribution):
    r"""Average ``n_runs`` runs of a Captum perturbation method that share one budget.

    With a cuboid ``mask=(t, h, w)``, run ``r`` uses the grid of
    :func:`~captum_video.masks.shifted_tube_mask` with an offset ``o_r`` per axis, and the
    attribution is the mean of the runs' maps:

    .. math::
        a = \frac{1}{R} \sum_{r=1}^{R} \phi(x;\ \text{seed}_r,\ \text{grid}(o_r),\ n_r),
        \qquad \sum_r n_r = n_\text{samples}

    ``n_r`` is ``n_samples // R`` (the first ``n_samples % R`` runs get one more).
    The offsets are stratified with a random start (a Latin hypercube over the cell):
    along an axis of cell extent ``c``, ``o_r = floor(c * ((u + perm(r) / R) mod 1))`` with
    ``u`` uniform and ``perm`` a random permutation, both drawn per axis from the seed, so the
    ``R`` grids cover the cell's alignments evenly and no single placement is privileged.
    ``t = None`` keeps whole-clip tubes (no shift in time). Thin border cells join their
    neighbours, so every run has about as many features as the unshifted grid.

    **Why the mean.** The arithmetic mean keeps the method's units (a LIME or Kernel SHAP
    coefficient per voxel, in output units) and is linear, so maps of different targets or
    models stay comparable; with the per-voxel median a map of piecewise-constant runs would
    keep block edges, and averaging ranks would discard the scale that relevance-mass metrics
    read.

    **Cost.** Methods with an ``n_samples`` argument (``Lime``, ``KernelShap``,
    ``ShapleyValueSampling``) get the split budget, so the total number of model evaluations
    equals one run with ``n_samples`` (Kernel SHAP spends 2 of each run's samples on the empty
    and full coalitions; on a batch of ``N > 1`` clips Captum's Lime and Kernel SHAP make one
    more forward of the batch per run to check the output's shape, which is avoided here by
    explaining clip by clip, as they would anyway), plus one forward of the clips to check the
    target. Deterministic methods
    without ``n_samples`` (``FeatureAblation``) cost ``n_runs`` times one run and vary only the
    grid. Besides the model calls, each run builds one integer mask.

    Args:
        method (PerturbationAttribution): a Captum perturbation attribution object taking a
            ``feature_mask``, e.g. ``Lime(model)``; its ``forward_func`` is the model.
        n_runs (int, optional): runs to average. Default: 4
        mask (tuple, Tensor or callable, optional): the features: a cell ``(t, h, w)`` of
            frames x rows x columns (shifted per run as above), a fixed feature mask (Tensor,
            or a tuple for tuple inputs: only the seeds differ between runs), or a callable
            ``mask(inputs, generator) -> feature_mask`` called once per run with that run's
            ``torch.Generator`` (e.g. supervoxels with a drawn ``n_segments``). The
            ``feature_mask`` of :meth:`attribute` overrides it. Pick the cell for the clip
            size and the budget: each run's share of ``n_samples`` should exceed the number of
            features (16 for the default on a 16 x 32 x 32 clip, 196 on 16 x 112 x 112).
            Default: ``(4, 16, 16)``

    Example::

        >>> model = load_demo_model("motion")
        >>> agg = AggregatedPerturbation(Lime(model), n_runs=4, mask=(4, 16, 16))
        >>> attr = agg.attribute(clip, target=label, n_samples=128, seed=0)
        >>> attr.shape == clip.shape
        True
    """

    def __init__(
        self,
        method: PerturbationAttribution,
        n_runs: int = 4,
        mask: MaskSpec = (4, 16, 16),
    ) -> None:
        if not isinstance(method, PerturbationAttribution):
            raise TypeError(
                "method must be a Captum perturbation attribution object such as Lime(model), "
                f"KernelShap(model) or FeatureAblation(model), got {type(method).__name__}"
            )
        params = inspect.signature(method.attribute).parameters.values()
        if not any(p.name == "feature_mask" or p.kind is p.VAR_KEYWORD for p in params):
            raise TypeError(
                f"method {type(method).__name__} takes no feature_mask; use Lime, KernelShap, "
                "ShapleyValueSampling, FeatureAblation or FeaturePermutation"
            )
        PerturbationAttribution.__init__(self, method.forward_func)
        self.method = method
        self.n_runs = validate_positive_int(n_runs, "n_runs")
        _check_spec(mask, "mask")
        self.mask = mask

    @log_usage(part_of_slo=True)
    @in_eval_mode
    def attribute(  # type: ignore[override]
        self,
        inputs: Tensor | tuple[Tensor, ...],
        baselines: Any = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        feature_mask: MaskSpec | None = None,
        n_samples: int | None = None,
        perturbations_per_eval: int = 1,
        show_progress: bool = False,
        seed: int | None = None,
        **kwargs: Any,
    ) -> Tensor | tuple[Tensor, ...]:
        r"""Run the wrapped method ``n_runs`` times on shifted features and average the maps.

        A model in train mode runs in eval mode for the call (with a warning; each module's
        mode is restored afterwards), so its BatchNorm statistics never change. The caller's
        global random state is the same afterwards when ``seed`` is given.

        Args:
            inputs (Tensor or tuple of Tensor): clips ``(N, C, T, H, W)``.
            baselines (Any, optional): passed to the method (e.g. ``0.0`` or a tensor).
                Default: None
            target (int, tuple, Tensor or list, optional): output indices to attribute;
                ``None`` attributes each clip's predicted class, fixed once so every run
                explains the same class. Default: None
            additional_forward_args (Any, optional): extra arguments of the model.
                Default: None
            feature_mask (tuple, Tensor or callable, optional): overrides the ``mask`` given
                to the constructor (same kinds). Default: None
            n_samples (int, optional): the total budget, split over the runs (at least one
                per run); ``None`` uses the method's own default for the total. Ignored for
                methods without ``n_samples`` (each run then costs a whole run).
                Default: None
            perturbations_per_eval (int, optional): perturbations per forward pass (capped at
                each run's share of ``n_samples``). Default: 1
            show_progress (bool, optional): the method's progress bar, per run. Default: False
            seed (int, optional): seed of the runs' seeds and of the grid offsets; ``None``
                draws them from torch's global generator (so ``torch.manual_seed`` makes the
                result repeat, as with Captum's own methods). Default: None
            **kwargs: further keywords of the method's ``attribute`` (e.g.
                ``return_input_shape``).

        Returns:
            *Tensor* or *tuple[Tensor, ...]* of **attributions**: the mean of the runs' maps,
            shaped as the method returns them (input-shaped by default).

        Example::

            >>> agg = AggregatedPerturbation(KernelShap(model), n_runs=4, mask=(16, 8, 8))
            >>> attr = agg.attribute(clip, target=label, baselines=0.0, n_samples=128,
            ...                      perturbations_per_eval=32, seed=0)
        """
        is_tuple, xs = format_video_inputs(inputs, model=self.forward_func)
        spec = self.mask if feature_mask is None else feature_mask
        _check_spec(spec, "feature_mask")
        validate_positive_int(perturbations_per_eval, "perturbations_per_eval")
        if seed is not None:
            validate_positive_int(seed, "seed", minimum=0)
        params = inspect.signature(self.method.attribute).parameters
        budgets: list[int | None] = [None] * self.n_runs
        if "n_samples" in params:
            total = params["n_samples"].default if n_samples is None else n_samples
            total = validate_positive_int(total, "n_samples", minimum=self.n_runs)
            budgets = [total // self.n_runs + (r < total % self.n_runs) for r in range(self.n_runs)]
        elif n_samples is not None:
            raise ValueError(
                f"n_samples was given but {type(self.method).__name__} takes none; leave it out "
                "(each run then costs one whole run of the method)"
            )
        afa = additional_forward_args
        # One forward of the clips: checks the target against the model's classes and fixes
        # target=None to each clip's predicted class, so every run explains the same class.
        with torch.no_grad():
            output = _run_forward(self.forward_func, xs, None, _format_additional_forward_args(afa))
        if not isinstance(output, Tensor):
            raise TypeError(
                f"the model must return a tensor of scores, got {type(output).__name__}"
            )
        target = resolve_target(output, target)

        generator = torch.Generator()
        generator.manual_seed(
            seed if seed is not None else int(torch.randint(2**62, (), dtype=torch.long))
        )
        run_seeds = torch.randint(2**62, (self.n_runs,), generator=generator).tolist()
        offsets = _stratified_offsets(spec, xs, self.n_runs, generator)
        runs = [(run_seeds[r], offsets[r], budgets[r]) for r in range(self.n_runs)]
        common = dict(kwargs)
        if "show_progress" in params:
            common["show_progress"] = show_progress
        if "perturbations_per_eval" in params:
            common["perturbations_per_eval"] = perturbations_per_eval
        n = xs[0].shape[0]
        if not isinstance(self.method, LimeBase) or n == 1:
            maps = self._average(inputs, baselines, target, afa, spec, runs, common)
            return _format_output(is_tuple, maps)  # type: ignore[return-value]
        # Captum's Lime / Kernel SHAP fit one surrogate per clip anyway, after one extra
        # forward of the batch (and a warning) per call: going clip by clip keeps the budget
        # exactly n_samples per clip and says nothing n_runs times.
        # A fixed mask with one entry per clip is sliced; cells and callables are drawn per clip.
        fixed = isinstance(spec, Tensor) or (isinstance(spec, tuple) and not _is_cell(spec))
        per_clip = [
            self._average(x_i, b_i, t_i, a_i, m_i if fixed else spec, runs, common)
            for x_i, t_i, a_i, b_i, m_i in _batch_example_iterator(
                n, inputs, target, afa, baselines, spec if fixed else None
            )
        ]
        maps = tuple(torch.cat(parts) for parts in zip(*per_clip, strict=True))
        return _format_output(is_tuple, maps)  # type: ignore[return-value]

    def _average(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        baselines: Any,
        target: Any,
        afa: Any,
        spec: Any,
        runs: list[tuple[int, tuple[int, int, int], int | None]],
        common: dict[str, Any],
    ) -> tuple[Tensor, ...]:
        """The mean map of the runs ``(seed, grid offset, budget)`` on ``inputs``."""
        xs = inputs if isinstance(inputs, tuple) else (inputs,)
        devices = sorted({x.device for x in xs if x.device.type == "cuda"}, key=str)
        total: tuple[Tensor, ...] | None = None
        for run_seed, offset, budget in runs:
            mask = _run_mask(spec, inputs, xs, offset, torch.Generator().manual_seed(run_seed))
            extra = dict(common)
            if budget is not None:
                extra["n_samples"] = budget
                if "perturbations_per_eval" in extra:
                    extra["perturbations_per_eval"] = min(extra["perturbations_per_eval"], budget)
            # Captum's samplers draw from the global generator: seed it for this run only.
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(run_seed)
                out = self.method.attribute(
                    inputs,
                    baselines=baselines,
                    target=target,
                    additional_forward_args=afa,
                    feature_mask=mask,
                    **extra,
                )
            outs = tuple(o.detach() for o in (out if isinstance(out, tuple) else (out,)))
            total = (
                outs if total is None else tuple(a + o for a, o in zip(total, outs, strict=True))
            )
        assert total is not None
        return tuple(a / len(runs) for a in total)


def _check_spec(spec: Any, name: str) -> None:
    """A cell ``(t, h, w)``, a mask tensor (or tuple of them) or a callable; else an error."""
    if callable(spec) or isinstance(spec, Tensor):
        return
    if isinstance(spec, tuple) and spec and all(isinstance(m, Tensor) for m in spec):
        return
    if isinstance(spec, tuple) and len(spec) == 3:
        try:
            cuboid_ids((1, 1, 1), spec)  # checks each extent
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
        return
    raise TypeError(
        f"{name} must be a cell (t, h, w) such as (4, 8, 8), an integer feature mask tensor "
        f"(or a tuple of them for tuple inputs) or a callable mask(inputs, generator), got "
        f"{spec!r}"
    )


def _is_cell(spec: Any) -> bool:
    return isinstance(spec, tuple) and len(spec) == 3 and not isinstance(spec[1], Tensor)


def _stratified_offsets(
    spec: Any, xs: tuple[Tensor, ...], runs: int, generator: torch.Generator
) -> list[tuple[int, int, int]]:
    """Per run, the ``(t, h, w)`` offset of a shifted cuboid grid (zeros for other specs).

    Along each axis a random start ``u`` and a random permutation of the ``runs`` strata:
    offsets ``floor(c * ((u + perm / runs) mod 1))`` cover the cell evenly.
    """
    if not _is_cell(spec):
        return [(0, 0, 0)] * runs
    t = xs[0].shape[2]
    columns = []
    for axis, extent in enumerate(spec):
        cell = t if extent is None else int(extent)
        start = torch.rand((), generator=generator)
        strata = torch.randperm(runs, generator=generator).double() / runs
        offset = (((start + strata) % 1.0) * cell).floor().long()
        # Whole-clip tubes stay whole: no shift in time when t is None.
        columns.append(torch.zeros_like(offset) if axis == 0 and extent is None else offset)
    return [tuple(int(v) for v in row) for row in torch.stack(columns, 1).tolist()]  # type: ignore[misc]


def _run_mask(
    spec: Any,
    inputs: Tensor | tuple[Tensor, ...],
    xs: tuple[Tensor, ...],
    offset: tuple[int, int, int],
    generator: torch.Generator,
) -> Tensor | tuple[Tensor, ...]:
    """One run's feature mask: a shifted grid per input tensor (ids kept apart), the fixed
    mask, or the callable's draw."""
    if isinstance(spec, Tensor) or (isinstance(spec, tuple) and not _is_cell(spec)):
        return spec  # type: ignore[no-any-return]
    if callable(spec):
        return spec(inputs, generator)  # type: ignore[no-any-return]
    masks = []
    first_id = 0
    for i, x in enumerate(xs):
        if x.dim() != 5:
            raise ValueError(
                f"a cell mask needs video inputs (N, C, T, H, W); inputs[{i}] has shape "
                f"{tuple(x.shape)}: pass a feature_mask tensor tuple instead"
            )
        grid = shifted_tube_mask(x, spec, offset)
        masks.append(grid + first_id)
        first_id += int(grid.max()) + 1
    return tuple(masks) if len(xs) > 1 else masks[0]

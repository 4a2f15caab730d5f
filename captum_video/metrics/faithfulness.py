r"""Faithfulness of video explanations: deletion / insertion curves and AOPC.

Both metrics perturb the clip in the order an explanation ranks its parts and watch the
model's score for the target class:

- :func:`deletion` (Petsiuk et al. 2018, extended to video by Li et al.) replaces the most
  relevant voxel cells by a base clip step by step; a faithful explanation makes the score
  fall fast (low AUC). :func:`insertion` starts from the base clip and puts cells back; the
  score should rise fast (high AUC).
- :func:`aopc` (Samek et al. 2017, pixel flipping / region perturbation) replaces cuboid
  regions one at a time, most relevant first (MoRF, high AOPC is good) or least relevant
  first (LeRF, low AOPC is good).

Cells are cuboids of ``(t, h, w)`` voxels, whole frames (``cell="frame"``) or single voxels
(``cell="voxel"``). All curves of a batch are computed with batched forward passes of
``perturbations_per_eval * N`` clips: no Python loop over cells, frames or steps beyond the
chunking of forward passes.

A known caveat for video (Li et al.; Hooker et al. 2019): with a *fade* base (zeros), deleting
cells in a random order often destroys the clip faster than deleting the cells a good
explanation ranks first, so random order can "win" fade-deletion. Insertion, or a blurred
base, is the more informative curve; report both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

from captum_video._model_state import eval_mode_for
from captum_video.metrics._perturbation import (
    Base,
    Cell,
    Order,
    generator_device,
    perturbation_scores,
)

__all__ = ["CausalCurve", "AOPCResult", "deletion", "insertion", "aopc"]


class CausalCurve(NamedTuple):
    """Result of :func:`deletion` / :func:`insertion`.

    Attributes:
        auc (Tensor): ``(N,)`` area under the curve, x-axis normalised to ``[0, 1]``.
        curve (Tensor): ``(N, S + 1)`` target score after changing ``fractions[s]`` of cells.
        fractions (Tensor): ``(S + 1,)`` share of cells changed at each step, from 0 to 1.
    """

    auc: Tensor
    curve: Tensor
    fractions: Tensor


class AOPCResult(NamedTuple):
    """Result of :func:`aopc`.

    Attributes:
        aopc (Tensor): ``(N,)`` mean of ``drops`` over the ``L + 1`` steps.
        drops (Tensor): ``(N, L + 1)``: ``f(x) - f(x^(k))`` after perturbing ``k`` regions.
    """

    aopc: Tensor
    drops: Tensor


@eval_mode_for("forward_func")
def deletion(
    forward_func: Callable[..., Tensor],
    inputs: Tensor,
    attributions: Tensor,
    target: Any = None,
    additional_forward_args: Any = None,
    *,
    n_steps: int = 32,
    cell: Cell = (1, 4, 4),
    base: Base = "fade",
    blur_sigma: float | None = None,
    order: Order = "most_first",
    channel_reduction: Literal["sum", "abs_sum"] = "sum",
    apply_softmax: bool = True,
    generator: torch.Generator | None = None,
    perturbations_per_eval: int = 8,
) -> CausalCurve:
    r"""Deletion curve and AUC: remove cells in the explanation's order, watch ``p_c`` fall.

    A model in train mode runs in eval mode for the call (with a warning; each module's mode
    is restored afterwards), so its BatchNorm statistics never change.

    Step ``s`` replaces the first ``round(s / S * V)`` of the ``V`` cells (ranked by mean
    attribution) by the base clip; ``curve[:, 0]`` is ``p_c(x)`` and ``curve[:, -1]`` is
    ``p_c(base)``. The AUC is the trapezoid rule over ``fractions``; lower is better.

    Args:
        forward_func (Callable): the model or any function returning ``(N, K)`` scores.
        inputs (Tensor): clips ``(N, C, T, H, W)``.
        attributions (Tensor): ``(N, C, T, H, W)`` or ``(N, 1, T, H, W)`` relevance.
        target (int, list, Tensor or None, optional): class per clip; ``None`` uses the
            model's predicted class on the intact clip. Default: None
        additional_forward_args (Any, optional): extra arguments of ``forward_func``,
            expanded along with the perturbed batch. Default: None
        n_steps (int, optional): number of steps S (capped at the number of cells V).
            Li et al. use 128 with 16 x 16 cells per frame. Default: 32
        cell (tuple of int or str, optional): cell size ``(t, h, w)`` in voxels (the last
            cell along an axis may be smaller), ``"frame"`` for whole frames or ``"voxel"``.
            Default: ``(1, 4, 4)``
        base (str, float, Tensor or Callable, optional): what removed cells become:
            ``"fade"`` (zeros, i.e. the mean in a normalised input space), ``"blur"``
            (each frame Gaussian-blurred with :func:`captum_video.baselines.spatial_blur`), a
            constant, a tensor broadcastable to ``inputs``, or a callable ``inputs -> base``.
            Default: ``"fade"``
        blur_sigma (float, optional): sigma of the ``"blur"`` base in pixels; default
            ``20 / 112 * min(H, W)`` (Li et al.'s sigma 20 on 112 px frames). Default: None
        order (str, optional): ``"most_first"``, ``"least_first"`` or ``"random"`` (a
            control that ignores ``attributions``; uses ``generator``).
            Default: ``"most_first"``
        channel_reduction (str, optional): how channels of the attribution are combined per
            voxel before ranking: ``"sum"`` or ``"abs_sum"``. Default: ``"sum"``
        apply_softmax (bool, optional): score with the softmax probability (True) or the raw
            output. Default: True
        generator (torch.Generator, optional): randomness for ``order="random"``.
            Default: None
        perturbations_per_eval (int, optional): perturbed copies of the batch per forward
            pass. Default: 8

    Returns:
        CausalCurve: ``(auc, curve, fractions)``, on the input's device.

    Example::

        >>> model = load_demo_model("motion")
        >>> clips, labels, _ = MovingShapes("motion", num_samples=2).tensors()
        >>> attr = Saliency(model).attribute(clips, target=labels)
        >>> result = deletion(model, clips, attr, target=labels, n_steps=16)
        >>> result.curve.shape, result.auc.shape
        (torch.Size([2, 17]), torch.Size([2]))
    """
    return _causal_curve(
        "deletion",
        forward_func,
        inputs,
        attributions,
        target,
        additional_forward_args,
        n_steps=n_steps,
        cell=cell,
        base=base,
        blur_sigma=blur_sigma,
        order=order,
        channel_reduction=channel_reduction,
        apply_softmax=apply_softmax,
        generator=generator,
        perturbations_per_eval=perturbations_per_eval,
    )


@eval_mode_for("forward_func")
def insertion(
    forward_func: Callable[..., Tensor],
    inputs: Tensor,
    attributions: Tensor,
    target: Any = None,
    additional_forward_args: Any = None,
    *,
    n_steps: int = 32,
    cell: Cell = (1, 4, 4),
    base: Base = "fade",
    blur_sigma: float | None = None,
    order: Order = "most_first",
    channel_reduction: Literal["sum", "abs_sum"] = "sum",
    apply_softmax: bool = True,
    generator: torch.Generator | None = None,
    perturbations_per_eval: int = 8,
) -> CausalCurve:
    r"""Insertion curve and AUC: start from the base clip, put cells back in ranked order.

    A model in train mode runs in eval mode for the call (with a warning; each module's mode
    is restored afterwards), so its BatchNorm statistics never change.

    ``curve[:, 0]`` is ``p_c(base)`` and ``curve[:, -1]`` is ``p_c(x)``; higher AUC is
    better. Arguments are those of :func:`deletion`.

    Args:
        forward_func (Callable): the model or any function returning ``(N, K)`` scores.
        inputs (Tensor): clips ``(N, C, T, H, W)``.
        attributions (Tensor): ``(N, C, T, H, W)`` or ``(N, 1, T, H, W)`` relevance.
        target (int, list, Tensor or None, optional): class per clip; ``None`` uses the
            predicted class. Default: None
        additional_forward_args (Any, optional): extra arguments of ``forward_func``.
            Default: None
        n_steps (int, optional): number of steps. Default: 32
        cell (tuple of int or str, optional): cell size, ``"frame"`` or ``"voxel"``.
            Default: ``(1, 4, 4)``
        base (str, float, Tensor or Callable, optional): the starting clip.
            Default: ``"fade"``
        blur_sigma (float, optional): sigma of the ``"blur"`` base. Default: None
        order (str, optional): ``"most_first"``, ``"least_first"`` or ``"random"``.
            Default: ``"most_first"``
        channel_reduction (str, optional): ``"sum"`` or ``"abs_sum"``. Default: ``"sum"``
        apply_softmax (bool, optional): score with the softmax probability. Default: True
        generator (torch.Generator, optional): randomness for ``order="random"``.
            Default: None
        perturbations_per_eval (int, optional): perturbed copies per forward. Default: 8

    Returns:
        CausalCurve: ``(auc, curve, fractions)``.

    Example::

        >>> result = insertion(model, clips, attr, target=labels, base="blur", cell="frame")
        >>> result.fractions[0].item(), result.fractions[-1].item()
        (0.0, 1.0)
    """
    return _causal_curve(
        "insertion",
        forward_func,
        inputs,
        attributions,
        target,
        additional_forward_args,
        n_steps=n_steps,
        cell=cell,
        base=base,
        blur_sigma=blur_sigma,
        order=order,
        channel_reduction=channel_reduction,
        apply_softmax=apply_softmax,
        generator=generator,
        perturbations_per_eval=perturbations_per_eval,
    )


@eval_mode_for("forward_func")
def aopc(
    forward_func: Callable[..., Tensor],
    inputs: Tensor,
    attributions: Tensor,
    target: Any = None,
    additional_forward_args: Any = None,
    *,
    region: tuple[int, int, int] = (1, 9, 9),
    n_regions: int = 100,
    order: Literal["morf", "lerf"] = "morf",
    perturbation: Literal["uniform", "blur", "fade"] | float | Tensor = "uniform",
    bounds: tuple[float, float] = (0.0, 1.0),
    blur_sigma: float | None = None,
    channel_reduction: Literal["sum", "abs_sum"] = "sum",
    apply_softmax: bool = True,
    generator: torch.Generator | None = None,
    perturbations_per_eval: int = 8,
) -> AOPCResult:
    r"""Area over the perturbation curve with cuboid regions (Samek et al. 2017, in 3-D).

    A model in train mode runs in eval mode for the call (with a warning; each module's mode
    is restored afterwards), so its BatchNorm statistics never change.

    Regions are non-overlapping cuboids of ``region = (t, h, w)`` voxels, ranked by their
    summed relevance. Step ``k`` perturbs the first ``k`` regions (MoRF: most relevant
    first; LeRF: least relevant first), and
    ``AOPC = 1 / (L + 1) * sum_{k=0}^{L} f(x) - f(x^(k))``. A faithful explanation has a
    high MoRF AOPC and a low LeRF AOPC; ``MoRF - LeRF`` combines both. Average the result
    over a data set as the paper does.

    Args:
        forward_func (Callable): the model or any function returning ``(N, K)`` scores.
        inputs (Tensor): clips ``(N, C, T, H, W)``.
        attributions (Tensor): ``(N, C, T, H, W)`` or ``(N, 1, T, H, W)`` relevance.
        target (int, list, Tensor or None, optional): class per clip; ``None`` uses the
            predicted class. Default: None
        additional_forward_args (Any, optional): extra arguments of ``forward_func``.
            Default: None
        region (tuple of int, optional): cuboid ``(t, h, w)``; Samek et al.'s 9 x 9 pixel
            regions, with ``t in {1, 2, 4}`` frames for video. Default: ``(1, 9, 9)``
        n_regions (int, optional): steps L (capped at the number of regions). Default: 100
        order (str, optional): ``"morf"`` or ``"lerf"``. Default: ``"morf"``
        perturbation (str, float or Tensor, optional): ``"uniform"`` noise in ``bounds``
            (Samek's choice, drawn once per call from ``generator``), ``"blur"``, ``"fade"``
            (zeros), a constant or a tensor broadcastable to ``inputs``.
            Default: ``"uniform"``
        bounds (tuple of float, optional): range of the uniform noise, the valid input
            range. Default: ``(0.0, 1.0)``
        blur_sigma (float, optional): sigma of the ``"blur"`` perturbation. Default: None
        channel_reduction (str, optional): ``"sum"`` or ``"abs_sum"``. Default: ``"sum"``
        apply_softmax (bool, optional): score with the softmax probability. Default: True
        generator (torch.Generator, optional): randomness of the uniform noise.
            Default: None
        perturbations_per_eval (int, optional): perturbed copies per forward. Default: 8

    Returns:
        AOPCResult: ``(aopc, drops)``.

    Example::

        >>> morf = aopc(model, clips, attr, target=labels, region=(2, 8, 8), n_regions=20)
        >>> lerf = aopc(model, clips, attr, target=labels, region=(2, 8, 8), n_regions=20,
        ...             order="lerf")
        >>> gap = morf.aopc - lerf.aopc   # > 0 for a faithful explanation
    """
    if order not in ("morf", "lerf"):
        raise ValueError(f"order must be 'morf' or 'lerf', got {order!r}")
    if n_regions < 1:
        raise ValueError(f"n_regions must be >= 1, got {n_regions}")
    base: Base
    if isinstance(perturbation, str) and perturbation == "uniform":
        low, high = bounds
        noise = torch.rand(inputs.shape, generator=generator, device=generator_device(generator))
        base = (low + (high - low) * noise).to(device=inputs.device, dtype=inputs.dtype)
    else:
        base = perturbation
    curve = perturbation_scores(
        "deletion",
        forward_func,
        inputs,
        attributions,
        target,
        additional_forward_args,
        counts=lambda n_cells: torch.arange(min(n_regions, n_cells) + 1),
        cell=region,
        base=base,
        blur_sigma=blur_sigma,
        order="most_first" if order == "morf" else "least_first",
        pool="sum",
        channel_reduction=channel_reduction,
        apply_softmax=apply_softmax,
        generator=None,
        perturbations_per_eval=perturbations_per_eval,
    )[0]
    drops = curve[:, :1] - curve
    return AOPCResult(drops.mean(1), drops)


# -- shared machinery -----------------------------------------------------------------------


def _causal_curve(
    mode: Literal["deletion", "insertion"], *args: Any, n_steps: int, **kwargs: Any
) -> CausalCurve:
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")

    def counts(n_cells: int) -> Tensor:
        steps = min(n_steps, n_cells)
        return torch.linspace(0, n_cells, steps + 1).round().long()

    curve, fractions = perturbation_scores(mode, *args, counts=counts, pool="mean", **kwargs)
    return CausalCurve(torch.trapezoid(curve, fractions.to(curve.dtype), dim=1), curve, fractions)

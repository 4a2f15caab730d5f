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

A known caveat for video (methods.md 6.3): with a *fade* base (zeros), deleting cells in a
random order often destroys the clip faster than deleting the cells a good explanation ranks
first, so random order can "win" fade-deletion. Insertion, or a blurred base, is the more
informative curve; report both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import torch
from captum._utils.common import (
    ExpansionTypes,
    _expand_additional_forward_args,
    _format_additional_forward_args,
    _run_forward,
)
from torch import Tensor

from captum_video._validation import validate_target, validate_video
from captum_video.baselines import spatial_blur
from captum_video.masks import cuboid_ids
from captum_video.relevance import reduce_channels

__all__ = ["CausalCurve", "AOPCResult", "deletion", "insertion", "aopc"]

Cell = tuple[int, int, int] | Literal["frame", "voxel"]
Order = Literal["most_first", "least_first", "random"]
Base = Literal["fade", "blur"] | float | Tensor | Callable[[Tensor], Tensor]


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
        region (tuple of int, optional): cuboid ``(t, h, w)``; the spec suggests
            ``t in {1, 2, 4}`` with 9 x 9 pixels. Default: ``(1, 9, 9)``
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
        noise = torch.rand(inputs.shape, generator=generator, device=_gen_device(generator))
        base = (low + (high - low) * noise).to(device=inputs.device, dtype=inputs.dtype)
    else:
        base = perturbation
    curve = _perturbation_scores(
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

    curve, fractions = _perturbation_scores(mode, *args, counts=counts, pool="mean", **kwargs)
    return CausalCurve(torch.trapezoid(curve, fractions.to(curve.dtype), dim=1), curve, fractions)


@torch.no_grad()
def _perturbation_scores(
    mode: Literal["deletion", "insertion"],
    forward_func: Callable[..., Tensor],
    inputs: Tensor,
    attributions: Tensor,
    target: Any,
    additional_forward_args: Any,
    *,
    counts: Callable[[int], Tensor],
    cell: Cell,
    base: Base,
    blur_sigma: float | None,
    order: Order,
    pool: Literal["mean", "sum"],
    channel_reduction: str,
    apply_softmax: bool,
    generator: torch.Generator | None,
    perturbations_per_eval: int,
) -> tuple[Tensor, Tensor]:
    """Scores ``(N, S + 1)`` after changing the first ``counts[s]`` ranked cells, and the
    fractions ``counts / V``."""
    validate_video(inputs)
    relevance = _reduce_attributions(attributions, inputs, channel_reduction)
    if perturbations_per_eval < 1:
        raise ValueError(f"perturbations_per_eval must be >= 1, got {perturbations_per_eval}")
    afa = _format_additional_forward_args(additional_forward_args)
    base_x = _make_base(base, inputs, blur_sigma)
    n, _, t, h, w = inputs.shape

    # Rank every cell, then give each voxel the rank of its cell: a voxel is changed at step s
    # iff its cell's rank is below counts[s]. One comparison builds all perturbed clips.
    cell_id, n_cells = _cell_index((t, h, w), cell, inputs.device)
    flat_id = cell_id.flatten()
    scores = relevance.flatten(1).new_zeros(n, n_cells).index_add_(1, flat_id, relevance.flatten(1))
    if pool == "mean":
        sizes = torch.bincount(flat_id, minlength=n_cells).to(scores.dtype)
        scores = scores / sizes
    if order == "random":
        keys = torch.rand(n, n_cells, generator=generator, device=_gen_device(generator))
        ranking = keys.to(inputs.device).argsort(dim=1)
    elif order in ("most_first", "least_first"):
        ranking = scores.argsort(dim=1, descending=order == "most_first", stable=True)
    else:
        raise ValueError(f"order must be 'most_first', 'least_first' or 'random', got {order!r}")
    cell_rank = torch.empty_like(ranking).scatter_(
        1, ranking, torch.arange(n_cells, device=inputs.device).expand(n, -1)
    )
    voxel_rank = cell_rank[:, flat_id].view(n, 1, t, h, w)

    steps = counts(n_cells).to(inputs.device)
    target_idx = None if target is None else _target_tensor(target, n, inputs.device)
    chunks = []
    for start in range(0, len(steps), perturbations_per_eval):
        ks = steps[start : start + perturbations_per_eval]
        changed = voxel_rank.unsqueeze(0) < ks.view(-1, 1, 1, 1, 1, 1)
        if mode == "deletion":
            batch = torch.where(changed, base_x.unsqueeze(0), inputs.unsqueeze(0))
        else:
            batch = torch.where(changed, inputs.unsqueeze(0), base_x.unsqueeze(0))
        batch = batch.reshape(len(ks) * n, *inputs.shape[1:])
        out = _scores(forward_func, batch, afa, len(ks), apply_softmax).view(len(ks), n, -1)
        if target_idx is None:
            # The predicted class on the intact clip: the deletion curve starts there, the
            # insertion curve ends there; work it out with one extra forward.
            intact = _scores(forward_func, inputs, afa, 1, apply_softmax)
            target_idx = intact.argmax(1)
        validate_target(target_idx, out.shape[2], n)
        chunks.append(out.gather(2, target_idx.view(1, n, 1).expand(len(ks), n, 1)).squeeze(2))
    curve = torch.cat(chunks, 0).transpose(0, 1)
    return curve, steps.to(curve.dtype) / n_cells


def _scores(
    forward_func: Callable[..., Tensor], batch: Tensor, afa: Any, copies: int, apply_softmax: bool
) -> Tensor:
    expanded = _expand_additional_forward_args(afa, copies, ExpansionTypes.repeat)
    out = _run_forward(forward_func, batch, None, expanded)
    assert isinstance(out, Tensor)
    out = out.reshape(batch.shape[0], -1)
    return out.softmax(1) if apply_softmax else out


def _reduce_attributions(attributions: Tensor, inputs: Tensor, mode: str) -> Tensor:
    """Check an attribution against its clips and sum its channels: ``(N, T, H, W)``."""
    if not isinstance(attributions, Tensor):
        raise TypeError(f"attributions must be a Tensor, got {type(attributions).__name__}")
    n, c, t, h, w = inputs.shape
    if (
        attributions.dim() != 5
        or attributions.shape[0] != n
        or attributions.shape[2:] != (t, h, w)
        or attributions.shape[1] not in (1, c)
    ):
        raise ValueError(
            f"attributions must have shape (N, C, T, H, W) or (N, 1, T, H, W) matching inputs "
            f"{tuple(inputs.shape)}, got {tuple(attributions.shape)}"
        )
    if not bool(torch.isfinite(attributions).all()):
        raise ValueError("attributions contain NaN or infinite values")
    if mode not in ("sum", "abs_sum"):
        raise ValueError(f"channel_reduction must be 'sum' or 'abs_sum', got {mode!r}")
    return reduce_channels(attributions, mode)[:, 0]  # type: ignore[arg-type]


def _cell_index(size: tuple[int, int, int], cell: Cell, device: torch.device) -> tuple[Tensor, int]:
    """Cell id of every voxel ``(T, H, W)`` and the number of cells."""
    t, h, w = size
    if cell == "frame":
        cell = (1, h, w)
    elif cell == "voxel":
        cell = (1, 1, 1)
    if not (isinstance(cell, tuple) and len(cell) == 3):
        raise ValueError(
            f"cell must be a (t, h, w) tuple of positive ints, 'frame' or 'voxel', got {cell!r}"
        )
    return cuboid_ids(size, cell, device)


def _make_base(base: Base, inputs: Tensor, blur_sigma: float | None) -> Tensor:
    if isinstance(base, str):
        if base == "fade":
            return torch.zeros_like(inputs)
        if base == "blur":
            sigma = blur_sigma if blur_sigma is not None else 20 / 112 * min(inputs.shape[-2:])
            return spatial_blur(inputs, sigma)
        raise ValueError(
            f"base must be 'fade', 'blur', a number, a tensor or a callable, got {base!r}"
        )
    if isinstance(base, (int, float)):
        return torch.full_like(inputs, float(base))
    made = base(inputs) if callable(base) and not isinstance(base, Tensor) else base
    if not isinstance(made, Tensor):
        raise TypeError(f"base must give a Tensor, got {type(made).__name__}")
    try:
        return torch.broadcast_to(made.to(device=inputs.device, dtype=inputs.dtype), inputs.shape)
    except RuntimeError as err:
        raise ValueError(
            f"base of shape {tuple(made.shape)} does not broadcast to inputs {tuple(inputs.shape)}"
        ) from err


def _target_tensor(target: Any, n: int, device: torch.device) -> Tensor:
    """A long tensor ``(N,)`` of class indices from an int, a list or a tensor."""
    if isinstance(target, int) or (isinstance(target, Tensor) and target.numel() == 1):
        return torch.full((n,), int(target), dtype=torch.long, device=device)
    if isinstance(target, (list, Tensor)):
        values = torch.as_tensor(target, device=device).long().flatten()
        if values.numel() != n:
            raise ValueError(f"target has {values.numel()} entries but the batch has {n} clips")
        return values
    raise TypeError(
        f"target must be None, an int, a list of ints or a 1-D tensor, got {type(target).__name__}"
    )


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")

r"""The machinery behind deletion, insertion and AOPC: cells ranked by an explanation and
removed (or put back) in batched forward passes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from captum._utils.common import (
    ExpansionTypes,
    _expand_additional_forward_args,
    _format_additional_forward_args,
    _run_forward,
)
from torch import Tensor

from captum_video._targets import validate_target
from captum_video._validation import validate_video
from captum_video.baselines import spatial_blur
from captum_video.masks import cuboid_ids
from captum_video.relevance import reduce_channels

__all__ = ["Base", "Cell", "Order", "generator_device", "perturbation_scores"]

Cell = tuple[int, int, int] | Literal["frame", "voxel"]
Order = Literal["most_first", "least_first", "random"]
Base = Literal["fade", "blur"] | float | Tensor | Callable[[Tensor], Tensor]


@torch.no_grad()
def perturbation_scores(
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
    validate_video(inputs, model=forward_func)
    validate_target(target)
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
        keys = torch.rand(n, n_cells, generator=generator, device=generator_device(generator))
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


def generator_device(generator: torch.Generator | None) -> torch.device:
    """Where ``generator`` draws (the CPU when there is none)."""
    return generator.device if generator is not None else torch.device("cpu")

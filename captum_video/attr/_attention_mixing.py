r"""Attention steps as token mixing matrices, applied blockwise (never materialised).

Each attention step of the registry's layout is one matrix ``M`` from the
tokens before the step (columns) to the tokens after it (rows), built from the captured
tensor without materialising it: the methods only need the row vector ``v M`` (and, for
rollout's row normalisation, ``M 1``), and both are computed blockwise:

* joint attention: ``M = A`` (``(S, S)``, heads fused);
* divided space-time attention (TimeSformer): the temporal step connects the tokens of one
  patch position across frames (``M[(p, t), (p, t')] = A_p[t, t']``, class token untouched),
  the spatial step the tokens of one frame, with the class token repeated in front of every
  frame and its outputs averaged over the ``T'`` copies (``M[cls, (q, t)] = A_t[cls, q] / T'``,
  ``M[cls, cls] = mean_t A_t[cls, cls]``). For gradient-times-attention products the
  ``1 / T'`` cancels (the gradient with respect to the full-matrix entry is ``T'`` times the
  per-frame one), so there the class row is the *sum* over frames;
* pooled attention (MViT): ``M = A P_kv`` with ``P_kv`` the key / value pooling footprint read
  as a uniform average; the residual path is the query-stride pooling footprint;
* shifted window attention (Swin): block diagonal over the windows of the padded grid rolled by
  ``-shift``; relevance of padding tokens is dropped; patch merging is a uniform footprint;
* cross-frame attention (X-CLIP): the message step maps each frame's message token to the
  class tokens of all frames (``M[msg_t, cls_t'] = A[t, t']``, and the identity-like path
  ``msg_t <- cls_t``), the frame step is block diagonal over frames and drops the messages.

Each step also has a residual path ``K`` (:func:`skip_left`, :func:`skip_right`): the identity,
or the pooling / merging footprint where the step changes the tokens. The methods combine the
two (rollout: ``(A + K) / 2`` with rows renormalised; gradient-weighted relevance:
``K + bar A``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from captum_video.registry.attention import AttentionStep, Footprint, Tokens, footprint_grid

__all__ = ["grid_to_tp", "skip_left", "skip_right", "step_left", "step_right"]


def grid_to_tp(grid_part: Tensor, tokens: Tokens) -> Tensor:
    """Grid tokens ``(N, G)`` in the sequence's order -> ``(N, T', H'W')`` (for framed
    sequences: the patches of every frame's group)."""
    t, h, w = tokens.grid
    n = grid_part.shape[0]
    if tokens.framed:
        first = tokens.frame_prefix
        return grid_part.reshape(n, t, tokens.per_frame)[:, :, first : first + h * w]
    if tokens.order == "thw":
        return grid_part.reshape(n, t, h * w)
    return grid_part.reshape(n, h * w, t).transpose(1, 2)


def _tp_to_grid(tp: Tensor, tokens: Tokens) -> Tensor:
    """Inverse of :func:`grid_to_tp`."""
    n = tp.shape[0]
    if tokens.order == "thw":
        return tp.reshape(n, -1)
    return tp.transpose(1, 2).reshape(n, -1)


def _split(v: Tensor, tokens: Tokens) -> tuple[Tensor, Tensor]:
    return v[:, : tokens.prefix], v[:, tokens.prefix :]


_FOOTPRINTS: dict[tuple[Any, ...], tuple[Tensor, Tensor]] = {}


def _footprint(
    grid_in: tuple[int, int, int],
    grid_out: tuple[int, int, int],
    pool: Footprint,
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """``(index, weight)`` of shape ``(S_out, K)``: the input grid tokens each output token
    covers and their uniform weights (0 outside the grid)."""
    key = (grid_in, grid_out, pool, str(device))
    if key in _FOOTPRINTS:
        return _FOOTPRINTS[key]
    axes = []
    for size_in, size_out, k, s, p in zip(
        grid_in, grid_out, pool.kernel, pool.stride, pool.padding, strict=True
    ):
        idx = torch.arange(size_out, device=device)[:, None] * s - p
        idx = idx + torch.arange(k, device=device)[None, :]
        axes.append((idx, (idx >= 0) & (idx < size_in)))
    (it, vt), (ih, vh), (iw, vw) = axes
    _, h, w = grid_in
    t_index = it[:, None, None, :, None, None]
    h_index = ih[None, :, None, None, :, None]
    w_index = iw[None, None, :, None, None, :]
    index = (t_index * h + h_index) * w + w_index
    valid = vt[:, None, None, :, None, None] & vh[None, :, None, None, :, None]
    valid = valid & vw[None, None, :, None, None, :]
    count = math.prod(grid_out)
    index = torch.where(valid, index, torch.zeros_like(index)).reshape(count, -1)
    valid = valid.reshape(count, -1).float()
    weight = valid / valid.sum(1, keepdim=True).clamp_min(1.0)
    if len(_FOOTPRINTS) > 64:
        _FOOTPRINTS.clear()
    _FOOTPRINTS[key] = (index, weight)
    return index, weight


def _pool_left(v: Tensor, tokens_in: Tokens, tokens_out: Tokens, pool: Footprint) -> Tensor:
    """``v P`` for a uniform footprint ``P`` from ``tokens_in`` to ``tokens_out`` (class
    tokens map to themselves)."""
    index, weight = _footprint(tokens_in.grid, tokens_out.grid, pool, v.device)
    cls, grid = _split(v, tokens_out)
    spread = (grid[:, :, None] * weight.to(v.dtype)).flatten(1)
    into = grid.new_zeros(grid.shape[0], math.prod(tokens_in.grid))
    return torch.cat([cls, into.index_add(1, index.flatten(), spread)], dim=1)


def _pool_right(u: Tensor, tokens_in: Tokens, tokens_out: Tokens, pool: Footprint) -> Tensor:
    """``P u`` for the footprint of :func:`_pool_left`."""
    index, weight = _footprint(tokens_in.grid, tokens_out.grid, pool, u.device)
    cls, grid = _split(u, tokens_in)
    return torch.cat([cls, (grid[:, index] * weight.to(u.dtype)).sum(-1)], dim=1)


def _check(step: AttentionStep, m: Tensor, shape: tuple[int, ...]) -> None:
    if tuple(m.shape) != shape:
        raise ValueError(
            f"the attention captured at '{step.module}' has shape {tuple(m.shape)} (heads "
            f"fused), but a {step.kind!r} step over {step.tokens_in} expects {shape}; the "
            "attention layout does not match this model or clip size"
        )


def _windows(grid: Tensor, step: AttentionStep) -> tuple[Tensor, tuple[int, ...]]:
    """``(N, T', H', W')`` -> ``(N * windows, window tokens)`` as shifted window attention
    partitions it (pad at the end, roll by ``-shift``)."""
    assert step.window is not None
    n, t, h, w = grid.shape
    wt, wh, ww = step.window
    pads = [(-size) % win for size, win in zip((t, h, w), step.window, strict=True)]
    x = F.pad(grid, (0, pads[2], 0, pads[1], 0, pads[0]))
    if any(step.shift):
        x = torch.roll(x, shifts=tuple(-s for s in step.shift), dims=(1, 2, 3))
    tp, hp, wp = x.shape[1:]
    x = x.reshape(n, tp // wt, wt, hp // wh, wh, wp // ww, ww).permute(0, 1, 3, 5, 2, 4, 6)
    return x.reshape(-1, wt * wh * ww), (n, tp, hp, wp, t, h, w)


def _unwindows(x: Tensor, step: AttentionStep, sizes: tuple[int, ...]) -> Tensor:
    """Inverse of :func:`_windows` (padding cropped)."""
    assert step.window is not None
    n, tp, hp, wp, t, h, w = sizes
    wt, wh, ww = step.window
    x = x.reshape(n, tp // wt, hp // wh, wp // ww, wt, wh, ww).permute(0, 1, 4, 2, 5, 3, 6)
    x = x.reshape(n, tp, hp, wp)
    if any(step.shift):
        x = torch.roll(x, shifts=tuple(step.shift), dims=(1, 2, 3))
    return x[:, :t, :h, :w].reshape(n, -1)


def _apply(step: AttentionStep, m: Tensor, v: Tensor, left: bool, products: bool) -> Tensor:
    """``v M`` (``left``) or ``M v`` of one attention step; ``m`` is the captured attention
    with heads fused. ``products``: ``m`` holds gradient-times-attention products (changes
    only the class row of divided spatial attention, see the module docstring)."""
    n = v.shape[0]
    src, dst = (step.out, step.tokens_in) if left else (step.tokens_in, step.out)

    def mul(a: Tensor, x: Tensor) -> Tensor:  # batched vector-matrix product
        return (x.unsqueeze(-2) @ a).squeeze(-2) if left else (a @ x.unsqueeze(-1)).squeeze(-1)

    if step.kind == "joint":
        _check(step, m, (n, step.out.count, step.tokens_in.count))
        return mul(m, v)
    if step.kind in ("divided_time", "divided_space"):
        tokens = step.tokens_in
        t, h, w = tokens.grid
        cls, grid = _split(v, tokens)
        tp = grid_to_tp(grid, tokens)  # (N, T', P)
        if step.kind == "divided_time":
            _check(step, m, (n * h * w, t, t))
            out = mul(m.view(n, h * w, t, t), tp.transpose(1, 2)).transpose(1, 2)
            return torch.cat([torch.zeros_like(cls), _tp_to_grid(out, tokens)], dim=1)
        pre = tokens.prefix
        _check(step, m, (n * t, pre + h * w, pre + h * w))
        weight = 1.0 if products else 1.0 / t
        per_frame = cls[:, None, :].expand(n, t, pre) * (weight if left else 1.0)
        out = mul(m.view(n, t, pre + h * w, pre + h * w), torch.cat([per_frame, tp], dim=2))
        cls_out = out[:, :, :pre].sum(1) * (1.0 if left else weight)
        return torch.cat([cls_out, _tp_to_grid(out[:, :, pre:], tokens)], dim=1)
    if step.kind == "pooled":
        kv = step.tokens_in
        if step.kv_pool is not None:
            kv = Tokens(footprint_grid(kv.grid, step.kv_pool), kv.prefix, kv.order)
        _check(step, m, (n, step.out.count, kv.count))
        if left:
            mixed = mul(m, v)
            if step.kv_pool is None:
                return mixed
            return _pool_left(mixed, step.tokens_in, kv, step.kv_pool)
        pooled = v if step.kv_pool is None else _pool_right(v, step.tokens_in, kv, step.kv_pool)
        return mul(m, pooled)
    if step.kind == "message":  # rows: frames' tokens + message; columns: frames' tokens
        t = step.tokens_in.grid[0]
        _check(step, m, (n, t, t))
        if left:
            to_cls = mul(m, v.view(n, t, -1)[:, :, -1])  # message rows mix class tokens
            out = v.new_zeros(n, t, step.tokens_in.per_frame)
            return torch.cat([to_cls[:, :, None], out[:, :, 1:]], dim=2).flatten(1)
        from_cls = mul(m, v.view(n, t, -1)[:, :, 0])
        out = v.new_zeros(n, t, step.out.per_frame - 1)
        return torch.cat([out, from_cls[:, :, None]], dim=2).flatten(1)
    if step.kind == "frame_joint":  # joint within each frame; the frame's extra tokens dropped
        t, size = step.tokens_in.grid[0], step.tokens_in.per_frame
        kept = step.out.per_frame
        _check(step, m, (n * t, size, size))
        if left:
            rows = F.pad(v.view(n, t, kept), (0, size - kept))
            return mul(m.view(n, t, size, size), rows).flatten(1)
        return mul(m.view(n, t, size, size), v.view(n, t, size))[:, :, :kept].flatten(1)
    if step.kind == "window":
        assert step.window is not None
        part, sizes = _windows(v.view(n, *src.grid), step)
        _check(step, m, (part.shape[0], math.prod(step.window), math.prod(step.window)))
        return _unwindows(mul(m, part), step, sizes)
    raise ValueError(f"a {step.kind!r} step has no attention")


def step_left(step: AttentionStep, m: Tensor, v: Tensor, products: bool = False) -> Tensor:
    """``v M`` for one attention step (row vectors ``v`` over the tokens after it).

    Args:
        step (AttentionStep): the step.
        m (Tensor): its captured attention with the heads fused (head axis removed).
        v (Tensor): ``(N, S_out)``.
        products (bool, optional): ``m`` holds gradient-times-attention products.
            Default: False

    Returns:
        Tensor: ``(N, S_in)``.
    """
    return _apply(step, m, v, left=True, products=products)


def step_right(step: AttentionStep, m: Tensor, u: Tensor, products: bool = False) -> Tensor:
    """``M u`` for one attention step (``u`` ``(N, S_in)``, returns ``(N, S_out)``)."""
    return _apply(step, m, u, left=False, products=products)


def skip_left(step: AttentionStep, v: Tensor) -> Tensor:
    """``v K`` for the step's residual path ``K`` (identity, or a pooling / merging
    footprint; X-CLIP: the message token is a function of its frame's class token, and the
    frame attention keeps the frame's own tokens)."""
    n = v.shape[0]
    if step.kind == "message":
        frames = v.view(n, step.tokens_in.grid[0], -1)
        own = frames[:, :, :-1]
        cls = own[:, :, :1] + frames[:, :, -1:]
        return torch.cat([cls, own[:, :, 1:]], dim=2).flatten(1)
    if step.kind == "frame_joint":
        t, extra = step.tokens_in.grid[0], step.tokens_in.per_frame - step.out.per_frame
        return F.pad(v.view(n, t, -1), (0, extra)).flatten(1)
    if step.skip is None:
        if step.out != step.tokens_in:
            raise ValueError(f"step {step.module!r} changes the tokens but has no skip footprint")
        return v
    return _pool_left(v, step.tokens_in, step.out, step.skip)


def skip_right(step: AttentionStep, u: Tensor) -> Tensor:
    """``K u`` for the step's residual path."""
    n = u.shape[0]
    if step.kind == "message":
        frames = u.view(n, step.tokens_in.grid[0], -1)
        return torch.cat([frames, frames[:, :, :1]], dim=2).flatten(1)
    if step.kind == "frame_joint":
        kept = step.out.per_frame
        return u.view(n, step.tokens_in.grid[0], -1)[:, :, :kept].flatten(1)
    if step.skip is None:
        return u
    return _pool_right(u, step.tokens_in, step.out, step.skip)

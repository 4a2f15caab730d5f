r"""Attention maps of video transformers: capturing them in a forward pass, and reading the
rolled-out relevance back onto the clip.

Shared by :class:`~captum_video.attr.AttentionRollout` and
:class:`~captum_video.attr.GradientWeightedAttention`.

**Capture.** The architecture registry names, per family, the modules inside whose forward
the attention probabilities are computed (:func:`~captum_video.registry.attention.
attention_layout`). While such a module runs, a ``TorchFunctionMode`` records the output of
its softmax: the probability tensor the model multiplies the values with, in the autograd
graph, so its gradient can be taken. Where the model calls the fused
``scaled_dot_product_attention`` (Hugging Face's default "sdpa" attention, which never
materialises the probabilities), the mode computes the same attention explicitly,
``softmax(q k^T * scale + mask) v``, and records the probabilities. Nothing of the model is
replaced or reconfigured: two hooks per attention module, removed when the call ends (also on
error), and a mode that is only active inside those modules.

The token mixing each attention step stands for (joint, divided space-time, pooled, windowed,
cross-frame) is in :mod:`captum_video.attr._attention_mixing`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from captum._utils.common import _run_forward
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode, _get_current_function_mode_stack

from captum_video._model_state import removing_hooks
from captum_video._validation import format_video_inputs
from captum_video.attr._attention_mixing import grid_to_tp
from captum_video.registry.attention import AttentionLayout, Tokens, attention_layout
from captum_video.relevance import upsample_to_input

__all__ = [
    "AttentionCapture",
    "HEAD_FUSIONS",
    "capture_attention",
    "fuse_heads",
    "prepare",
    "readout_row",
    "relevance_to_clip",
    "run_captured",
]

_SOFTMAX = (F.softmax, torch.softmax, Tensor.softmax)
_INTERPOLATE_MODES = ("trilinear", "nearest", "nearest-exact", "area")
#: How heads are fused: Abnar and Zuidema average them; max / min are common variants.
HEAD_FUSIONS = ("mean", "max", "min")


def _explicit_sdpa(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> tuple[Tensor, Tensor]:
    """``F.scaled_dot_product_attention`` written out, returning ``(output, probabilities)``."""
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        repeat = query.shape[-3] // key.shape[-3]
        key = key.repeat_interleave(repeat, dim=-3)
        value = value.repeat_interleave(repeat, dim=-3)
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    scores = (query * scale) @ key.transpose(-2, -1)  # scaling q is cheaper than the scores
    if is_causal:
        rows, cols = scores.shape[-2:]
        keep = torch.ones(rows, cols, dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    probs = torch.softmax(scores, dim=-1)
    used = F.dropout(probs, dropout_p) if dropout_p > 0 else probs
    return used @ value, probs


class _Recorder(TorchFunctionMode):
    """Records the attention probabilities computed while it is the active mode."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            out, probs = _explicit_sdpa(*args, **kwargs)
            self.found.append(probs)
            return out
        result = func(*args, **kwargs)
        if func in _SOFTMAX and isinstance(result, Tensor):
            self.found.append(result)
        return result


class AttentionCapture:
    """The attention probabilities of one forward pass, per module, in call order.

    Filled by :func:`capture_attention`; :meth:`for_steps` hands them out step by step.
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.calls: dict[str, list[Tensor]] = {name: [] for name in names}

    def for_steps(self, layout: AttentionLayout) -> list[Tensor | None]:
        """One captured tensor per step of ``layout`` (None for steps without attention)."""
        wanted: dict[str, int] = {}
        for step in layout.steps:
            if step.module is not None:
                wanted[step.module] = wanted.get(step.module, 0) + 1
        for name, count in wanted.items():
            got = len(self.calls.get(name, []))
            if got != count:
                raise ValueError(
                    f"the attention module '{name}' ran {got} times in the forward pass, but the "
                    f"model's attention layout has {count} step(s) for it; the layout does not "
                    "match this model (pass layout= or check the registry entry)"
                )
        seen: dict[str, int] = {}
        out: list[Tensor | None] = []
        for step in layout.steps:
            if step.module is None:
                out.append(None)
                continue
            index = seen.get(step.module, 0)
            seen[step.module] = index + 1
            out.append(self.calls[step.module][index])
        return out


@contextlib.contextmanager
def capture_attention(model: nn.Module, names: Sequence[str]) -> Iterator[AttentionCapture]:
    """Record the attention probabilities computed inside the modules ``names`` of ``model``.

    Each call of such a module must compute exactly one attention (one softmax, or one fused
    ``scaled_dot_product_attention``, which is computed explicitly instead). Hooks and the
    recording mode are removed when the block ends, also on error.

    Args:
        model (nn.Module): the model.
        names (sequence of str): dotted module names (relative to ``model``).

    Returns:
        A context manager yielding an :class:`AttentionCapture` that fills during the forward.

    Example::

        >>> from captum_video.models import VideoTransformerSmall
        >>> net = VideoTransformerSmall(depth=1)
        >>> with capture_attention(net, ["blocks.0.attn"]) as capture:
        ...     _ = net(torch.rand(1, 3, 16, 32, 32))
        >>> capture.calls["blocks.0.attn"][0].shape   # (N, heads, S, S)
        torch.Size([1, 1, 257, 257])
    """
    capture = AttentionCapture(names)
    modules: dict[str, nn.Module] = {}
    for name in names:
        try:
            modules[name] = model.get_submodule(name)
        except AttributeError as error:
            raise ValueError(
                f"the attention module '{name}' is not part of {type(model).__name__}; the "
                "attention layout does not match this model"
            ) from error
    active: list[_Recorder] = []

    def enter(_module: nn.Module, _args: Any) -> None:
        recorder = _Recorder()
        recorder.__enter__()
        active.append(recorder)

    def leave(name: str, _module: nn.Module, _args: Any, _out: Any) -> None:
        if not active:
            return
        recorder = active.pop()
        recorder.__exit__(None, None, None)
        if len(recorder.found) != 1:
            raise ValueError(
                f"the attention module '{name}' computed {len(recorder.found)} softmax / "
                "scaled_dot_product_attention results in one call; an attention step needs "
                "exactly one (name the module that computes one attention)"
            )
        capture.calls[name].append(recorder.found[0])

    with removing_hooks() as handles:
        try:
            for name, module in modules.items():
                handles.append(module.register_forward_pre_hook(enter))
                handles.append(
                    module.register_forward_hook(
                        lambda m, a, o, name=name: leave(name, m, a, o), always_call=True
                    )
                )
            yield capture
        finally:
            stack = _get_current_function_mode_stack()
            while active:  # a forward that failed inside a module: take its mode off
                recorder = active.pop()
                if stack and stack[-1] is recorder:
                    recorder.__exit__(None, None, None)
                    stack = _get_current_function_mode_stack()


def fuse_heads(attention: Tensor, how: str = "mean") -> Tensor:
    """Fuse the head axis (dimension 1) of a captured ``(B, heads, rows, cols)`` tensor."""
    if attention.dim() != 4:
        raise ValueError(
            f"captured attention must be (batch, heads, rows, cols), got {tuple(attention.shape)}"
        )
    if attention.shape[1] == 1:  # one head: nothing to fuse
        return attention[:, 0]
    if how == "mean":
        return attention.mean(1)
    if how == "max":
        return attention.amax(1)
    if how == "min":
        return attention.amin(1)
    raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {how!r}")


def readout_row(layout: AttentionLayout, n: int, like: Tensor) -> Tensor:
    """The row(s) of the final mixing matrix that explain the prediction, as ``(N, S)``: the
    class (first) token's, or the mean row for heads that average every token."""
    tokens = layout.steps[-1].out
    count = tokens.count
    if layout.readout == "mean":
        return like.new_full((n, count), 1.0 / count)
    if layout.readout == "frame_first":
        frames = like.new_zeros(n, tokens.grid[0], tokens.per_frame)
        frames[:, :, 0] = 1.0 / tokens.grid[0]
        return frames.flatten(1)
    v = like.new_zeros(n, count)
    v[:, 0] = 1.0
    return v


def relevance_to_clip(
    v: Tensor,
    tokens: Tokens,
    patch: tuple[int, int, int] | None,
    inputs: tuple[Tensor, ...],
    interpolate: bool,
    mode: str,
) -> Tensor | tuple[Tensor, ...]:
    """Token relevance ``(N, S)`` -> ``(N, 1, T', H', W')`` (class tokens dropped), up-sampled
    to every video input's ``(T, H, W)`` (through ``grid * patch`` and a crop where the model
    padded the clip to whole patches); non-video inputs get an empty tensor."""
    n = v.shape[0]
    t, h, w = tokens.grid
    grid = grid_to_tp(v[:, tokens.prefix :], tokens).reshape(n, 1, t, h, w)
    if not interpolate:
        return grid
    maps = []
    for inp in inputs:
        if inp.dim() != 5:
            maps.append(torch.empty(0, device=grid.device, dtype=grid.dtype))
            continue
        size = tuple(int(s) for s in inp.shape[2:])
        full = size
        if patch is not None:
            padded = tuple(g * p for g, p in zip(tokens.grid, patch, strict=True))
            full = padded if all(p >= s for p, s in zip(padded, size, strict=True)) else size
        up = upsample_to_input(grid, full, mode)  # type: ignore[arg-type]
        maps.append(up[:, :, : size[0], : size[1], : size[2]].to(inp.dtype))
    return tuple(maps)


def prepare(
    forward_func: Any,
    layout: AttentionLayout | None,
    inputs: Any,
    interpolate_mode: str,
    cache: dict[tuple[int, ...], AttentionLayout] | None = None,
) -> tuple[bool, tuple[Tensor, ...], AttentionLayout]:
    """Validate the inputs and find the attention layout (given, else the registry's, kept in
    ``cache`` per clip size: the registry lookup walks the model's modules)."""
    is_tuple, formatted = format_video_inputs(inputs, model=forward_func)
    if interpolate_mode not in _INTERPOLATE_MODES:
        raise ValueError(
            f"interpolate_mode must be one of {_INTERPOLATE_MODES}, got {interpolate_mode!r}"
        )
    if not isinstance(forward_func, nn.Module):
        raise TypeError(
            "attention methods read the model's attention modules, so forward_func must be an "
            f"nn.Module, got {type(forward_func).__name__}"
        )
    if layout is None:
        size = tuple(int(s) for s in formatted[0].shape[2:])
        layout = cache.get(size) if cache is not None else None
        if layout is None:
            layout = attention_layout(forward_func, size)  # type: ignore[arg-type]
            if cache is not None:
                cache[size] = layout
    elif not isinstance(layout, AttentionLayout):
        raise TypeError(f"layout must be an AttentionLayout or None, got {type(layout).__name__}")
    return is_tuple, formatted, layout


def run_captured(
    forward_func: nn.Module,
    layout: AttentionLayout,
    inputs: tuple[Tensor, ...],
    additional_forward_args: Any,
) -> tuple[Tensor, list[Tensor | None]]:
    """Run the model once, returning its output and one captured attention per step."""
    with capture_attention(forward_func, layout.modules) as capture:
        output = _run_forward(forward_func, inputs, None, additional_forward_args)
    if not isinstance(output, Tensor):
        raise TypeError(
            f"the model must return a tensor of scores, got {type(output).__name__}; wrap "
            "models that return a ModelOutput with captum_video.registry.adapt(model)"
        )
    return output, capture.for_steps(layout)

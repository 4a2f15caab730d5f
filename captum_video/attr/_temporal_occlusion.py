r"""Temporal occlusion: when does a video model look? (Occlusion, Zeiler and Fergus 2014, in time)

:class:`TemporalOcclusion` slides a window over time, replaces the frames inside it by a
baseline and records the drop of the model's output; every frame gets the mean drop of the
windows covering it. All windows of one forward pass are built by a single broadcast
``torch.where``, so the cost is the forward passes alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from captum._utils.common import (
    _expand_additional_forward_args,
    _expand_target,
    _format_additional_forward_args,
    _format_output,
    _run_forward,
    _select_targets,
)
from captum._utils.progress import progress
from captum._utils.typing import TargetType
from captum.attr import PerturbationAttribution
from captum.log import log_usage
from torch import Tensor

from captum_video._model_state import in_eval_mode
from captum_video._targets import one_score_per_example, resolve_target
from captum_video._validation import format_video_inputs
from captum_video.baselines import WINDOW_DEPENDENT_FILLS, baseline_fill, occlude_windows

__all__ = ["TemporalOcclusion"]

BaselineSpec = str | float | int | Tensor | Callable[[Tensor], Tensor]


class TemporalOcclusion(PerturbationAttribution):
    r"""Occlusion in time: the drop of the model output when a window of frames is replaced.

    For windows ``[s_k, s_k + w)`` with ``s_k = k * stride`` (the last one clipped at ``T``,
    exactly Captum ``Occlusion`` with ``sliding_window_shapes=(C, w, H, W)``), the
    attribution of frame ``t`` is

    .. math::
        a_t = \frac{1}{|K_t|} \sum_{k \in K_t} f(x) - f(x^{(k)})

    where ``K_t`` are the windows covering ``t`` and ``x^{(k)}`` the clip with window ``k``
    replaced by the baseline. The value is spread over every voxel of the frame, so the output
    is input-shaped; ``relevance_per_frame(attr, sign="all", normalize="mean")``
    (:func:`captum_video.relevance.relevance_per_frame`) reads the ``(N, T)`` curve back.

    **Captum's spelling.** ``window=w, stride=s`` is Captum ``Occlusion``'s
    ``sliding_window_shapes=(C, w, H, W), strides=(C, s, H, W)``; both spellings are accepted.

    Unlike Captum ``Occlusion``, a batch of windows is one ``torch.where`` between the clip and
    the baseline (:func:`~captum_video.baselines.occlude_windows`, no per-window masks), and the
    ``"freeze"`` and ``"interpolate"`` baselines depend on the window (they hold the frames
    around it).

    **Cost.** One forward of the clip per window, plus one of the clean clip: there are
    ``ceil((T - window) / stride) + 1`` windows, so with ``stride=1`` that is about ``T``
    forwards of ``T`` frames, and the time grows as ``T**2`` (reported: 52 s for one 256-frame
    clip of the demo model on a 2-core CPU). For long clips use a larger stride
    (``stride=window`` needs ``T / window`` forwards); the defaults do not change with ``T``.
    Everything besides the forwards is linear in the number of windows: the occluded copies
    are built per forward (``perturbations_per_eval`` windows at a time, never all of them),
    and the drops ``(windows, N)``, the cover mask ``(windows, T)`` and the final product are
    small. Memory is that of one forward of ``perturbations_per_eval x N`` clips.

    Args:
        forward_func (Callable): the model or any function returning ``(N, K)`` scores (or
            ``(N,)``). Wrap it with a softmax to attribute probabilities.

    Example::

        >>> model = load_demo_model("motion")
        >>> occ = TemporalOcclusion(model)
        >>> attr = occ.attribute(clip, window=4, stride=2, target=label)
        >>> curve = relevance_per_frame(attr, sign="all", normalize="mean")  # (N, T) drops
    """

    def __init__(self, forward_func: Callable[..., Tensor]) -> None:
        PerturbationAttribution.__init__(self, forward_func)

    @log_usage(part_of_slo=True)
    @torch.no_grad()
    @in_eval_mode
    def attribute(  # type: ignore[override]
        self,
        inputs: Tensor | tuple[Tensor, ...],
        window: int = 4,
        stride: int = 1,
        baselines: BaselineSpec | tuple[BaselineSpec, ...] = "freeze",
        target: TargetType = None,
        additional_forward_args: Any = None,
        perturbations_per_eval: int = 1,
        show_progress: bool = False,
        sliding_window_shapes: tuple[int, ...] | None = None,
        strides: int | tuple[int, ...] | None = None,
    ) -> Tensor | tuple[Tensor, ...]:
        r"""Occlude every window of frames and attribute the drop of the target score.

        A model in train mode runs in eval mode for the call (with a warning; each module's
        mode is restored afterwards), so its BatchNorm statistics never change.

        Args:
            inputs (Tensor or tuple of Tensor): clips ``(N, C, T, H, W)``; a tuple may hold
                several streams with the same ``T`` (e.g. RGB and flow), which are occluded
                in the same frames.
            window (int, optional): frames per window, ``1 <= window <= T``. Default: 4
            stride (int, optional): step between windows, ``1 <= stride <= window``; the
                number of forwards is about ``T / stride`` (see *Cost* above). Default: 1
            baselines (str, number, Tensor or callable, optional): what replaces the frames
                of a window: ``"freeze"`` (the frame before the window, or the frame after it
                for a window at the start), ``"interpolate"`` (a blend of the frames around
                the window), ``"zero"``, ``"mean"`` (the clip's temporal mean frame),
                ``"blur"`` (the same frames spatially blurred), a number, a tensor that
                broadcasts to the input, or a callable ``x -> x'`` returning an input-shaped
                baseline (e.g. :func:`captum_video.baselines.shuffle`). A tuple gives one per
                input tensor. Default: ``"freeze"``
            target (int, tuple, Tensor or list, optional): output indices to attribute, as in
                Captum (one per example or one for all); ``None`` attributes each clip's
                predicted class (the argmax of the model's output). Default: None
            additional_forward_args (Any, optional): extra arguments of ``forward_func``,
                after the inputs; tensors with a batch dimension are repeated per window.
                Default: None
            perturbations_per_eval (int, optional): windows evaluated in one forward pass;
                memory grows with it, not with the number of windows. Default: 1
            show_progress (bool, optional): show a progress bar. Default: False
            sliding_window_shapes (tuple of int, optional): Captum's spelling of ``window``:
                ``(C, w, H, W)``, full in every dimension but time. Default: None
            strides (int or tuple of int, optional): Captum's spelling of ``stride``: ``s`` or
                ``(C, s, H, W)``. Default: None

        Returns:
            *Tensor* or *tuple[Tensor, ...]* of **attributions**:
            - **attributions** (*Tensor* or *tuple[Tensor, ...]*): input-shaped, constant over
              ``(C, H, W)`` of each frame, on the input's device and dtype.

        Example::

            >>> occ = TemporalOcclusion(model)
            >>> attr = occ.attribute(clip, window=2, stride=1, baselines="zero",
            ...                      target=0, perturbations_per_eval=8)
            >>> attr.shape == clip.shape
            True
        """
        is_tuple, xs = format_video_inputs(inputs, all_videos=True, model=self.forward_func)
        n, t = xs[0].shape[0], xs[0].shape[2]
        window, stride = _captum_spelling(xs[0], window, stride, sliding_window_shapes, strides)
        if not isinstance(window, int) or not 1 <= window <= t:
            raise ValueError(
                f"window must be an int in [1, {t}] (the clip's frames), got {window!r}"
            )
        if not isinstance(stride, int) or stride < 1 or (stride > window and window < t):
            raise ValueError(f"stride must be an int in [1, window={window}], got {stride!r}")
        if not isinstance(perturbations_per_eval, int) or perturbations_per_eval < 1:
            raise ValueError(
                f"perturbations_per_eval must be a positive int, got {perturbations_per_eval!r}"
            )
        specs = baselines if isinstance(baselines, tuple) else (baselines,) * len(xs)
        if len(specs) != len(xs):
            raise ValueError(f"got {len(specs)} baselines for {len(xs)} input tensors")
        if window == t and any(isinstance(s, str) and s in WINDOW_DEPENDENT_FILLS for s in specs):
            raise ValueError(
                f"baselines={specs[0]!r} needs a frame outside the window; use window < T"
            )
        fills = tuple(baseline_fill(x, s, name="baselines") for x, s in zip(xs, specs, strict=True))
        afa = _format_additional_forward_args(additional_forward_args)

        initial = _run_forward(self.forward_func, xs, None, afa)
        assert isinstance(initial, Tensor)
        target = resolve_target(initial, target)
        initial = one_score_per_example(_select_targets(initial, target), n)

        # Windows exactly as Captum's Occlusion: starts k * stride, the last one clipped.
        count = math.ceil((t - window) / stride) + 1
        device = xs[0].device
        starts = torch.arange(count, device=device) * stride
        stops = (starts + window).clamp_max(t)

        drops = torch.empty(count, n, device=device, dtype=initial.dtype)
        chunks = range(0, count, perturbations_per_eval)
        if show_progress:
            chunks = progress(chunks, desc="TemporalOcclusion", total=len(chunks))  # type: ignore[assignment]
        for first in chunks:
            sel = slice(first, min(first + perturbations_per_eval, count))
            k = sel.stop - sel.start
            batch = tuple(
                occlude_windows(x, starts[sel], stops[sel], fill).flatten(0, 1)
                for x, fill in zip(xs, fills, strict=True)
            )
            out = _run_forward(
                self.forward_func,
                batch,
                _expand_target(target, k),
                _expand_additional_forward_args(afa, k),
            )
            assert isinstance(out, Tensor)
            drops[sel] = initial.unsqueeze(0) - one_score_per_example(out, k * n).view(k, n)

        frames = torch.arange(t, device=device)
        cover = (frames >= starts[:, None]) & (frames < stops[:, None])  # (windows, T)
        weights = cover.to(drops.dtype)
        curve = (drops.t() @ weights) / weights.sum(0).clamp_min(1)  # (N, T)
        attrs = tuple(curve.to(x.dtype).view(n, 1, t, 1, 1).expand_as(x).contiguous() for x in xs)
        return _format_output(is_tuple, attrs)  # type: ignore[return-value]


def _captum_spelling(
    x: Tensor,
    window: int,
    stride: int,
    sliding_window_shapes: tuple[int, ...] | None,
    strides: int | tuple[int, ...] | None,
) -> tuple[int, int]:
    """``(window, stride)`` from Captum Occlusion's ``sliding_window_shapes`` / ``strides``."""
    _, c, _, h, w = x.shape
    if sliding_window_shapes is not None:
        shape = tuple(sliding_window_shapes)
        if len(shape) != 4 or (shape[0], shape[2], shape[3]) != (c, h, w):
            raise ValueError(
                f"sliding_window_shapes must be (C, w, H, W) = ({c}, w, {h}, {w}) for temporal "
                f"occlusion (whole frames), got {shape}; use captum.attr.Occlusion for "
                "spatial windows"
            )
        window = int(shape[1])
    if strides is not None:
        if isinstance(strides, tuple):
            if len(strides) != 4:
                raise ValueError(f"strides must be an int or (C, s, H, W), got {strides}")
            strides = strides[1]
        stride = int(strides)
    return window, stride

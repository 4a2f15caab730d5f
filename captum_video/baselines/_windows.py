"""Occluding windows of frames: what replaces the frames of a window, for one or many windows.

:func:`occlude_windows` is the one implementation of a window fill: it builds ``K`` occluded
copies of the clips with a single broadcast ``torch.where``, which is what
:class:`~captum_video.attr.TemporalOcclusion` evaluates; :func:`occlude_window` is the
one-window form with a window per clip.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from captum_video.baselines._blur import spatial_blur
from captum_video.baselines._frames import _check, mean_frame

__all__ = ["FILLS", "WINDOW_DEPENDENT_FILLS", "baseline_fill", "occlude_window", "occlude_windows"]

#: Named fills: ``"zero"``; ``"mean"`` (the clip's temporal mean frame); ``"blur"`` (the same
#: frames blurred spatially); ``"freeze"`` (the last frame before the window, or the first after
#: it when the window opens the clip); ``"interpolate"`` (a linear blend of the frames on either
#: side of the window).
FILLS = ("zero", "mean", "blur", "freeze", "interpolate")
#: Fills whose values depend on where the window is.
WINDOW_DEPENDENT_FILLS = ("freeze", "interpolate")

Fill = str | float | int | Tensor | Callable[[Tensor], Tensor]


def baseline_fill(
    x: Tensor, fill: Fill, sigma: float | None = None, name: str = "fill"
) -> Tensor | str:
    """The values a fill puts into a window, computed once for all windows.

    Args:
        x (Tensor): clips ``(N, C, T, H, W)``.
        fill (str, number, Tensor or callable): a name of :data:`FILLS`, a number, a tensor
            that broadcasts to ``x``, or ``x -> x'`` returning such a tensor.
        sigma (float, optional): blur width in pixels for ``"blur"`` (default
            ``0.1 * min(H, W)``, see :func:`~captum_video.baselines.spatial_blur`).
        name (str, optional): the caller's name of the argument, for error messages.
            Default: ``"fill"``

    Returns:
        Tensor or str: values broadcastable to ``x``, or the fill's name for the
        window-dependent fills (``"freeze"``, ``"interpolate"``).

    Raises:
        ValueError: an unknown name or a tensor that does not broadcast to ``x``.
        TypeError: an unsupported type, or a callable that returns no tensor.

    Example::

        >>> baseline_fill(torch.rand(1, 3, 4, 8, 8), "mean").shape
        torch.Size([1, 3, 4, 8, 8])
    """
    if isinstance(fill, str):
        if fill in WINDOW_DEPENDENT_FILLS:
            return fill
        if fill == "zero":
            return torch.zeros((), dtype=x.dtype, device=x.device)
        if fill == "mean":
            return mean_frame(x)
        if fill == "blur":
            return spatial_blur(x, sigma)
        raise ValueError(
            f"{name} must be one of {FILLS}, a number, a tensor or a callable, got {fill!r}"
        )
    if isinstance(fill, bool) or not (isinstance(fill, (int, float, Tensor)) or callable(fill)):
        raise TypeError(f"unsupported {name} type {type(fill).__name__}")
    if isinstance(fill, (int, float)):
        return torch.tensor(float(fill), dtype=x.dtype, device=x.device)
    values = fill if isinstance(fill, Tensor) else fill(x)
    if not isinstance(values, Tensor):
        raise TypeError(f"a callable {name} must return a tensor, got {type(values).__name__}")
    values = values.to(device=x.device, dtype=x.dtype)
    try:
        shape = torch.broadcast_shapes(values.shape, x.shape)
    except RuntimeError:
        shape = None
    if shape != x.shape:
        raise ValueError(
            f"{name} of shape {tuple(values.shape)} does not broadcast to the clips "
            f"{tuple(x.shape)}"
        )
    return values


def _window_values(x: Tensor, fill: str, start: Tensor, stop: Tensor) -> Tensor:
    """Window-dependent fill values ``(K, N, C, T or 1, H, W)`` for windows ``(K, N)``."""
    t = x.shape[2]
    clips = torch.arange(x.shape[0], device=x.device).view(1, -1)
    before, after = (start - 1).clamp_min(0), stop.clamp_max(t - 1)
    if fill == "freeze":
        source = torch.where(start > 0, before, after)
        return x[clips, :, source].unsqueeze(3)  # (K, N, C, 1, H, W)
    left = torch.where(start > 0, before, after)
    right = torch.where(stop < t, after, before)
    pos = torch.arange(t, device=x.device)
    span = (right - left).clamp_min(1).unsqueeze(-1)
    alpha = ((pos - left.unsqueeze(-1)) / span).clamp(0, 1).to(x.dtype)  # (K, N, T)
    alpha = alpha[:, :, None, :, None, None]
    return (1 - alpha) * x[clips, :, left].unsqueeze(3) + alpha * x[clips, :, right].unsqueeze(3)


def occlude_windows(
    x: Tensor, start: Tensor, stop: Tensor, fill: Fill = "freeze", sigma: float | None = None
) -> Tensor:
    r"""``K`` occluded copies of the clips: frames ``start .. stop - 1`` of each replaced.

    Args:
        x (Tensor): clips ``(N, C, T, H, W)``.
        start (Tensor): first occluded frame per window, ``(K,)`` (the same window for every
            clip) or ``(K, N)`` (a window per clip).
        stop (Tensor): first frame after each window, shaped like ``start``.
        fill (str, number, Tensor or callable, optional): what replaces the frames; see
            :func:`baseline_fill` (pass its result to reuse values across calls).
            Default: ``"freeze"``
        sigma (float, optional): blur width for ``fill="blur"``. Default: None

    Returns:
        Tensor: ``(K, N, C, T, H, W)``.

    Example::

        >>> clip = torch.arange(6.0).view(1, 1, 6, 1, 1)
        >>> out = occlude_windows(clip, torch.tensor([0, 2]), torch.tensor([2, 4]))
        >>> out.flatten(1).tolist()
        [[2.0, 2.0, 2.0, 3.0, 4.0, 5.0], [0.0, 1.0, 1.0, 1.0, 4.0, 5.0]]
    """
    n, t = x.shape[0], x.shape[2]
    start = start.to(x.device).long()
    stop = stop.to(x.device).long()
    if start.dim() == 1:
        start, stop = start.unsqueeze(1), stop.unsqueeze(1)
    start, stop = start.expand(-1, n), stop.expand(-1, n)
    if bool(((start < 0) | (start >= t) | (stop <= start)).any()):
        raise ValueError(f"windows must satisfy 0 <= start < stop for clips of {t} frames")
    stop = stop.clamp_max(t)
    values = baseline_fill(x, fill, sigma)
    if isinstance(values, str):
        if bool(((start == 0) & (stop == t)).any()):
            raise ValueError(
                f"fill={values!r} needs an unoccluded frame, but the window covers the clip"
            )
        values = _window_values(x, values, start, stop)
    pos = torch.arange(t, device=x.device)
    inside = (pos >= start.unsqueeze(-1)) & (pos < stop.unsqueeze(-1))  # (K, N, T)
    return torch.where(inside[:, :, None, :, None, None], values, x.unsqueeze(0))


def occlude_window(
    x: Tensor,
    start: int | Tensor,
    length: int,
    fill: Fill = "freeze",
    sigma: float | None = None,
) -> Tensor:
    r"""Replace frames ``start .. start + length - 1`` (clipped at ``T``) by a fill.

    Fills: ``"zero"``; ``"mean"`` (the clip's temporal mean frame); ``"blur"`` (the same
    frames blurred spatially, :func:`~captum_video.baselines.spatial_blur`); ``"freeze"``
    (the last frame before the window, or the first after it when the window starts at 0);
    ``"interpolate"`` (a linear blend between the frames on either side of the window); a
    number; a tensor that broadcasts to ``x`` (e.g. a dataset mean); or ``x -> x'``.

    Args:
        x (Tensor): clips ``(N, C, T, H, W)``.
        start (int or Tensor): first occluded frame, one for all clips or ``(N,)`` per clip.
        length (int): window length in frames, ``>= 1``.
        fill (str, number, Tensor or callable, optional): what to put in the window.
            Default: ``"freeze"``
        sigma (float, optional): blur width in pixels for ``fill="blur"``. Default: None

    Returns:
        Tensor: ``(N, C, T, H, W)``.

    Example::

        >>> clip = torch.arange(6.0).view(1, 1, 6, 1, 1)
        >>> occlude_window(clip, 2, 2, fill="freeze").flatten()
        tensor([0., 1., 1., 1., 4., 5.])
    """
    _check(x)
    n, t = x.shape[0], x.shape[2]
    if not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be a positive int, got {length!r}")
    start_t = torch.as_tensor(start, device=x.device).long().flatten().expand(n)
    if bool(((start_t < 0) | (start_t >= t)).any()):
        raise ValueError(f"start must be in [0, {t}) for a clip of {t} frames, got {start}")
    return occlude_windows(x, start_t.unsqueeze(0), start_t.unsqueeze(0) + length, fill, sigma)[0]

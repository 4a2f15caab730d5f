"""The staggered 3-D stack of Saliency Tubes: every frame at once, the tube running through it.

Restates ``savetopng`` of the Class Feature Pyramids code (Stergiou et al., ICCV-W 2019,
"Class Feature Pyramids for Video Explanation"; the view of Saliency Tubes): each overlay
frame is resized to a square plane, sheared by the affine map of three point pairs, and the
planes are stacked ``vertical_step`` pixels apart with frame 0 on top. Context planes are
drawn at ``context_alpha``; the *focus* plane is opaque, and animating the focus through
the clip moves a highlighted plane down the stack. Where two planes overlap their colours
are blended with weights proportional to their alphas.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from matplotlib import pyplot as plt
from matplotlib.colors import Colormap
from matplotlib.figure import Figure

from captum_video.visualization.overlay import overlay_frames

__all__ = [
    "render_tube_stack",
    "render_tube_stack_frames",
    "plot_tube_stack",
    "DEFAULT_SHEAR_POINTS",
]

#: ``((source points), (destination points))`` as fractions of (width, height).
DEFAULT_SHEAR_POINTS: tuple[tuple[tuple[float, float], ...], tuple[tuple[float, float], ...]] = (
    ((1 / 15, 1 / 11), (1 / 1.8, 1 / 10), (1 / 8.5, 1 / 1.6)),
    ((1 / 5, 1 / 4), (1 / 1.7, 1 / 4.7), (1 / 5.5, 1 / 2.1)),
)


def _sheared_planes(rgb: np.ndarray, plane_size: int, shear_points: Any) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 -> ``(T, S, S, 4)`` float RGBA planes, transparent outside."""
    src, dst = (np.asarray(p, dtype=np.float32) * plane_size for p in shear_points)
    if src.shape != (3, 2) or dst.shape != (3, 2):
        raise ValueError("shear_points must be two triples of (x, y) fractions")
    matrix = cv2.getAffineTransform(src, dst)
    planes = []
    for frame in rgb:
        square = cv2.resize(frame, (plane_size, plane_size), interpolation=cv2.INTER_LINEAR)
        rgba = np.dstack([square, np.full(square.shape[:2], 255, np.uint8)])
        # Constant zero border: pixels outside the warped frame get alpha 0.
        warped = cv2.warpAffine(
            rgba,
            matrix,
            (plane_size, plane_size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0, 0),
        )
        planes.append(warped.astype(np.float64) / 255.0)
    return np.stack(planes)


def _composite(
    planes: np.ndarray, focus: int | None, vertical_step: int, context_alpha: float
) -> np.ndarray:
    """Stack sheared planes, frame 0 on top; returns ``(S + (T-1) * step, S, 4)`` uint8."""
    num, size = planes.shape[0], planes.shape[1]
    colour = np.zeros((size + (num - 1) * vertical_step, size, 3))
    alpha = np.zeros(colour.shape[:2])
    # Draw from the last frame (bottom) to the first (top), as savetopng grows its canvas.
    for t in range(num - 1, -1, -1):
        top = t * vertical_step
        plane = planes[t]
        a_new = plane[..., 3] * (1.0 if t == focus else context_alpha)
        region_c = colour[top : top + size]
        region_a = alpha[top : top + size]
        total = a_new + region_a
        weight = np.divide(a_new, total, out=np.zeros_like(total), where=total > 0)
        region_c[:] = weight[..., None] * plane[..., :3] + (1 - weight[..., None]) * region_c
        region_a[:] = np.maximum(region_a, a_new)
    rgba = np.dstack([colour, alpha])
    return np.clip(np.rint(rgba * 255), 0, 255).astype(np.uint8)


def _crop(stacks: np.ndarray) -> np.ndarray:
    """Cut ``(..., H, W, 4)`` composites to the box holding any visible pixel."""
    visible: np.ndarray = np.any(stacks[..., 3].reshape(-1, *stacks.shape[-3:-1]), axis=0)
    rows, cols = np.flatnonzero(visible.any(axis=1)), np.flatnonzero(visible.any(axis=0))
    if rows.size == 0:
        return stacks
    return stacks[..., rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1, :]


def _check_params(plane_size: int, vertical_step: int, context_alpha: float) -> None:
    if plane_size < 8:
        raise ValueError(f"plane_size must be at least 8 pixels, got {plane_size}")
    if vertical_step < 1:
        raise ValueError(f"vertical_step must be >= 1, got {vertical_step}")
    if not 0.0 < context_alpha <= 1.0:
        raise ValueError(f"context_alpha must be in (0, 1], got {context_alpha}")


def _planes(
    attr: Any,
    video: Any,
    plane_size: int,
    vertical_step: int,
    context_alpha: float,
    shear_points: Any,
    overlay_kwargs: dict[str, Any],
) -> np.ndarray:
    _check_params(plane_size, vertical_step, context_alpha)
    rgb = overlay_frames(attr, video, **overlay_kwargs)
    return _sheared_planes(rgb, plane_size, shear_points)


def render_tube_stack(
    attr: Any,
    video: Any,
    focus: int | None = None,
    plane_size: int = 256,
    vertical_step: int = 80,
    context_alpha: float = 135 / 255,
    shear_points: Any = DEFAULT_SHEAR_POINTS,
    method: str = "blended_heat_map",
    sign: str = "absolute_value",
    outlier_perc: int | float = 2,
    cmap: str | Colormap | None = None,
    alpha_overlay: float = 0.5,
    crop: bool = True,
) -> np.ndarray:
    r"""Render the staggered frame stack of Saliency Tubes as one RGBA image.

    Args:
        attr (Tensor or ndarray): relevance of one clip, ``(1, C, T, H, W)``,
            ``(C, T, H, W)`` or ``(T, H, W)`` (e.g. a GradCAMTube map).
        video (Tensor or ndarray): the clip ``(C, T, H, W)`` in ``[0, 1]``.
        focus (int, optional): the frame drawn opaque; None draws every frame at
            ``context_alpha``. Default: None
        plane_size (int, optional): side of the square each frame is resized to. Default: 256
        vertical_step (int, optional): pixels between consecutive planes. Default: 80
        context_alpha (float, optional): opacity of non-focus planes. Default: 135/255
        shear_points (tuple, optional): ``(src, dst)`` triples of ``(x, y)`` fractions of
            the plane defining the shear. Default: ``DEFAULT_SHEAR_POINTS`` (savetopng's)
        method, sign, outlier_perc, cmap, alpha_overlay: how each frame is drawn, as in
            :func:`overlay_frames` (one normalisation for the whole clip).
        crop (bool, optional): cut the transparent margins the shear leaves. Default: True

    Returns:
        ndarray: ``uint8`` RGBA, ``(plane_size + (T - 1) * vertical_step, plane_size, 4)``
        before cropping; frame 0 is the top plane, transparent pixels have alpha 0.

    Example::

        >>> stack = render_tube_stack(attr, clip[0], focus=5, crop=False)
        >>> stack.shape            # 16 frames, default sizes: 256 + 15 * 80 rows
        (1456, 256, 4)
    """
    planes = _planes(
        attr,
        video,
        plane_size,
        vertical_step,
        context_alpha,
        shear_points,
        dict(
            method=method,
            sign=sign,
            outlier_perc=outlier_perc,
            cmap=cmap,
            alpha_overlay=alpha_overlay,
        ),
    )
    if focus is not None and not 0 <= int(focus) < len(planes):
        raise ValueError(f"focus {focus} is out of range for a clip of {len(planes)} frames")
    stack = _composite(planes, None if focus is None else int(focus), vertical_step, context_alpha)
    return _crop(stack) if crop else stack


def render_tube_stack_frames(
    attr: Any,
    video: Any,
    focus: Sequence[int] | None = None,
    plane_size: int = 256,
    vertical_step: int = 80,
    context_alpha: float = 135 / 255,
    shear_points: Any = DEFAULT_SHEAR_POINTS,
    method: str = "blended_heat_map",
    sign: str = "absolute_value",
    outlier_perc: int | float = 2,
    cmap: str | Colormap | None = None,
    alpha_overlay: float = 0.5,
    crop: bool = True,
) -> np.ndarray:
    r"""One tube-stack composite per focus frame: the frames of an animation.

    Args:
        attr, video: relevance and clip, as :func:`render_tube_stack` takes them.
        focus (sequence of int, optional): focus frames, one composite each; None means
            every frame in order (the Saliency Tubes animation). Default: None
        plane_size, vertical_step, context_alpha, shear_points: as in :func:`render_tube_stack`.
        method, sign, outlier_perc, cmap, alpha_overlay, crop: as in
            :func:`render_tube_stack`; all composites are cropped to the same box.

    Returns:
        ndarray: ``(len(focus), S + (T-1) * vertical_step, S, 4)`` ``uint8`` RGBA before
        cropping, ready for :func:`captum_video.visualization.write_video`.

    Example::

        >>> frames = render_tube_stack_frames(attr, clip[0], plane_size=64, vertical_step=16)
        >>> write_video(frames, "tube.gif", fps=4)
    """
    planes = _planes(
        attr,
        video,
        plane_size,
        vertical_step,
        context_alpha,
        shear_points,
        dict(
            method=method,
            sign=sign,
            outlier_perc=outlier_perc,
            cmap=cmap,
            alpha_overlay=alpha_overlay,
        ),
    )
    chosen = list(range(len(planes))) if focus is None else [int(f) for f in focus]
    if not chosen:
        raise ValueError("focus is empty; pass None for every frame")
    for f in chosen:
        if not 0 <= f < len(planes):
            raise ValueError(f"focus {f} is out of range for a clip of {len(planes)} frames")
    stacks = np.stack([_composite(planes, f, vertical_step, context_alpha) for f in chosen])
    return _crop(stacks) if crop else stacks


def plot_tube_stack(
    attr: Any,
    video: Any,
    focus: int | None = None,
    title: str | None = None,
    fig_size: tuple[float, float] | None = None,
    plt_fig_axis: tuple[Figure, Any] | None = None,
    use_pyplot: bool = True,
    **kwargs: Any,
) -> tuple[Figure, Any]:
    r"""Show :func:`render_tube_stack` in a matplotlib axis.

    Args:
        attr, video, focus: as in :func:`render_tube_stack`.
        title (str, optional): axis title. Default: None
        fig_size (tuple, optional): figure size; None keeps the stack's aspect. Default: None
        plt_fig_axis (tuple, optional): ``(figure, axis)`` to draw into. Default: None
        use_pyplot (bool, optional): pyplot figure plus ``plt.show()``. Default: True
        **kwargs: the other arguments of :func:`render_tube_stack`.

    Returns:
        tuple: ``(figure, axis)``.

    Example::

        >>> fig, ax = plot_tube_stack(attr, clip[0], focus=8, use_pyplot=False)
    """
    stack = render_tube_stack(attr, video, focus=focus, **kwargs)
    if plt_fig_axis is not None:
        fig, ax = plt_fig_axis
    else:
        height, width = stack.shape[:2]
        size = fig_size or (3.0, 3.0 * height / width)
        if use_pyplot:
            fig, ax = plt.subplots(figsize=size)
        else:
            fig = Figure(figsize=size)
            ax = fig.subplots()
        # The stack is tall and narrow: give it the whole figure instead of default margins.
        fig.subplots_adjust(left=0, right=1, bottom=0, top=0.96 if title else 1)
    ax.imshow(stack)
    ax.axis("off")
    if title:
        ax.set_title(title)
    if use_pyplot and plt_fig_axis is None:
        plt.show()
    return fig, ax

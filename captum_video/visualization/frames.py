"""Frame grids: Captum's ``visualize_image_attr`` for a whole clip.

Captum's image function accepts only ``(H, W[, C])`` and normalises each call on its own.
Here the relevance is normalised once over the clip (:func:`normalize_video_attr`) and each
selected frame is drawn into its own axis by Captum's private ``_visualize_*`` helpers, so
the five method names, four sign names, default colour maps and ``alpha_overlay`` behave
exactly as in Captum, and one colour means the same relevance in every frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from captum.attr._utils.visualization import (
    _prepare_image,
    _visualize_alpha_scaling,
    _visualize_blended_heat_map,
    _visualize_heat_map,
    _visualize_masked_image,
    _visualize_original_image,
)
from matplotlib import pyplot as plt
from matplotlib.axes import Axes
from matplotlib.colors import Colormap
from matplotlib.figure import Figure

from captum_video.visualization._inputs import (
    attr_volume,
    check_matching,
    select_frames,
    video_frames,
)
from captum_video.visualization._normalize import normalize_video_attr
from captum_video.visualization.captions import frame_label
from captum_video.visualization.overlay import check_method, get_colormap

__all__ = ["visualize_video_attr", "visualize_video_attr_multiple"]

_DRAW = {
    "heat_map": _visualize_heat_map,
    "blended_heat_map": _visualize_blended_heat_map,
    "original_image": _visualize_original_image,
    "masked_image": _visualize_masked_image,
    "alpha_scaling": _visualize_alpha_scaling,
}


def _make_axes(
    rows: int, cols: int, fig_size: tuple[float, float] | None, use_pyplot: bool
) -> tuple[Figure, np.ndarray]:
    size = fig_size if fig_size is not None else (1.8 * cols + 0.4, 1.9 * rows + 0.5)
    if use_pyplot:
        fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False)
    else:
        fig = Figure(figsize=size)
        axes = fig.subplots(rows, cols, squeeze=False)
    return fig, np.asarray(axes)


def _clear_ticks(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(visible=False)


def _draw_row(
    axes: Sequence[Axes],
    volume: np.ndarray,
    frames: np.ndarray | None,
    indices: list[int],
    method: str,
    sign: str,
    outlier_perc: int | float,
    cmap: str | Colormap | None,
    alpha_overlay: float,
    frame_titles: bool,
) -> Any:
    """Draw ``indices`` of one clip into ``axes``; returns the last heat-map image or None."""
    norm = normalize_video_attr(volume, sign=sign, outlier_perc=outlier_perc)
    colormap, vmin, vmax = get_colormap(cmap, sign)
    image = None if frames is None else _prepare_image(frames * 255)
    mappable = None
    for ax, t in zip(axes, indices, strict=True):
        _clear_ticks(ax)
        drawn = _DRAW[method](
            plt_axis=ax,
            norm_attr=norm[t],
            original_image=None if image is None else image[t],
            sign=sign,
            cmap=colormap,
            vmin=vmin,
            vmax=vmax,
            alpha_overlay=alpha_overlay,
        )
        mappable = drawn if drawn is not None else mappable
        if frame_titles:
            ax.set_title(frame_label(t, len(volume)), fontsize=8)
    return mappable


def _finish(
    fig: Figure,
    axes: list[Axes],
    mappable: Any,
    show_colorbar: bool,
    title: str | None,
    use_pyplot: bool,
) -> None:
    if show_colorbar and mappable is not None:
        # One colour bar for the grid: the normalisation is shared by every frame.
        fig.colorbar(mappable, ax=axes, orientation="horizontal", fraction=0.05, pad=0.04)
    if title:
        fig.suptitle(title)
    if use_pyplot:
        plt.show()


def visualize_video_attr(
    attr: Any,
    video: Any = None,
    method: str = "blended_heat_map",
    sign: str = "absolute_value",
    outlier_perc: int | float = 2,
    cmap: str | Colormap | None = None,
    alpha_overlay: float = 0.5,
    frames: Sequence[int] | int | None = None,
    ncols: int | None = None,
    show_colorbar: bool = False,
    title: str | None = None,
    frame_titles: bool = True,
    fig_size: tuple[float, float] | None = None,
    plt_fig_axis: tuple[Figure, Any] | None = None,
    use_pyplot: bool = True,
) -> tuple[Figure, np.ndarray]:
    r"""Show a clip's relevance as a grid of frames, normalised over the whole clip.

    Args:
        attr (Tensor or ndarray): relevance of one clip, ``(1, C, T, H, W)``,
            ``(C, T, H, W)`` (``C`` may be 1) or ``(T, H, W)``; channels are summed.
        video (Tensor or ndarray, optional): the clip ``(C, T, H, W)`` or
            ``(1, C, T, H, W)`` in ``[0, 1]`` (or uint8). Needed by every method except
            ``heat_map``. Default: None
        method (str, optional): Captum's ``heat_map``, ``blended_heat_map`` (heat map over
            the greyscale frame), ``original_image``, ``masked_image`` or ``alpha_scaling``.
            Default: ``blended_heat_map``
        sign (str, optional): ``positive`` (Greens), ``absolute_value`` (Blues),
            ``negative`` (Reds) or ``all`` (red-white-green, ``[-1, 1]``). Default:
            ``absolute_value``
        outlier_perc (int or float, optional): percentage of the clip's total relevance,
            held by its largest values, that saturates to full colour. Default: 2
        cmap (str or Colormap, optional): overrides the sign's colour map. Default: None
        alpha_overlay (float, optional): heat-map opacity for ``blended_heat_map``.
            Default: 0.5
        frames (sequence of int or int, optional): frame indices to show, or a number of
            evenly spaced frames; None shows all frames (at most 16, evenly spaced).
            Default: None
        ncols (int, optional): columns of the grid; None puts up to 8 frames per row.
            Default: None
        show_colorbar (bool, optional): one horizontal colour bar for the grid. Default: False
        title (str, optional): figure title. Default: None
        frame_titles (bool, optional): label each axis with its frame, numbered from 1
            (``"frame 3/16"``), as every human-facing output of the package. Default: True
        fig_size (tuple, optional): figure size in inches; None sizes it from the grid.
            Default: None
        plt_fig_axis (tuple, optional): ``(figure, axes)`` to draw into, with one axis per
            shown frame (any nesting; it is flattened). Default: None
        use_pyplot (bool, optional): create the figure with pyplot and call ``plt.show()``;
            False builds a standalone ``Figure`` (object-oriented API, nothing shown).
            Default: True

    Returns:
        tuple: ``(figure, axes)`` where ``axes`` is an ndarray of the axes drawn into (grid
        shaped when the function made the figure; extra grid cells are hidden).

    Example::

        >>> from captum.attr import Saliency
        >>> from captum_video.models import load_demo_model
        >>> model = load_demo_model("motion")
        >>> clip = torch.rand(1, 3, 16, 32, 32)
        >>> attr = Saliency(model).attribute(clip, target=0)
        >>> fig, axes = visualize_video_attr(attr, clip[0], frames=8, use_pyplot=False)
    """
    if not 0.0 <= alpha_overlay <= 1.0:
        raise ValueError(f"alpha_overlay must be in [0, 1], got {alpha_overlay}")
    check_method(method, sign, video is not None)
    volume = attr_volume(attr)
    rgb = None
    if video is not None:
        rgb = video_frames(video)
        check_matching(volume, rgb)
    indices = select_frames(volume.shape[0], frames)
    if plt_fig_axis is not None:
        fig, given = plt_fig_axis
        grid = np.asarray(given, dtype=object)
        flat = list(grid.ravel())
        if len(flat) != len(indices):
            raise ValueError(f"plt_fig_axis has {len(flat)} axes for {len(indices)} frames")
    else:
        cols = min(len(indices), ncols or 8)
        if cols < 1:
            raise ValueError(f"ncols must be >= 1, got {ncols}")
        fig, grid = _make_axes(math.ceil(len(indices) / cols), cols, fig_size, use_pyplot)
        flat = list(grid.ravel())
        for ax in flat[len(indices) :]:
            ax.axis("off")
        flat = flat[: len(indices)]
    mappable = _draw_row(
        flat, volume, rgb, indices, method, sign, outlier_perc, cmap, alpha_overlay, frame_titles
    )
    _finish(fig, flat, mappable, show_colorbar, title, use_pyplot)
    return fig, grid


def visualize_video_attr_multiple(
    attr: Any,
    video: Any,
    methods: Sequence[str],
    signs: Sequence[str],
    titles: Sequence[str] | None = None,
    frames: Sequence[int] | int | None = None,
    fig_size: tuple[float, float] | None = None,
    use_pyplot: bool = True,
    **kwargs: Any,
) -> tuple[Figure, np.ndarray]:
    r"""Several views of a clip, one row each, frames in columns.

    As Captum's ``visualize_image_attr_multiple``, row ``i`` draws ``methods[i]`` with
    ``signs[i]``. ``attr`` may also be a list with one attribution per row, to compare
    attribution methods (Saliency, Integrated Gradients, GradCAMTube ...) frame by frame.
    Each row is normalised over its own whole clip.

    Args:
        attr (Tensor, ndarray or list of them): one relevance for all rows, or one per row.
        video (Tensor or ndarray or None): the clip ``(C, T, H, W)`` in ``[0, 1]``.
        methods (sequence of str): Captum visualisation methods, one per row.
        signs (sequence of str): sign names, one per row.
        titles (sequence of str, optional): row labels, drawn left of each row. Default: None
        frames (sequence of int or int, optional): frames shown in every row; None shows up
            to 8 evenly spaced frames. Default: None
        fig_size (tuple, optional): figure size in inches. Default: None (from the grid)
        use_pyplot (bool, optional): as in :func:`visualize_video_attr`. Default: True
        **kwargs: ``outlier_perc``, ``cmap``, ``alpha_overlay``, ``show_colorbar`` (one bar
            per row), ``frame_titles``, passed to every row.

    Returns:
        tuple: ``(figure, axes)`` with ``axes`` of shape ``(len(methods), frames shown)``.

    Example::

        >>> fig, axes = visualize_video_attr_multiple(
        ...     [saliency_attr, ig_attr], clip[0], ["blended_heat_map"] * 2,
        ...     ["absolute_value", "all"], titles=["Saliency", "IG"], use_pyplot=False)
    """
    methods, signs = list(methods), list(signs)
    if len(methods) != len(signs) or not methods:
        raise ValueError(
            f"need one sign per method, got {len(methods)} methods and {len(signs)} signs"
        )
    if titles is not None and len(titles) != len(methods):
        raise ValueError(f"need one title per method, got {len(titles)} titles")
    attrs = list(attr) if isinstance(attr, (list, tuple)) else [attr] * len(methods)
    if len(attrs) != len(methods):
        raise ValueError(f"got {len(attrs)} attributions for {len(methods)} rows")
    allowed = {"outlier_perc", "cmap", "alpha_overlay", "show_colorbar", "frame_titles"}
    unknown = set(kwargs) - allowed
    if unknown:
        raise TypeError(
            f"unexpected keyword arguments {sorted(unknown)}; allowed: {sorted(allowed)}"
        )
    num_frames = attr_volume(attrs[0]).shape[0]
    indices = select_frames(num_frames, frames, max_frames=8)
    fig, grid = _make_axes(len(methods), len(indices), fig_size, use_pyplot)
    for row, (row_attr, method, sign) in enumerate(zip(attrs, methods, signs, strict=True)):
        visualize_video_attr(
            row_attr,
            video,
            method=method,
            sign=sign,
            frames=indices,
            plt_fig_axis=(fig, grid[row]),
            use_pyplot=False,
            **kwargs,
        )
        if titles is not None:
            grid[row, 0].set_ylabel(titles[row])
    if use_pyplot:
        plt.show()
    return fig, grid

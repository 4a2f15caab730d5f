"""Relevance over time: how much of a clip's relevance each frame holds, for several methods.

Hiley, Preece and Hicks ("Explainable Deep Learning for Video Recognition Tasks: A Framework
& Recommendations", 2019, section 2.2) point to a view that plots the amount of relevance per
frame with the frames shown at key points: it keeps the clip's sense of sequence and shows the
effect of motion better than an animated heat map. This module draws that
view: one curve per attribution method on a shared axis, thumbnails of key frames beneath.
It does not go through Captum's ``visualize_timeseries_attr``, whose ``cm.get_cmap`` call
fails on matplotlib >= 3.11.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from captum_video.relevance import relevance_per_frame
from captum_video.visualization._inputs import (
    attr_volume,
    check_matching,
    select_frames,
    video_frames,
)

__all__ = ["relevance_over_time", "plot_relevance_over_time"]


def relevance_over_time(
    attr: Any,
    sign: str = "absolute_value",
    normalize: Literal["sum", "max"] | None = "sum",
) -> np.ndarray:
    r"""Relevance mass of every frame of one clip.

    Args:
        attr (Tensor or ndarray): ``(1, C, T, H, W)``, ``(C, T, H, W)`` or ``(T, H, W)``;
            channels are summed (signed) first, as in the heat maps.
        sign (str, optional): Captum sign filter applied before summing over ``(H, W)``;
            ``"all"`` keeps the signed sum. Default: ``"absolute_value"``
        normalize (str or None, optional): ``"sum"`` divides by the clip's total (curves are
            the share of relevance per frame and compare across methods of any scale),
            ``"max"`` by the largest frame, None keeps raw sums. ``"all"`` relevance is
            divided by its absolute total / largest magnitude. Default: ``"sum"``

    Returns:
        ndarray: ``(T,)`` float64.

    Example::

        >>> attr = torch.zeros(3, 4, 8, 8)
        >>> attr[:, 1] = 1.0
        >>> relevance_over_time(attr).tolist()
        [0.0, 1.0, 0.0, 0.0]
    """
    if normalize not in ("sum", "max", None):
        raise ValueError(f"normalize must be 'sum', 'max' or None, got {normalize!r}")
    volume = torch.from_numpy(attr_volume(attr))[None, None]
    return relevance_per_frame(volume, sign, normalize)[0].numpy()


def _as_named(attrs: Any, labels: Sequence[str] | None) -> list[tuple[str, Any]]:
    if isinstance(attrs, Mapping):
        items = list(attrs.items())
        if labels is not None:
            raise ValueError("pass labels or a dict of {label: attr}, not both")
        return [(str(k), v) for k, v in items]
    values = list(attrs) if isinstance(attrs, (list, tuple)) else [attrs]
    if labels is None:
        labels = [f"method {i}" for i in range(len(values))] if len(values) > 1 else [""]
    if len(labels) != len(values):
        raise ValueError(f"got {len(labels)} labels for {len(values)} attributions")
    return list(zip(labels, values, strict=True))


def _key_frames(curves: np.ndarray, key_frames: Any, num_key_frames: int) -> list[int]:
    num_frames = curves.shape[1]
    if isinstance(key_frames, str):
        if key_frames == "even":
            return select_frames(num_frames, min(num_key_frames, num_frames))
        if key_frames == "peaks":
            # Most relevant frames first, skipping neighbours of chosen ones so the
            # thumbnails do not shrink to slivers: at least T / (k + 1) frames apart.
            gap = max(1, round(num_frames / (num_key_frames + 1)))
            chosen: list[int] = []
            for i in np.argsort(-np.abs(curves).sum(axis=0), kind="stable"):
                if len(chosen) < num_key_frames and all(abs(i - c) >= gap for c in chosen):
                    chosen.append(int(i))
            return sorted(chosen)
        raise ValueError(
            f"key_frames must be 'even', 'peaks' or a list of frame indices, got {key_frames!r}"
        )
    return sorted(set(select_frames(num_frames, key_frames)))


def plot_relevance_over_time(
    attrs: Any,
    labels: Sequence[str] | None = None,
    video: Any = None,
    sign: str = "absolute_value",
    normalize: Literal["sum", "max"] | None = "sum",
    key_frames: str | Sequence[int] = "even",
    num_key_frames: int = 6,
    title: str | None = None,
    fig_size: tuple[float, float] = (8, 4.5),
    plt_fig_axis: tuple[Figure, Any] | None = None,
    use_pyplot: bool = True,
) -> tuple[Figure, list[Any]]:
    r"""Plot relevance per frame for one or several methods, with key frames under the curve.

    Args:
        attrs (Tensor, ndarray, list or dict): one attribution, a list of them, or a dict
            ``{label: attr}``; every entry covers the same clip (``T`` frames).
        labels (sequence of str, optional): legend entries for a list. Default: None
        video (Tensor or ndarray, optional): the clip ``(C, T, H, W)`` in ``[0, 1]``; when
            given, thumbnails of the key frames are drawn beneath the curves, each centred
            under its frame. Default: None
        sign (str, optional): sign filter (see :func:`relevance_over_time`).
            Default: ``"absolute_value"``
        normalize (str or None, optional): ``"sum"``, ``"max"`` or None, see
            :func:`relevance_over_time`. Default: ``"sum"``
        key_frames (str or sequence of int, optional): ``"even"`` (evenly spaced),
            ``"peaks"`` (the frames with most relevance summed over methods, at least
            ``T / (num_key_frames + 1)`` frames apart) or explicit
            indices; they are marked on the curve axis too. Default: ``"even"``
        num_key_frames (int, optional): how many key frames ``"even"``/``"peaks"`` pick.
            Default: 6
        title (str, optional): axis title. Default: None
        fig_size (tuple, optional): figure size in inches. Default: (8, 4.5)
        plt_fig_axis (tuple, optional): ``(figure, axis)`` for the curves; thumbnails are
            drawn as insets under that axis. Default: None
        use_pyplot (bool, optional): pyplot figure plus ``plt.show()``; False builds a
            standalone ``Figure``. Default: True

    Returns:
        tuple: ``(figure, axes)`` with ``axes[0]`` the curve axis followed by one axis per
        thumbnail.

    Example::

        >>> fig, axes = plot_relevance_over_time(
        ...     {"Saliency": sal_attr, "IG": ig_attr}, video=clip[0], use_pyplot=False)
    """
    named = _as_named(attrs, labels)
    if not named:
        raise ValueError("attrs is empty; pass at least one attribution")
    curve_list = [relevance_over_time(a, sign, normalize) for _, a in named]
    lengths = {len(curve) for curve in curve_list}
    if len(lengths) != 1:
        raise ValueError(f"the attributions cover different numbers of frames: {sorted(lengths)}")
    curves = np.stack(curve_list)
    num_frames = curves.shape[1]
    frames_rgb = None
    if video is not None:
        frames_rgb = video_frames(video)
        check_matching(attr_volume(named[0][1]), frames_rgb, named[0][0] or "attrs")
    keys = _key_frames(curves, key_frames, num_key_frames)
    if plt_fig_axis is not None:
        fig, ax = plt_fig_axis
    elif use_pyplot:
        fig, ax = plt.subplots(figsize=fig_size)
    else:
        fig = Figure(figsize=fig_size)
        ax = fig.subplots()
    colors = colormaps["tab10"].colors  # type: ignore[attr-defined]
    x = np.arange(num_frames)
    for i, ((label, _), curve) in enumerate(zip(named, curves, strict=True)):
        ax.plot(
            x, curve, marker="o", markersize=3, color=colors[i % len(colors)], label=label or None
        )
    for k in keys:
        ax.axvline(k, color="0.6", linestyle=":", linewidth=1, zorder=0)
    ax.set_xlim(-0.5, num_frames - 0.5)
    # Positions are 0-based indices; labels number frames from 1, as every human-facing output.
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{int(round(value)) + 1}"))
    ax.set_xlabel("frame (numbered from 1)")
    ylabel = {
        "sum": "share of clip relevance",
        "max": "relevance / peak frame",
        None: "relevance per frame",
    }[normalize]
    ax.set_ylabel(f"{ylabel} ({sign})")
    if len(named) > 1 or named[0][0]:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    axes: list[Any] = [ax]
    if frames_rgb is not None:
        fig.subplots_adjust(bottom=0.38)
        gaps = np.diff(keys) if len(keys) > 1 else np.array([num_frames])
        width = 0.95 * float(min(gaps.min(), num_frames / max(len(keys), 1)))
        transform = ax.get_xaxis_transform()  # x in frames, y in axis fractions
        for k in keys:
            thumb = ax.inset_axes((k - width / 2, -0.66, width, 0.4), transform=transform)
            thumb.imshow(frames_rgb[k])
            thumb.set_xticks([])
            thumb.set_yticks([])
            thumb.set_title(f"frame {k + 1}", fontsize=7, pad=1)
            axes.append(thumb)
    if use_pyplot and plt_fig_axis is None:
        plt.show()
    return fig, axes

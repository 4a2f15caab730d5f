"""Spatial and temporal relevance together in one frame, without one hiding the other.

Hiley, Preece and Hicks ("Explainable Deep Learning for Video Recognition Tasks: A Framework
& Recommendations", 2019, section 4) ask for "a system in which spatial and temporal relevance
do not interfere with one another when displayed together in one image". Two alpha-blended
heat maps fail that test: the one drawn last covers the other. Here each signal owns a colour
direction (:func:`captum_video.visualization.overlay.two_hue_frames`): spatial relevance adds
orange, temporal relevance adds azure, and where both are present the colours add up to a
pale lilac-white, so a pixel shows how much of each it holds. Feed it the two parts of
``SpatioTemporalSplit`` (or any pair of maps, e.g. relevance of the clip and of its
frame-difference / optical-flow stream).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from captum_video.visualization._inputs import attr_volume
from captum_video.visualization._normalize import apply_sign
from captum_video.visualization.overlay import SPATIAL_HUE, TEMPORAL_HUE, two_hue_frames

__all__ = ["spatiotemporal_overlay"]


def spatiotemporal_overlay(
    spatial: Any,
    temporal: Any,
    video: Any,
    frame: int | None = None,
    sign: str = "absolute_value",
    outlier_perc: int | float = 2,
    joint_scale: bool = True,
    background: float = 0.35,
    spatial_hue: tuple[float, float, float] = SPATIAL_HUE,
    temporal_hue: tuple[float, float, float] = TEMPORAL_HUE,
    labels: tuple[str, str] = ("spatial (appearance)", "temporal (motion)"),
    legend: bool = True,
    title: str | None = None,
    fig_size: tuple[float, float] = (4.5, 4.5),
    plt_fig_axis: tuple[Figure, Any] | None = None,
    use_pyplot: bool = True,
) -> tuple[Figure, Any]:
    r"""Draw one frame with spatial relevance in one hue and temporal relevance in another.

    Both maps are normalised over the whole clip (jointly by default), so the chosen frame
    shows the relevance it really holds compared with the rest of the clip.

    Args:
        spatial (Tensor or ndarray): spatial relevance of one clip, ``(1, C, T, H, W)``,
            ``(C, T, H, W)`` or ``(T, H, W)``.
        temporal (Tensor or ndarray): temporal relevance, same ``(T, H, W)``.
        video (Tensor or ndarray): the clip ``(C, T, H, W)`` in ``[0, 1]``.
        frame (int, optional): the frame to show; None picks the frame holding most
            spatial + temporal relevance. Default: None
        sign (str, optional): ``absolute_value``, ``positive`` or ``negative``.
            Default: ``absolute_value``
        outlier_perc (int or float, optional): Captum's outlier percentage. Default: 2
        joint_scale (bool, optional): one threshold for both maps (a weak temporal part looks
            weak); False stretches each to full hue. Default: True
        background (float, optional): weight of the greyscale frame. Default: 0.35
        spatial_hue, temporal_hue (tuple, optional): RGB hues; together at most 1 per channel.
            Default: orange and azure
        labels (tuple of str, optional): legend names of the two signals.
            Default: ``("spatial (appearance)", "temporal (motion)")``
        legend (bool, optional): draw the legend (both hues and their sum). Default: True
        title (str, optional): axis title; None writes the frame index. Default: None
        fig_size (tuple, optional): figure size in inches. Default: (4.5, 4.5)
        plt_fig_axis (tuple, optional): ``(figure, axis)`` to draw into. Default: None
        use_pyplot (bool, optional): pyplot figure plus ``plt.show()``; False builds a
            standalone ``Figure``. Default: True

    Returns:
        tuple: ``(figure, axis)``.

    Example::

        >>> split = SpatioTemporalSplit(Saliency(model))
        >>> spatial, temporal = split.attribute(clip, target=0)
        >>> fig, ax = spatiotemporal_overlay(spatial, temporal, clip[0], use_pyplot=False)
    """
    rgb = two_hue_frames(
        spatial,
        temporal,
        video,
        sign=sign,
        outlier_perc=outlier_perc,
        joint_scale=joint_scale,
        background=background,
        spatial_hue=spatial_hue,
        temporal_hue=temporal_hue,
    )
    num_frames = rgb.shape[0]
    if frame is None:
        s_mass = apply_sign(attr_volume(spatial, "spatial"), sign).sum(axis=(1, 2))
        m_mass = apply_sign(attr_volume(temporal, "temporal"), sign).sum(axis=(1, 2))
        frame = int(np.argmax(s_mass + m_mass))
    elif not -num_frames <= frame < num_frames:
        raise ValueError(f"frame {frame} is out of range for a clip of {num_frames} frames")
    frame = frame % num_frames
    if plt_fig_axis is not None:
        fig, ax = plt_fig_axis
    elif use_pyplot:
        fig, ax = plt.subplots(figsize=fig_size)
    else:
        fig = Figure(figsize=fig_size)
        ax = fig.subplots()
    ax.imshow(rgb[frame])
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title if title is not None else f"frame {frame}")
    if legend:
        both = (
            min(1.0, spatial_hue[0] + temporal_hue[0]),
            min(1.0, spatial_hue[1] + temporal_hue[1]),
            min(1.0, spatial_hue[2] + temporal_hue[2]),
        )
        handles = [
            Patch(color=spatial_hue, label=labels[0]),
            Patch(color=temporal_hue, label=labels[1]),
            Patch(color=both, label="both"),
        ]
        ax.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.02),
            ncol=3,
            fontsize=7,
            frameon=False,
        )
    if use_pyplot and plt_fig_axis is None:
        plt.show()
    return fig, ax

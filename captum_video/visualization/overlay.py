"""Pure-array rendering of relevance over a clip: the pixels every other view is made of.

The matplotlib views (:mod:`.frames`) draw through Captum's own ``_visualize_*`` helpers;
video export, the tube stack and the two-hue view need the pixels themselves, which this
module computes with NumPy using the same method and sign names, the same default colour
maps (positive Greens, absolute_value Blues, negative Reds, all red-white-green) and the same
clip-wide normalisation. Colour maps are looked up in ``matplotlib.colormaps``, never with
``matplotlib.cm.get_cmap`` (removed in matplotlib 3.11, which breaks Captum's
``visualize_timeseries_attr``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from captum.attr._utils.visualization import (
    ImageVisualizationMethod,
    _initialize_cmap_and_vmin_vmax,
)
from matplotlib import colormaps
from matplotlib.colors import Colormap

from captum_video.visualization._inputs import attr_volume, check_matching, video_frames
from captum_video.visualization._normalize import (
    NormalizeMode,
    check_sign,
    normalize_video_attr,
)

__all__ = [
    "overlay_frames",
    "render_overlay",
    "two_hue_frames",
    "side_by_side",
    "to_uint8",
    "get_colormap",
    "check_method",
    "SPATIAL_HUE",
    "TEMPORAL_HUE",
]

METHODS = tuple(m.name for m in ImageVisualizationMethod)

#: Hues of the two-hue view. Spatial relevance lives in the red channel, temporal relevance in
#: the blue channel, and both add the same amount of green, so neither can hide the other:
#: orange = appearance only, azure = motion only, pale lilac-white = both.
SPATIAL_HUE = (1.0, 0.45, 0.0)
TEMPORAL_HUE = (0.0, 0.45, 1.0)


def check_method(method: str, sign: str, has_video: bool) -> None:
    """Validate a Captum visualisation ``method`` against ``sign`` and the clip's presence."""
    check_sign(sign)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if method in ("masked_image", "alpha_scaling") and sign == "all":
        raise ValueError(
            f"method={method!r} cannot show positive and negative relevance at "
            "once; choose sign='positive', 'negative' or 'absolute_value'"
        )
    if method != "heat_map" and not has_video:
        raise ValueError(
            f"method={method!r} draws on the clip: pass video (C, T, H, W) in "
            "[0, 1], or use method='heat_map'"
        )


def get_colormap(cmap: str | Colormap | None, sign: str) -> tuple[Colormap, float, float]:
    """The colour map and value range Captum uses for ``sign`` (``cmap`` overrides the map).

    Args:
        cmap (str, Colormap or None): a matplotlib colour map or its name; None picks
            Captum's default for ``sign``.
        sign (str): one of Captum's sign names.

    Returns:
        tuple: ``(Colormap, vmin, vmax)``; ``(-1, 1)`` for ``sign="all"``, else ``(0, 1)``.

    Example::

        >>> get_colormap(None, "positive")[0].name
        'Greens'
    """
    check_sign(sign)
    default, vmin, vmax = _initialize_cmap_and_vmin_vmax(sign)
    chosen = default if cmap is None else cmap
    if isinstance(chosen, str):
        if chosen not in colormaps:
            raise ValueError(f"unknown colour map {chosen!r}; see matplotlib.colormaps")
        chosen = colormaps[chosen]
    return chosen, float(vmin), float(vmax)


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Float frames in ``[0, 1]`` to ``uint8`` (rounded, clipped)."""
    return np.clip(np.rint(frames * 255.0), 0, 255).astype(np.uint8)


def render_overlay(
    norm_attr: np.ndarray,
    frames: np.ndarray | None,
    method: str = "blended_heat_map",
    sign: str = "absolute_value",
    cmap: str | Colormap | None = None,
    alpha_overlay: float = 0.5,
) -> np.ndarray:
    """Draw already normalised relevance; the pixel core of :func:`overlay_frames`.

    Args:
        norm_attr (ndarray): ``(..., H, W)`` relevance from :func:`normalize_video_attr`.
        frames (ndarray or None): ``(..., H, W, 3)`` RGB in ``[0, 1]`` matching ``norm_attr``.
        method, sign, cmap, alpha_overlay: as in :func:`overlay_frames`.

    Returns:
        ndarray: ``(..., H, W, 3)`` float64 RGB in ``[0, 1]``.

    Example::

        >>> render_overlay(np.ones((2, 4, 4)), None, method="heat_map").shape
        (2, 4, 4, 3)
    """
    check_method(method, sign, frames is not None)
    if method == "original_image":
        assert frames is not None
        return frames.copy()
    if method in ("masked_image", "alpha_scaling"):
        assert frames is not None
        weight = norm_attr[..., None]
        if method == "masked_image":
            return frames * weight
        # Captum sets the alpha channel to the relevance; over a white page that is this.
        return frames * weight + (1.0 - weight)
    colormap, vmin, vmax = get_colormap(cmap, sign)
    heat = colormap(np.clip((norm_attr - vmin) / (vmax - vmin), 0.0, 1.0))[..., :3]
    if method == "heat_map":
        return heat
    assert frames is not None
    # Captum blends the heat map over the greyscale mean of the image.
    grey = np.repeat(frames.mean(axis=-1, keepdims=True), 3, axis=-1)
    return (1.0 - alpha_overlay) * grey + alpha_overlay * heat


def overlay_frames(
    attr: Any,
    video: Any = None,
    method: str = "blended_heat_map",
    sign: str = "absolute_value",
    outlier_perc: int | float = 2,
    cmap: str | Colormap | None = None,
    alpha_overlay: float = 0.5,
    normalize: NormalizeMode = "percentile",
) -> np.ndarray:
    r"""Render relevance over every frame of a clip as ``uint8`` RGB frames.

    The pixels follow Captum's ``visualize_image_attr`` methods, with one normalisation for
    the whole clip. Unlike Captum's figure, the grey background of ``blended_heat_map`` is
    not rescaled per frame, so frames stay comparable.

    Args:
        attr (Tensor or ndarray): relevance ``(1, C, T, H, W)``, ``(C, T, H, W)`` or
            ``(T, H, W)``.
        video (Tensor or ndarray, optional): the clip ``(C, T, H, W)`` or ``(1, C, T, H, W)``
            in ``[0, 1]``; needed for every method except ``heat_map``. Default: None
        method (str, optional): ``heat_map``, ``blended_heat_map``, ``original_image``,
            ``masked_image`` or ``alpha_scaling`` (Captum's names). Default: ``blended_heat_map``
        sign (str, optional): ``positive``, ``absolute_value``, ``negative`` or ``all``.
            Default: ``absolute_value``
        outlier_perc (int or float, optional): Captum's outlier percentage. Default: 2
        cmap (str or Colormap, optional): colour map; None uses Captum's default for ``sign``.
            Default: None
        alpha_overlay (float, optional): heat-map opacity of ``blended_heat_map``. Default: 0.5
        normalize (str, optional): ``mode`` of :func:`normalize_video_attr`.
            Default: ``"percentile"``

    Returns:
        ndarray: ``(T, H, W, 3)`` ``uint8`` RGB frames.

    Example::

        >>> attr = torch.zeros(3, 8, 32, 32)
        >>> attr[:, :, 4:10, 20:28] = 1.0
        >>> rgb = overlay_frames(attr, torch.rand(3, 8, 32, 32))
        >>> rgb.shape, rgb.dtype
        ((8, 32, 32, 3), dtype('uint8'))
    """
    if not 0.0 <= alpha_overlay <= 1.0:
        raise ValueError(f"alpha_overlay must be in [0, 1], got {alpha_overlay}")
    check_method(method, sign, video is not None)
    volume = attr_volume(attr)
    frames = None
    if video is not None:
        frames = video_frames(video)
        check_matching(volume, frames)
    norm = normalize_video_attr(volume, sign=sign, outlier_perc=outlier_perc, mode=normalize)
    return to_uint8(render_overlay(norm, frames, method, sign, cmap, alpha_overlay))


def two_hue_frames(
    spatial: Any,
    temporal: Any,
    video: Any,
    sign: str = "absolute_value",
    outlier_perc: int | float = 2,
    joint_scale: bool = True,
    background: float = 0.35,
    spatial_hue: tuple[float, float, float] = SPATIAL_HUE,
    temporal_hue: tuple[float, float, float] = TEMPORAL_HUE,
) -> np.ndarray:
    r"""Spatial and temporal relevance in two hues that add instead of covering each other.

    Each pixel is ``background * grey + (1 - background) * (s * spatial_hue + m *
    temporal_hue)``, where ``s`` and ``m`` are the normalised spatial and temporal
    relevance. With the default hues ``s`` is the only contribution to red beyond the grey
    and ``m`` the only one to blue, so both can be read back from the pixel (and no channel
    saturates, because the hues sum to at most 1 per channel).

    Args:
        spatial (Tensor or ndarray): spatial (appearance) relevance of one clip, any shape
            :func:`overlay_frames` accepts.
        temporal (Tensor or ndarray): temporal (motion) relevance, same ``(T, H, W)``.
        video (Tensor or ndarray): the clip ``(C, T, H, W)`` in ``[0, 1]``.
        sign (str, optional): sign filter applied to both; ``"all"`` is not allowed because
            a hue cannot carry a sign. Default: ``"absolute_value"``
        outlier_perc (int or float, optional): Captum's outlier percentage. Default: 2
        joint_scale (bool, optional): normalise both with one threshold computed over both
            volumes, so a weak temporal component looks weak; False scales each to full hue.
            Default: True
        background (float, optional): weight of the greyscale clip. Default: 0.35
        spatial_hue (tuple, optional): RGB of spatial relevance. Default: orange ``SPATIAL_HUE``
        temporal_hue (tuple, optional): RGB of temporal relevance. Default: azure
            ``TEMPORAL_HUE``

    Returns:
        ndarray: ``(T, H, W, 3)`` ``uint8`` RGB frames.

    Example::

        >>> s, m = torch.rand(1, 8, 16, 16), torch.rand(1, 8, 16, 16)
        >>> two_hue_frames(s, m, torch.rand(3, 8, 16, 16)).shape
        (8, 16, 16, 3)
    """
    if sign == "all":
        raise ValueError(
            "two_hue_frames shows magnitudes; use sign='absolute_value', 'positive' or 'negative'"
        )
    check_sign(sign)
    if not 0.0 <= background < 1.0:
        raise ValueError(f"background must be in [0, 1), got {background}")
    hues = np.asarray([spatial_hue, temporal_hue], dtype=np.float64)
    if hues.shape != (2, 3) or hues.min() < 0 or hues.sum(axis=0).max() > 1.0 + 1e-9:
        raise ValueError(
            "spatial_hue and temporal_hue must be RGB triples in [0, 1] whose "
            "sum is at most 1 per channel, so the two signals never saturate"
        )
    s_vol = attr_volume(spatial, "spatial")
    m_vol = attr_volume(temporal, "temporal")
    if s_vol.shape != m_vol.shape:
        raise ValueError(f"spatial covers {s_vol.shape} but temporal covers {m_vol.shape}")
    frames = video_frames(video)
    check_matching(s_vol, frames, "spatial")
    if joint_scale:
        # One threshold over both volumes: stack them along time and split afterwards.
        both = normalize_video_attr(np.concatenate([s_vol, m_vol]), sign, outlier_perc)
        s_norm, m_norm = both[: len(s_vol)], both[len(s_vol) :]
    else:
        s_norm = normalize_video_attr(s_vol, sign, outlier_perc)
        m_norm = normalize_video_attr(m_vol, sign, outlier_perc)
    grey = frames.mean(axis=-1, keepdims=True)
    colour = s_norm[..., None] * hues[0] + m_norm[..., None] * hues[1]
    return to_uint8(background * grey + (1.0 - background) * colour)


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Put two ``(T, H, W, 3)`` frame stacks next to each other: ``(T, H, 2W, 3)``.

    Example::

        >>> side_by_side(np.zeros((2, 4, 4, 3)), np.ones((2, 4, 4, 3))).shape
        (2, 4, 8, 3)
    """
    if left.shape != right.shape:
        raise ValueError(f"cannot put {left.shape} next to {right.shape}")
    return np.concatenate([left, right], axis=2)

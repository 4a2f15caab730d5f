r"""The flow stream's relevance on the frames: which motion, where, mattered to the decision.

A two-stream model (Simonyan and Zisserman 2014, "Two-Stream Convolutional Networks for
Action Recognition in Videos") reads optical flow as a second input, so its explanation has a
*flow* part: relevance of each pixel's motion vector. Hiley et al. (2019, "Explainable Deep
Learning for Video Recognition Tasks: A Framework & Recommendations") name showing temporal
relevance on flow fields as a way to see what a model took from motion. Drawn as a heat map,
the flow relevance says *where*; these views add *which way* things moved there:

* ``style="hsv"``: the optical-flow colour wheel, weighted by relevance. Hue is the flow's
  direction (red = right, then clockwise in image coordinates: yellow-green = down,
  cyan-blue = left, purple = up), saturation its speed (relative to the clip's fastest
  pixel) and brightness the relevance, over the dimmed grey clip. Relevant pixels that do not
  move show white: the model used the *absence* of motion there.
* ``style="arrows"``: the frames up-scaled, brightened by relevance, with one arrow per
  ``step x step`` cell where the cell's relevance is at least ``min_relevance``: the arrow
  follows the cell's mean flow, coloured by direction as above.

Relevance is normalised over the whole clip (:func:`normalize_video_attr`, Captum's outlier
threshold), so brightness compares across frames. :func:`write_flow_overlay` writes the frames
as a video (:func:`~captum_video.visualization.write_video`: MP4, WebM, GIF, AVI) or a PNG
strip.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from matplotlib.colors import hsv_to_rgb
from PIL import Image

from captum_video.visualization._inputs import (
    _to_numpy,
    attr_volume,
    check_matching,
    select_frames,
)
from captum_video.visualization._inputs import video_frames as clip_frames
from captum_video.visualization._normalize import check_sign, normalize_video_attr
from captum_video.visualization.captions import caption_frames
from captum_video.visualization.export import write_video
from captum_video.visualization.overlay import to_uint8

__all__ = ["flow_relevance_frames", "write_flow_overlay"]

Style = Literal["hsv", "arrows"]


def _flow_field(flow: Any) -> np.ndarray:
    """The flow stream's input of one clip as ``(T, H, W, 2)`` float64 ``(dx, dy)``."""
    array = _to_numpy(flow, "flow")
    if array.ndim == 5:
        if array.shape[0] != 1:
            raise ValueError(
                f"flow holds {array.shape[0]} clips (shape {tuple(array.shape)}); pass flow[i]"
            )
        array = array[0]
    if array.ndim != 4 or array.shape[0] != 2:
        raise ValueError(
            "flow must be the flow stream's input (2, T, H, W) or (1, 2, T, H, W) with (dx, dy) "
            f"first, got shape {tuple(array.shape)}; optical_flow's (T, 2, H, W) needs "
            ".permute(1, 0, 2, 3)"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"flow must be floating-point, got dtype {array.dtype}")
    if not np.isfinite(array).all():
        raise ValueError(f"flow contains {int((~np.isfinite(array)).sum())} NaN or inf values")
    return np.moveaxis(array.astype(np.float64), 0, -1)


def _relevance(relevance: Any, sign: str, outlier_perc: float) -> np.ndarray:
    """``(T, H, W)`` relevance in ``[0, 1]``; with ``absolute_value`` the channels' magnitudes
    are added (the ``dx`` and ``dy`` relevance of a pixel must not cancel)."""
    array = _to_numpy(relevance, "relevance")
    if (
        sign == "absolute_value"
        and array.ndim in (4, 5)
        and np.issubdtype(array.dtype, np.floating)
    ):
        array = np.abs(array).sum(axis=-4, keepdims=True)
    volume = attr_volume(array, "relevance")  # checks shape and NaN / inf, naming the argument
    return normalize_video_attr(volume, sign=sign, outlier_perc=outlier_perc)


def _direction_colours(field: np.ndarray, speed: np.ndarray, value: np.ndarray) -> np.ndarray:
    """RGB of the flow colour wheel: hue = direction, saturation = speed, value = ``value``."""
    hue = (np.arctan2(field[..., 1], field[..., 0]) / (2 * np.pi)) % 1.0
    return hsv_to_rgb(np.stack([hue, speed, value], axis=-1))


def flow_relevance_frames(
    flow: Any,
    relevance: Any,
    video: Any = None,
    style: Style = "hsv",
    sign: str = "absolute_value",
    outlier_perc: int | float = 2,
    background: float = 0.35,
    scale: int = 1,
    step: int = 4,
    min_relevance: float = 0.1,
) -> np.ndarray:
    r"""Render the flow stream's relevance with the direction of the flow it belongs to.

    ``hsv``: pixel = ``background * grey + (1 - background) * HSV(direction, speed,
    relevance)``; ``arrows``: ``background * grey + (1 - background) * relevance`` (grey
    levels), up-scaled ``scale`` times, with direction-coloured arrows of the cells' mean flow
    (see the module docstring).

    Args:
        flow (Tensor or ndarray): the flow stream's input of one clip, ``(2, T, H, W)`` or
            ``(1, 2, T, H, W)``, channels ``(dx, dy)`` (e.g. ``two_stream_inputs(clip)[1]``).
        relevance (Tensor or ndarray): the flow stream's attribution, ``(1, C, T, H, W)``,
            ``(C, T, H, W)`` or ``(T, H, W)`` (layer maps up-sampled to the clip).
        video (Tensor or ndarray, optional): the clip ``(C, T, H, W)`` in ``[0, 1]`` under
            the overlay; without it the background is black. Default: None
        style (str, optional): ``"hsv"`` or ``"arrows"``. Default: ``"hsv"``
        sign (str, optional): ``"absolute_value"`` (``dx`` and ``dy`` magnitudes added),
            ``"positive"`` or ``"negative"``. Default: ``"absolute_value"``
        outlier_perc (int or float, optional): Captum's outlier percentage. Default: 2
        background (float, optional): weight of the grey clip, in ``[0, 1)``. Default: 0.35
        scale (int, optional): integer up-scaling (``"arrows"`` needs room: 4 or more for
            32 x 32 clips). Default: 1
        step (int, optional): arrow cell size in clip pixels (``"arrows"``). Default: 4
        min_relevance (float, optional): least normalised cell relevance that gets an arrow,
            in ``[0, 1]`` (``"arrows"``). Default: 0.1

    Returns:
        ndarray: ``(T, H * scale, W * scale, 3)`` ``uint8`` RGB frames.

    Raises:
        TypeError: ``flow`` or ``relevance`` is not a tensor / array of real numbers.
        ValueError: shapes that do not match, NaN / inf, an unknown ``style`` or ``sign``
            (``"all"`` cannot be a brightness), or options out of range.

    Example::

        >>> flow = torch.zeros(2, 4, 16, 16)
        >>> flow[0, :, 4:8, 4:8] = 1.0                       # a patch moving right
        >>> relevance = flow.abs()
        >>> frames = flow_relevance_frames(flow, relevance, torch.rand(3, 4, 16, 16))
        >>> frames.shape, frames.dtype
        ((4, 16, 16, 3), dtype('uint8'))
    """
    if style not in ("hsv", "arrows"):
        raise ValueError(f"style must be 'hsv' or 'arrows', got {style!r}")
    check_sign(sign)
    if sign == "all":
        raise ValueError(
            "the flow overlay shows relevance as brightness; use sign='absolute_value', "
            "'positive' or 'negative'"
        )
    if not 0.0 <= background < 1.0:
        raise ValueError(f"background must be in [0, 1), got {background}")
    for name, value in (("scale", scale), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not 0.0 <= min_relevance <= 1.0:
        raise ValueError(f"min_relevance must be in [0, 1], got {min_relevance}")
    field = _flow_field(flow)
    norm = _relevance(relevance, sign, outlier_perc)
    if norm.shape != field.shape[:3]:
        raise ValueError(
            f"relevance covers (T, H, W) = {norm.shape} but flow covers {field.shape[:3]}; "
            "pass the flow stream's attribution (layer maps up-sampled to the clip)"
        )
    if video is not None:
        frames = clip_frames(video)
        check_matching(norm, frames, "relevance")
        grey = frames.mean(axis=-1, keepdims=True)
    else:
        grey = np.zeros((*norm.shape, 1))
    magnitude = np.linalg.norm(field, axis=-1)
    speed = magnitude / max(float(magnitude.max()), 1e-12)
    if style == "hsv":
        colour = _direction_colours(field, speed, norm)
        rgb = to_uint8(background * grey + (1.0 - background) * colour)
        return rgb.repeat(int(scale), axis=1).repeat(int(scale), axis=2) if scale > 1 else rgb
    base = to_uint8(np.repeat(background * grey + (1.0 - background) * norm[..., None], 3, -1))
    return _draw_arrows(base, field, speed, norm, int(scale), int(step), float(min_relevance))


def _draw_arrows(
    base: np.ndarray,
    field: np.ndarray,
    speed: np.ndarray,
    norm: np.ndarray,
    scale: int,
    step: int,
    min_relevance: float,
) -> np.ndarray:
    """Up-scale ``base`` and draw one arrow per relevant ``step x step`` cell."""
    t, h, w = norm.shape
    out = np.ascontiguousarray(base.repeat(scale, axis=1).repeat(scale, axis=2))
    rows, cols = h // step, w // step
    # Cell means of relevance, flow and speed; cv2 draws on each frame (a few dozen arrows).
    cut = (slice(None), slice(0, rows * step), slice(0, cols * step))
    cell_rel = norm[cut].reshape(t, rows, step, cols, step).mean(axis=(2, 4))
    cell_flow = field[cut].reshape(t, rows, step, cols, step, 2).mean(axis=(2, 4))
    cell_speed = speed[cut].reshape(t, rows, step, cols, step).mean(axis=(2, 4))
    colours = _direction_colours(cell_flow, np.ones_like(cell_speed), np.ones_like(cell_speed))
    length = 0.9 * step * scale  # the fastest cell's arrow spans almost its cell
    fastest = max(float(np.linalg.norm(cell_flow, axis=-1).max()), 1e-12)
    for f in range(t):
        frame = out[f]
        for r in range(rows):
            for c in range(cols):
                if cell_rel[f, r, c] < min_relevance or cell_speed[f, r, c] <= 0:
                    continue
                centre = np.array([(c + 0.5) * step * scale, (r + 0.5) * step * scale])
                tip = centre + cell_flow[f, r, c] / fastest * length
                colour = tuple(int(v) for v in np.rint(colours[f, r, c] * 255))
                thickness = 1 if cell_rel[f, r, c] < 0.5 or scale < 4 else 2
                cv2.arrowedLine(
                    frame,
                    (int(round(centre[0])), int(round(centre[1]))),
                    (int(round(tip[0])), int(round(tip[1]))),
                    colour,
                    thickness,
                    cv2.LINE_AA,
                    tipLength=0.35,
                )
    return out


def write_flow_overlay(
    path: str | os.PathLike,
    flow: Any,
    relevance: Any,
    video: Any = None,
    style: Style = "hsv",
    fps: float = 8.0,
    scale: int = 4,
    frames: Sequence[int] | int | None = None,
    caption: str | None = None,
    **options: Any,
) -> Path:
    """Write :func:`flow_relevance_frames` as a video or as a PNG strip of frames.

    Args:
        path (str or PathLike): ``.mp4``, ``.webm``, ``.gif`` or ``.avi`` (through
            :func:`~captum_video.visualization.write_video`), or ``.png`` (the ``frames``
            side by side). Parent folders are created.
        flow, relevance, video, style: as in :func:`flow_relevance_frames`.
        fps (float, optional): frames per second of a video. Default: 8.0
        scale (int, optional): integer up-scaling. Default: 4
        frames (sequence of int or int, optional): for ``.png``: frame indices, or a number
            of evenly spaced frames. Default: None (up to 8 evenly spaced frames)
        caption (str, optional): a strip on top of every frame (video) or of the strip
            (PNG), with the frame number. Default: None
        **options: further options of :func:`flow_relevance_frames` (``sign``,
            ``outlier_perc``, ``background``, ``step``, ``min_relevance``).

    Returns:
        pathlib.Path: the written file.

    Raises:
        ValueError: unknown suffix, or bad inputs (see :func:`flow_relevance_frames`).

    Example::

        >>> write_flow_overlay("flow.png", flow, relevance, style="arrows")
        PosixPath('flow.png')
    """
    out = Path(path)
    rendered = flow_relevance_frames(flow, relevance, video, style=style, scale=scale, **options)
    if out.suffix.lower() != ".png":
        return write_video(rendered, out, fps=fps, caption=caption)
    chosen = select_frames(len(rendered), frames, max_frames=8)
    picked = rendered[chosen]
    if caption is not None:  # each frame captioned with its own number in the clip
        total = len(rendered)
        picked = np.concatenate(
            [caption_frames(rendered[i : i + 1], caption, first=i, total=total) for i in chosen]
        )
    # A 2-pixel white gap between frames, so neighbouring frames do not run together.
    gap = np.full((picked.shape[1], 2, 3), 255, dtype=np.uint8)
    pieces: list[np.ndarray] = []
    for frame in picked:
        pieces += [frame, gap]
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(pieces[:-1], axis=1)).save(out)
    return out

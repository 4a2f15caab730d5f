"""Captions on exported frames: what is shown (method, class) and when (frame, time).

Frames are numbered from 1 in everything a person reads (captions, plot titles, the report);
machine-readable outputs say which convention they use.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["caption_frames", "frame_label"]


def frame_label(index: int, total: int | None, seconds: float | None = None) -> str:
    """The human-facing name of frame ``index`` (0-based) of ``total``: ``"frame 3/16"``.

    Args:
        index (int): the frame's 0-based index.
        total (int or None): the number of frames; None when it is not known (a live
            stream): ``"frame 3"``.
        seconds (float, optional): its time in the video, added as ``"at 1.25 s"``.

    Returns:
        str: the label, frames numbered from 1.

    Example::

        >>> frame_label(0, 16, 0.0)
        'frame 1/16 at 0.00 s'
    """
    if total is not None and (
        isinstance(total, bool) or not isinstance(total, numbers.Integral) or total < 1
    ):
        raise ValueError(f"total must be a number of frames >= 1 or None, got {total!r}")
    limit = total if total is not None else float("inf")
    if isinstance(index, bool) or not isinstance(index, numbers.Integral) or not 0 <= index < limit:
        raise ValueError(f"index must be a frame index in [0, {limit}), got {index!r}")
    if seconds is not None and not math.isfinite(seconds):
        raise ValueError(f"seconds must be finite, got {seconds!r}")
    label = f"frame {index + 1}" if total is None else f"frame {index + 1}/{total}"
    return label if seconds is None else f"{label} at {seconds:.2f} s"


def caption_frames(
    frames: np.ndarray,
    caption: str = "",
    times: Sequence[float] | None = None,
    height: int | None = None,
    first: int = 0,
    total: int | None = None,
    show_total: bool = True,
) -> np.ndarray:
    """Frames with a dark strip on top naming what they show and the frame (and time).

    Args:
        frames (ndarray): ``uint8`` RGB frames ``(T, H, W, 3)``.
        caption (str, optional): the fixed part, e.g. ``"gradcam_tube | class 'right'"``.
            Default: ``""``
        times (sequence of float, optional): each frame's time in seconds. Default: None
        height (int, optional): the strip's height in pixels; default scales with the width.
        first (int, optional): the 0-based index of the first of these frames in the whole
            video, when they are a part of it. Default: 0
        total (int, optional): the frames of the whole video. Default: these frames' number
        show_total (bool, optional): name the total (``"frame 3/16"``); False for a live
            stream, whose length is not known (``"frame 3"``). Default: True

    Returns:
        ndarray: ``(T, H + strip, W, 3)`` ``uint8``.

    Example::

        >>> captioned = caption_frames(np.zeros((2, 64, 128, 3), np.uint8), "demo")
        >>> captioned.shape[0], captioned.shape[2]
        (2, 128)
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    count, _, width = frames.shape[:3]
    if times is not None and len(times) != count:
        raise ValueError(f"times has {len(times)} entries for {count} frames")
    total = count if total is None else total
    strip = height or max(12, min(24, width // 16))
    scale = strip / 30.0
    out = np.zeros((count, strip + frames.shape[1], width, 3), dtype=np.uint8)
    out[:, strip:] = frames
    out[:, :strip] = 32
    for t in range(count):
        label = frame_label(
            first + t, total if show_total else None, None if times is None else float(times[t])
        )
        text = f"{caption} | {label}" if caption else label
        # Shorten to the strip's width rather than overflow it.
        while len(text) > 4 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > (
            width - 4
        ):
            text = text[:-2]
        baseline = int(strip * 0.72)
        cv2.putText(
            out[t], text, (2, baseline), cv2.FONT_HERSHEY_SIMPLEX, scale, (240, 240, 240), 1,
            cv2.LINE_AA,
        )  # fmt: skip
    return out

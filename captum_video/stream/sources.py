"""Where a stream's frames come from: OpenCV captures (files, cameras, URLs) or Python iterators.

:func:`open_source` turns what the user names into a :class:`FrameSource`: a file path, a
camera index (``0`` or ``"0"``) or a stream URL (``rtsp://``, ``http://`` ...) is read through
``cv2.VideoCapture``; any other iterable gives frames itself, as ``uint8`` RGB ``(H, W, 3)``
arrays or ``(time in seconds, frame)`` pairs. :meth:`FrameSource.frames` hands out
:class:`StreamFrame` objects resized to the model's size, each with its time in the source
and the moment it *arrived* (``time.perf_counter()``), from which a window's latency counts.

A *live* source (a camera, a URL, an iterator of bare frames without ``fps``) paces itself: its
frames arrive when they are captured and their time is the arrival time since the first one. A
file, or an iterator whose frames carry times, is played at its own rate when ``realtime`` is
True (each frame waits until its timestamp, as a camera would deliver it), or as fast as it
decodes otherwise.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

__all__ = ["FrameSource", "StreamFrame", "open_source"]

_URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


@dataclass(frozen=True)
class StreamFrame:
    """One frame of a stream.

    Args:
        index (int): its index in the stream, from 0.
        time (float): its time in the source, seconds (the file's timestamp, the iterator's
            time, or the arrival time since the first frame of a live source).
        image (ndarray): ``uint8`` RGB ``(H, W, 3)``, at the size the stream asked for.
        arrival (float): ``time.perf_counter()`` when the frame arrived.

    Returns:
        A frozen dataclass.

    Example::

        >>> StreamFrame(0, 0.0, np.zeros((2, 2, 3), np.uint8), 0.0).index
        0
    """

    index: int
    time: float
    image: np.ndarray
    arrival: float


def _as_rgb(frame: Any, index: int, bgr: bool = False) -> np.ndarray:
    """A frame as contiguous ``uint8`` RGB ``(H, W, 3)``, or a clear error."""
    if hasattr(frame, "detach"):  # a torch tensor
        frame = frame.detach().cpu().numpy()
    array = np.asarray(frame)
    if array.ndim == 2 and array.dtype == np.uint8:  # greyscale capture
        return cv2.cvtColor(array, cv2.COLOR_GRAY2RGB)
    if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise ValueError(
            f"frame {index} of the stream must be uint8 RGB (H, W, 3), got {array.dtype} "
            f"{array.shape}; convert float frames with (frame * 255).astype(np.uint8)"
        )
    if bgr:
        return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(array)


def _resize(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or image.shape[:2] == tuple(size):
        return image
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)


class FrameSource:
    r"""A stream of frames, read once; made by :func:`open_source`.

    Attributes:
        description (str): what is read (a path, ``camera 0``, a URL, ``iterator``).
        live (bool): whether the source paces itself (cameras, URLs, iterators of bare frames
            without ``fps``; for an iterator this is settled by its first item): its frames
            are timed as they arrive and ``realtime`` changes nothing about how it is read.
        fps (float or None): the source's frame rate when known.
        total_frames (int or None): its number of frames when known (files).
        busy_seconds (float): time spent reading, converting and resizing frames so far
            (for a live source or an iterator, waiting for the next frame counts too).

    Returns:
        A source; :meth:`frames` reads it.

    Example::

        >>> source = open_source(np.zeros((4, 8, 8, 3), np.uint8), fps=2)
        >>> [f.time for f in source.frames(realtime=False)]
        [0.0, 0.5, 1.0, 1.5]
    """

    def __init__(
        self,
        description: str,
        live: bool,
        fps: float | None,
        total_frames: int | None,
        items: Iterator[tuple[float | None, Any]],
        bgr: bool = False,
        release: Any = None,
    ) -> None:
        self.description = description
        self.live = live
        self.fps = fps
        self.total_frames = total_frames
        self._items = items
        self._bgr = bgr
        self._release = release
        self._used = False
        self.busy_seconds = 0.0  # reading, converting and resizing (not waiting for time)

    def frames(
        self,
        size: tuple[int, int] | None = None,
        realtime: bool = True,
        stop: threading.Event | None = None,
    ) -> Iterator[StreamFrame]:
        """Read the frames, resized to ``size``, paced to their times when ``realtime``.

        Args:
            size (tuple of int, optional): ``(H, W)`` every frame is resized to (area
                interpolation). Default: the source's size
            realtime (bool, optional): wait for each frame's time (files and timed
                iterators), as a live source would deliver it. Default: True
            stop (threading.Event, optional): reading ends soon after it is set (also while
                waiting for a frame's time). Default: None

        Returns:
            iterator of :class:`StreamFrame`.

        Raises:
            RuntimeError: the source was read before (a stream is read once).
        """
        if self._used:
            raise RuntimeError(f"{self.description} was read already; open it again")
        self._used = True
        stop = stop or threading.Event()
        first_given: float | None = None
        first_arrival = play_start = 0.0
        try:
            clock = time.perf_counter()
            for index, (given, raw) in enumerate(self._items):
                arrival = time.perf_counter()
                image = _resize(_as_rgb(raw, index, self._bgr), size)
                self.busy_seconds += time.perf_counter() - clock
                if index == 0:
                    self.live, first_arrival = given is None, arrival
                if given is None:  # live: a frame's time is its arrival since the first one
                    stamp = arrival - first_arrival
                else:
                    stamp = float(given)
                    if not math.isfinite(stamp):
                        raise ValueError(f"frame {index} of the stream has time {given}")
                    if first_given is None:
                        first_given, play_start = stamp, time.perf_counter()
                    if realtime:
                        delay = play_start + (stamp - first_given) - time.perf_counter()
                        if delay > 0 and stop.wait(delay):
                            return
                        arrival = time.perf_counter()
                yield StreamFrame(index, stamp, image, arrival)
                if stop.is_set():
                    return
                clock = time.perf_counter()
        finally:
            self.close()

    def close(self) -> None:
        """Release the capture (idempotent)."""
        release, self._release = self._release, None
        if release is not None:
            release()


def _capture_items(capture: Any, fps: float | None, live: bool) -> Iterator[tuple[Any, Any]]:
    index, previous = 0, -1.0
    while True:
        ok, frame = capture.read()
        if not ok or frame is None:
            return
        if live:
            stamp = None
        else:
            stamp = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            # Some containers report no timestamps (0 or going back): count frames instead.
            if not math.isfinite(stamp) or (index > 0 and stamp <= previous):
                stamp = index / (fps or 25.0)
            previous = stamp
        yield stamp, frame
        index += 1


def _open_capture(source: str | int, fps: float | None) -> FrameSource:
    if isinstance(source, int):
        capture, description, live = cv2.VideoCapture(source), f"camera {source}", True
    elif source.startswith(_URL_SCHEMES):
        capture, description, live = cv2.VideoCapture(source), source, True
    else:
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"video file not found: {path}")
        if path.is_dir():
            raise IsADirectoryError(f"expected a video file, got a directory: {path}")
        if not os.access(path, os.R_OK):
            raise PermissionError(f"cannot read {path}: permission denied")
        capture, description, live = cv2.VideoCapture(str(path)), str(path), False
    if not capture.isOpened():
        capture.release()
        if isinstance(source, int):
            hint = "is there a camera with that index?"
        elif live:
            hint = "is the stream reachable and playing?"
        else:
            hint = "is it a video OpenCV can decode?"
        raise ValueError(f"OpenCV cannot open {description}: {hint}")
    if live:
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a backlog
    rate = capture.get(cv2.CAP_PROP_FPS)
    native = float(rate) if math.isfinite(rate) and rate > 0 else None
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    total = int(count) if not live and math.isfinite(count) and count > 0 else None
    rate = fps or native
    items = _capture_items(capture, rate, live)
    return FrameSource(description, live, rate, total, items, bgr=True, release=capture.release)


def _iterator_items(frames: Iterable[Any], fps: float | None) -> Iterator[tuple[Any, Any]]:
    for index, item in enumerate(frames):
        if isinstance(item, tuple):
            if len(item) != 2:
                raise ValueError(
                    f"item {index} of the stream is a tuple of {len(item)}; give frames or "
                    "(time in seconds, frame) pairs"
                )
            stamp, frame = item
            yield float(stamp), frame
        else:
            yield (None if fps is None else index / fps), item


def open_source(source: Any, fps: float | None = None) -> FrameSource:
    r"""Open a stream: an OpenCV capture (file, camera, URL) or an iterable of frames.

    Args:
        source: a video file (``str`` or ``PathLike``); a camera index (``int`` or a string
            of digits such as ``"0"``); a stream URL (``rtsp://``, ``http(s)://``, ``udp://``
            ...); or an iterable of ``uint8`` RGB ``(H, W, 3)`` frames (arrays or tensors)
            or of ``(time in seconds, frame)`` pairs. An ``(N, H, W, 3)`` array is N frames.
        fps (float, optional): the frame rate of an iterable of bare frames (their times are
            ``index / fps``; without it such an iterable is live and frames are timed as they
            arrive), or a rate that replaces what a file says. Default: None

    Returns:
        FrameSource: the opened source.

    Raises:
        FileNotFoundError, IsADirectoryError, PermissionError: a file that cannot be read.
        ValueError: OpenCV cannot open the file, camera or URL, or ``fps`` is not positive.
        TypeError: ``source`` is none of the above.

    Example::

        >>> source = open_source("street.mp4")
        >>> source.fps, source.live
        (25.0, False)
    """
    if fps is not None and (not math.isfinite(fps) or fps <= 0):
        raise ValueError(f"fps must be a finite positive frame rate, got {fps}")
    if isinstance(source, bool):
        raise TypeError("source must be a file, a camera index, a URL or frames, got a bool")
    if isinstance(source, (int, np.integer)):
        return _open_capture(int(source), fps)
    if isinstance(source, str) and source.strip().isdigit():
        return _open_capture(int(source.strip()), fps)
    if isinstance(source, (str, os.PathLike)):
        return _open_capture(os.fspath(source), fps)
    if isinstance(source, np.ndarray) and source.ndim == 4:
        source = list(source)
    if isinstance(source, Iterable):
        total = len(source) if hasattr(source, "__len__") else None  # type: ignore[arg-type]
        # Live until the first item says otherwise (a pair carries its time).
        return FrameSource("iterator", fps is None, fps, total, _iterator_items(source, fps))
    raise TypeError(
        "source must be a video file, a camera index, a stream URL, or an iterable of uint8 "
        f"RGB frames or (time, frame) pairs; got {type(source).__name__}"
    )

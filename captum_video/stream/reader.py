r"""The reader of a stream: frames into a ring buffer, a window every ``stride`` frames.

Runs in its own thread (:class:`~captum_video.stream.StreamExplainer` starts it). In real time
it never waits for the explainer: a window that finds the queue full pushes out the oldest
waiting one, or (``policy="adapt"``) the stride grows so windows are formed no faster than they
are explained.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from captum_video.stream.queues import WindowQueue
from captum_video.stream.results import RunState
from captum_video.stream.sources import FrameSource

__all__ = ["ADAPT_HEADROOM", "Window", "WindowReader"]

#: ``"adapt"`` keeps the window interval this much above the explanation time.
ADAPT_HEADROOM = 1.15


@dataclass
class Window:
    """One window of a stream, as the reader formed it.

    Args:
        index (int): 0-based window number.
        start (int): its first frame's 0-based index in the stream.
        frames (np.ndarray): ``(T, H, W, 3)`` uint8 RGB frames.
        times (list of float): each frame's time in seconds.
        arrival (float): ``time.perf_counter()`` when its last frame arrived.
        stride (int): the stride in force when it was formed.

    Returns:
        A Window.

    Example::

        >>> w = Window(0, 0, np.zeros((8, 4, 4, 3), np.uint8), [0.0] * 8, 0.0, 4)
        >>> w.frames.shape[0]
        8
    """

    index: int
    start: int
    frames: np.ndarray
    times: list[float]
    arrival: float
    stride: int


class WindowReader:
    """Forms the windows of a stream from its frames (the reader thread's work).

    Args:
        clip_frames (int): frames per window.
        size (tuple of int): ``(H, W)`` frames are resized to.
        stride (int): frames between window starts (the least, under ``"adapt"``).
        policy (str): ``"skip"`` or ``"adapt"``.
        duration (float or None): seconds of the source after which reading stops.
        stop_event (threading.Event): set when the stream should end.
        request_stop (callable): ``reason -> None``, ends the stream with a reason.
        note_end (callable): called when the source ended by itself.

    Returns:
        A WindowReader; :meth:`run` reads.

    Example::

        >>> reader = WindowReader(16, (32, 32), 8, "skip", None, threading.Event(),
        ...                       lambda reason: None, lambda: None)
    """

    def __init__(
        self,
        clip_frames: int,
        size: tuple[int, int],
        stride: int,
        policy: str,
        duration: float | None,
        stop_event: threading.Event,
        request_stop: Callable[[str], None],
        note_end: Callable[[], None],
    ) -> None:
        self.clip_frames, self.size, self.stride = clip_frames, size, stride
        self.policy, self.duration = policy, duration
        self.stop_event, self.request_stop, self.note_end = stop_event, request_stop, note_end

    def run(
        self, source: FrameSource, realtime: bool, windows: WindowQueue[Window], state: RunState
    ) -> None:
        """Read ``source`` to its end or a stop, putting each window formed into ``windows``.

        Args:
            source (FrameSource): the opened source; closed when reading ends.
            realtime (bool): drop the oldest waiting window instead of waiting (see
                :class:`~captum_video.stream.StreamExplainer`).
            windows (WindowQueue): where windows go; closed when reading ends.
            state (RunState): the stream's shared counters; an error is recorded there.

        Returns:
            None
        """
        summary = state.summary
        ring: deque[np.ndarray] = deque(maxlen=self.clip_frames)
        times: deque[float] = deque(maxlen=self.clip_frames)
        next_start, last_start = 0, None
        first_time, previous_time = None, None
        main = threading.main_thread()
        try:
            for frame in source.frames(self.size, realtime, self.stop_event):  # type: ignore[arg-type]
                if not main.is_alive():  # the program is ending without closing the stream
                    self.request_stop("main thread ended")
                if self.stop_event.is_set():
                    break
                if first_time is None:
                    first_time = frame.time
                if self.duration is not None and frame.time - first_time >= self.duration:
                    self.request_stop("duration")
                    break
                if previous_time is not None and frame.time > previous_time:
                    state.note_interval(frame.time - previous_time)
                previous_time = frame.time
                ring.append(frame.image)
                times.append(frame.time)
                summary.frames_read += 1
                start = frame.index - self.clip_frames + 1
                if start >= next_start:
                    stride = self._stride_now(state, realtime, source)
                    self._submit(Window(summary.windows_formed, start, np.stack(ring),
                                         list(times), frame.arrival, stride),
                                 windows, realtime, state)  # fmt: skip
                    next_start, last_start = start + stride, start
            else:
                # Explaining every window of a finite source, one more ends at its last frame
                # (as in explain_video); a real-time stream simply ends.
                total = summary.frames_read
                if (not realtime and not self.stop_event.is_set() and total >= self.clip_frames
                        and (last_start or 0) + self.clip_frames < total):  # fmt: skip
                    self._submit(Window(summary.windows_formed, total - self.clip_frames,
                                         np.stack(ring), list(times), time.perf_counter(),
                                         self.stride),
                                 windows, realtime, state)  # fmt: skip
                self.note_end()  # the windows still waiting are explained
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            state.errors.append(err)
            self.request_stop("error")
        finally:
            source.close()
            state.add_stage("read", source.busy_seconds)
            windows.close()

    def _stride_now(self, state: RunState, realtime: bool, source: FrameSource) -> int:
        """The stride after the window being formed: the policy's, in real time."""
        stride = self.stride
        if realtime and self.policy == "adapt" and state.service > 0:
            rate = state.frame_rate() or source.fps
            if rate:
                stride = max(stride, math.ceil(ADAPT_HEADROOM * state.service * rate))
        summary = state.summary
        summary.stride_last, summary.stride_max = stride, max(summary.stride_max, stride)
        return stride

    def _submit(
        self, window: Window, windows: WindowQueue[Window], realtime: bool, state: RunState
    ) -> None:
        state.summary.windows_formed += 1
        lost = windows.put(window, drop_oldest=realtime, stop=self.stop_event)
        with state.lock:
            if realtime:
                state.summary.windows_skipped += len(lost)
            else:
                state.summary.windows_dropped_at_stop += len(lost)

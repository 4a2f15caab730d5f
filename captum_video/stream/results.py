"""What a stream hands out: per window a :class:`WindowResult`, at its end a :class:`StreamSummary`.

Latency percentiles are kept over the most recent windows (:class:`LatencyStats`, a fixed-size
record), so a stream that runs for days does not grow in memory; counts, the mean and the
maximum are over the whole stream.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from torch import Tensor

__all__ = ["LatencyStats", "RunState", "StreamSummary", "WindowResult", "window_result"]


@dataclass
class WindowResult:
    r"""One explained window of a stream.

    Frame indices and window indices count from 0 in the stream; times are seconds in the
    source. A window index counts every window the stream formed, so gaps show skipped ones.

    Attributes:
        window_index (int): the window's number among all windows formed.
        start_frame (int), end_frame (int): its frames, ``end_frame`` exclusive.
        start_time (float), end_time (float): times of its first and last frame.
        prediction (int): the predicted class; ``label`` (str) its name; ``probability``
            (float) its softmax probability.
        target (int): the explained class.
        probabilities (Tensor): softmax over the classes ``(K,)``.
        relevance (Tensor): ``(T, H, W)`` float32 relevance (channels summed), on the CPU.
        frames (ndarray): the window's ``uint8`` RGB frames ``(T, H, W, 3)``, as explained.
        frame_times (list of float): time of each frame.
        latency (float): seconds from the window's last frame arriving to its explanation
            being ready (waiting for the explainer included).
        explain_seconds (float): seconds the explanation itself took (prediction included,
            per window of its batch).
        stride (int): frames between this window's start and the next one's, as the policy
            set it.

    Example::

        >>> for result in StreamExplainer(model).run("street.mp4"):
        ...     print(result.window_index, result.label, f"{result.latency:.3f} s")
    """

    window_index: int
    start_frame: int
    end_frame: int
    start_time: float
    end_time: float
    prediction: int
    label: str
    probability: float
    target: int
    probabilities: Tensor
    relevance: Tensor
    frames: np.ndarray
    frame_times: list[float]
    latency: float
    explain_seconds: float
    stride: int

    def record(self) -> dict[str, Any]:
        """The JSON-ready facts of the window (no arrays), one line of ``windows.jsonl``."""
        return {
            "window_index": self.window_index,
            "start_frame": self.start_frame,
            "end_frame": self.end_frame,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "prediction": self.prediction,
            "label": self.label,
            "probability": self.probability,
            "target": self.target,
            "latency_s": self.latency,
            "explain_s": self.explain_seconds,
            "stride": self.stride,
        }


class LatencyStats:
    r"""Count, mean, maximum and percentiles of a stream of durations, in fixed memory.

    Args:
        recent (int, optional): durations kept for the percentiles. Default: 10000

    Returns:
        A recorder; :meth:`add` a duration, :meth:`summary` the figures.

    Example::

        >>> stats = LatencyStats()
        >>> for value in (0.1, 0.2, 0.3):
        ...     stats.add(value)
        >>> stats.summary()["p50"]
        0.2
    """

    def __init__(self, recent: int = 10_000) -> None:
        self.count = 0
        self.total = 0.0
        self.maximum = 0.0
        self._recent: deque[float] = deque(maxlen=recent)

    def add(self, seconds: float) -> None:
        """Record one duration."""
        self.count += 1
        self.total += seconds
        self.maximum = max(self.maximum, seconds)
        self._recent.append(seconds)

    def summary(self) -> dict[str, float | int | None]:
        """``count``, ``mean``, ``p50``, ``p95``, ``p99``, ``max`` (seconds; None if empty)."""
        if not self.count:
            return {"count": 0, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}
        values = np.asarray(self._recent)
        p50, p95, p99 = (float(v) for v in np.percentile(values, [50, 95, 99]))
        return {
            "count": self.count,
            "mean": self.total / self.count,
            "p50": p50,
            "p95": p95,
            "p99": p99,
            "max": self.maximum,
        }


@dataclass
class StreamSummary:
    r"""How a stream went; written as ``stream.json`` (during the run too) and returned.

    Attributes:
        source (str), method (str), policy (str), realtime (bool): what ran.
        clip_frames (int), stride (int): the windows asked for; ``stride_last`` and
            ``stride_max`` are what the ``"adapt"`` policy made of the stride.
        fps (float or None): the source's frame rate when known.
        frames_read (int): frames that arrived.
        windows_formed (int): windows the ring buffer formed; each was ``explained``,
            ``skipped`` (the real-time policy dropped it) or ``dropped_at_stop`` (waiting
            when the stream stopped).
        windows_explained (int), windows_skipped (int), windows_dropped_at_stop (int).
        latency_s (dict): window latency, last frame in to explanation out: ``count``,
            ``mean``, ``p50``, ``p95``, ``p99``, ``max`` (percentiles over the last 10000).
        explain_s (dict): the same for the explanation's own time.
        stage_s (dict): seconds spent per stage: ``read`` (decoding and resizing), ``explain``,
            ``render`` (overlays and captions), ``encode`` (video), ``tensorboard``,
            ``json``; the stages overlap, since each runs in its own thread.
        wall_s (float): seconds from start to end; ``explained_per_s`` windows per second.
        stopped_by (str): ``"end of source"``, ``"stop()"``, ``"KeyboardInterrupt"``,
            ``"max_windows"``, ``"duration"``, ``"error"`` or ``"running"``.
        error (str or None): the error that ended the stream.
        finished (bool): False while running (a ``stream.json`` read mid-stream).
        files (dict): name -> path of what was written.

    Example::

        >>> summary = StreamExplainer(model, out_dir="out").explain("street.mp4")
        >>> summary.windows_explained, summary.latency_s["p95"]
        (42, 0.21)
    """

    source: str
    method: str
    policy: str
    realtime: bool
    clip_frames: int
    stride: int
    stride_last: int = 0
    stride_max: int = 0
    fps: float | None = None
    frames_read: int = 0
    windows_formed: int = 0
    windows_explained: int = 0
    windows_skipped: int = 0
    windows_dropped_at_stop: int = 0
    latency_s: dict[str, Any] = field(default_factory=dict)
    explain_s: dict[str, Any] = field(default_factory=dict)
    stage_s: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    explained_per_s: float = 0.0
    stopped_by: str = "running"
    error: str | None = None
    finished: bool = False
    files: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, saying how frames and windows are numbered."""
        return {
            "numbering": "frames and windows from 0 in the stream; times in seconds",
            **asdict(self),
        }


class RunState:
    """What the threads of a stream share while it runs: the summary's counters, timings and
    the real-time policy's estimates; :meth:`snapshot` and :meth:`finish` fill the summary.

    Args:
        summary (StreamSummary): the summary to fill.
        stride (int): the stride asked for.

    Returns:
        A RunState.

    Example::

        >>> summary = StreamSummary("camera 0", "gradcam_tube", "skip", True, 16, 8)
        >>> state = RunState(summary, stride=8)
        >>> state.add_stage("explain", 0.2)
        >>> state.snapshot().stage_s
        {'explain': 0.2}
    """

    def __init__(self, summary: StreamSummary, stride: int) -> None:
        self.summary = summary
        self.lock = threading.Lock()
        self.latency = LatencyStats()
        self.explain = LatencyStats()
        self.stages: dict[str, float] = {}
        self.errors: list[BaseException] = []
        self.service = 0.0  # seconds per window, moving average
        self._interval = 0.0  # seconds between frames, moving average
        self.started = time.perf_counter()
        self.consumer_gone = False

    def add_stage(self, stage: str, seconds: float) -> None:
        with self.lock:
            self.stages[stage] = self.stages.get(stage, 0.0) + seconds

    def note_service(self, seconds: float) -> None:
        self.service = seconds if not self.service else 0.7 * self.service + 0.3 * seconds

    def note_interval(self, seconds: float) -> None:
        self._interval = seconds if not self._interval else 0.9 * self._interval + 0.1 * seconds

    def frame_rate(self) -> float | None:
        return 1.0 / self._interval if self._interval > 0 else None

    def snapshot(self) -> StreamSummary:
        """The summary with the figures so far (counts are read without stopping the threads)."""
        self._fill()
        return self.summary

    def _fill(self) -> None:
        summary = self.summary
        summary.latency_s = self.latency.summary()
        summary.explain_s = self.explain.summary()
        with self.lock:
            summary.stage_s = {k: round(v, 6) for k, v in self.stages.items()}
        summary.wall_s = time.perf_counter() - self.started
        summary.explained_per_s = summary.windows_explained / max(summary.wall_s, 1e-9)
        if self.errors:
            summary.error = f"{type(self.errors[0]).__name__}: {self.errors[0]}"

    def finish(self, reason: str) -> None:
        self._fill()
        self.summary.stopped_by = "error" if self.errors else reason
        self.summary.finished = True


def window_result(
    window: Any,
    probs: Tensor,
    relevance: Tensor,
    ready: float,
    seconds: float,
    clip_frames: int,
    target: str | int,
    class_names: Sequence[str] | None,
) -> WindowResult:
    """The :class:`WindowResult` of an explained window.

    Args:
        window (Window): the window as the reader formed it
            (:class:`~captum_video.stream.reader.Window`).
        probs (Tensor): its class probabilities ``(K,)``.
        relevance (Tensor): its relevance ``(T, H, W)``.
        ready (float): ``time.perf_counter()`` when the explanation was ready.
        seconds (float): the explanation's own time for this window.
        clip_frames (int): frames per window.
        target (str or int): ``"prediction"`` or the class explained.
        class_names (sequence of str, optional): names of the classes.

    Returns:
        WindowResult: the result, latency measured from the window's last frame.

    Example::

        >>> result = window_result(window, probs, relevance, time.perf_counter(), 0.02, 16,
        ...                        "prediction", ["left", "right"])  # doctest: +SKIP
    """
    probability, prediction = (float(v) for v in probs.max(0))
    cls = int(prediction)
    return WindowResult(
        window_index=window.index,
        start_frame=window.start,
        end_frame=window.start + clip_frames,
        start_time=window.times[0],
        end_time=window.times[-1],
        prediction=cls,
        label=class_names[cls] if class_names and cls < len(class_names) else str(cls),
        probability=probability,
        target=cls if target == "prediction" else int(target),
        probabilities=probs,
        relevance=relevance,
        frames=window.frames,
        frame_times=window.times,
        latency=ready - window.arrival,
        explain_seconds=seconds,
        stride=window.stride,
    )

r"""Explain a live stream window by window, without falling behind it.

:class:`StreamExplainer` runs three threads joined by bounded queues::

    reader ──(WindowQueue, drop-oldest in real time)──> explainer ──(queue)──> writer ──> run()
    frames in, ring buffer,                             prediction and         overlay video,
    a window every `stride` frames                      relevance per window   TensorBoard, JSON

The reader keeps the last ``clip_frames`` frames in a ring buffer and forms a window every
``stride`` frames. Decoding, explaining and writing overlap (OpenCV, torch and the encoder
release the GIL), so the stream's throughput is that of its slowest stage, the explanation.

**Real time.** With ``realtime=True`` the reader never waits for the explainer. A window that
finds the queue full pushes out the oldest waiting one (``policy="skip"``: the stream explains
the newest windows and counts what it skipped), or, with ``policy="adapt"``, the stride grows to
``ceil(1.15 x explanation time x frame rate)`` frames (and shrinks back, never below the stride
asked for) so that windows are formed no faster than they are explained; what still overflows
is skipped. Either way a window's latency, from its last frame arriving to its explanation
being ready, stays near one explanation time however long the stream runs. With
``realtime=False`` (meant for files and iterators) the reader waits instead, every window is
explained (at the end of the source one more window ends at its last frame, as in
:func:`~captum_video.timeline.explain_video`), and a file is read as fast as it decodes.

**Stopping.** :meth:`StreamExplainer.stop` (from any thread or a callback), Ctrl-C
(``KeyboardInterrupt`` in the main thread, also raised from an ``on_window`` callback),
``max_windows``, ``duration`` or the end of the source end the stream cleanly: the reader stops,
the window being explained is finished and written, the windows still waiting are counted as
dropped, the video file is closed, TensorBoard flushed and ``stream.json`` written, and then
the interrupt is raised again. If the main thread ends without closing the stream, the reader
notices and the threads end the same way.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from captum_video._model_state import module_device
from captum_video.explainers import Explainer, make_explainer
from captum_video.io import video_preprocessor
from captum_video.registry import class_names_of, input_size_of
from captum_video.relevance import reduce_channels
from captum_video.stream.outputs import OVERLAY_PIXELS, StreamOutputs
from captum_video.stream.queues import END, POLL_SECONDS, WindowQueue
from captum_video.stream.reader import Window, WindowReader
from captum_video.stream.results import RunState, StreamSummary, WindowResult, window_result
from captum_video.stream.sources import FrameSource, open_source
from captum_video.stream.writer import ResultWriter

__all__ = ["POLICIES", "StreamExplainer", "explain_stream"]

#: Real-time policies: what happens when windows come faster than they are explained.
POLICIES = ("skip", "adapt")
_READER_GRACE = 2.0  # seconds a stopped reader gets to finish before the files are closed


class StreamExplainer:
    r"""Explain frames as they arrive, window by window, in real time.

    Args:
        model (nn.Module): the video classifier (``(N, C, T, H, W)`` input; adapt other
            layouts with :func:`captum_video.registry.adapt`), on its device.
        method (str or callable, optional): a name of
            :data:`captum_video.explainers.EXPLAINERS`, or an explainer
            ``explain(clips (N, C, T, H, W), target (N,)) -> relevance (N, C', T, H, W)``.
            Default: ``"gradcam_tube"``
        out_dir (str or PathLike, optional): where to write ``overlay.mp4`` (original |
            overlay, captioned), ``tensorboard/``, ``windows.jsonl`` and ``stream.json``;
            None writes nothing. Default: None
        layer (nn.Module, optional): layer of layer methods; default the registry's.
        clip_frames (int, optional): frames per window; default the model's clip length.
        stride (int, optional): frames between window starts, ``>= 1`` (above
            ``clip_frames`` some frames are never explained). Default: half a window
        size (tuple of int, optional): ``(H, W)`` frames are resized to; default the model's.
        policy (str, optional): ``"skip"`` or ``"adapt"`` (see the module's description).
            Default: ``"skip"``
        target (str or int, optional): ``"prediction"`` or a class index.
            Default: ``"prediction"``
        preprocess (str or callable, optional): ``"auto"`` (the registry's normalisation), a
            preset name, None, or ``x -> x'`` on clips in ``[0, 1]``. Default: ``"auto"``
        class_names (sequence of str, optional): default the registry's for the model.
        tensorboard_every (int, optional): log every k-th explained window to TensorBoard;
            0 logs none. Default: 1
        overlay_format (str or None, optional): ``".mp4"``, ``".webm"`` or None (no video).
            Default: ``".mp4"``
        overlay_pixels (int, optional): the video is drawn at least this many pixels high
            (integer zoom of the model's frames; smaller encodes faster). Default: 256
        max_windows (int, optional): stop after this many explained windows. Default: None
        duration (float, optional): stop after this many seconds of the source. Default: None
        on_window (callable, optional): called with each :class:`WindowResult`, in the thread
            that iterates :meth:`run` (the main thread for :meth:`explain`). Default: None
        batch_size (int, optional): windows explained together when several wait (only
            without real time do several wait). Default: 1
        warmup (bool, optional): explain one blank window before reading, so the first
            window's latency does not include one-off costs. Default: True
        **method_kwargs: passed to :func:`~captum_video.explainers.make_explainer`.

    Returns:
        A stream explainer; :meth:`run` iterates results, :meth:`explain` runs to the end.

    Raises:
        ValueError, TypeError: bad options (what came and what is expected).

    Example::

        >>> from captum_video.models import load_demo_model
        >>> stream = StreamExplainer(load_demo_model("motion"), out_dir="live")
        >>> for result in stream.run(0):  # camera 0; Ctrl-C or stream.stop() ends it
        ...     print(result.window_index, result.label, f"{result.latency * 1000:.0f} ms")
    """

    def __init__(
        self,
        model: nn.Module,
        method: str | Explainer = "gradcam_tube",
        out_dir: str | os.PathLike | None = None,
        *,
        layer: nn.Module | None = None,
        clip_frames: int | None = None,
        stride: int | None = None,
        size: tuple[int, int] | None = None,
        policy: str = "skip",
        target: str | int = "prediction",
        preprocess: Any = "auto",
        class_names: Sequence[str] | None = None,
        tensorboard_every: int = 1,
        overlay_format: str | None = ".mp4",
        overlay_pixels: int = OVERLAY_PIXELS,
        max_windows: int | None = None,
        duration: float | None = None,
        on_window: Callable[[WindowResult], Any] | None = None,
        batch_size: int = 1,
        warmup: bool = True,
        **method_kwargs: Any,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        native_t, native_h, native_w = input_size_of(model)
        self.clip_frames = int(clip_frames or native_t)
        self.stride = int(stride or max(1, self.clip_frames // 2))
        if self.clip_frames < 1 or self.stride < 1:
            raise ValueError(
                f"clip_frames and stride must be >= 1, got {self.clip_frames}, {self.stride}"
            )
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        if isinstance(target, str) and target != "prediction":
            raise ValueError(f"target must be 'prediction' or a class index, got {target!r}")
        for name, value in (("tensorboard_every", tensorboard_every), ("batch_size", batch_size)):
            if not isinstance(value, int) or value < (0 if name == "tensorboard_every" else 1):
                raise ValueError(f"{name} must be an int >= {int(name != 'tensorboard_every')}, "
                                 f"got {value!r}")  # fmt: skip
        if max_windows is not None and max_windows < 1:
            raise ValueError(f"max_windows must be >= 1, got {max_windows}")
        if duration is not None and not (math.isfinite(duration) and duration > 0):
            raise ValueError(f"duration must be a positive number of seconds, got {duration}")
        if overlay_format not in (None, ".mp4", ".webm"):
            raise ValueError(f"overlay_format must be '.mp4', '.webm' or None, got "
                             f"{overlay_format!r}")  # fmt: skip
        self.model = model
        self.size = tuple(size) if size is not None else (native_h, native_w)
        self.policy, self.target = policy, target
        self.prepare = video_preprocessor(preprocess, model)
        self.class_names = list(class_names) if class_names is not None else class_names_of(model)
        if callable(method) and not isinstance(method, str):
            self.method_name = getattr(method, "__name__", type(method).__name__)
            self.explain_fn: Explainer = method
        else:
            self.method_name = str(method)
            self.explain_fn = make_explainer(method, model, layer, **method_kwargs)
        self.out_dir = out_dir
        self.tensorboard_every = tensorboard_every
        self.overlay_format, self.overlay_pixels = overlay_format, overlay_pixels
        self.max_windows, self.duration = max_windows, duration
        self.on_window = on_window
        self.batch_size = batch_size
        self.warmup = warmup
        self.summary: StreamSummary | None = None
        self._stop = threading.Event()
        self._reason: str | None = None
        self._running = threading.Lock()

    # -- control -------------------------------------------------------------------------

    def stop(self, reason: str = "stop()") -> None:
        """End the stream soon (from any thread); the first reason given is kept.

        Args:
            reason (str, optional): what ``stream.json`` reports as ``stopped_by``.
                Default: ``"stop()"``

        Returns:
            None
        """
        if self._reason is None:
            self._reason = reason
        self._stop.set()

    def explain(
        self, source: Any, realtime: bool = True, fps: float | None = None
    ) -> StreamSummary:
        """Run the stream to its end (or a stop) and return its summary.

        Args:
            source, realtime, fps: as in :meth:`run`.

        Returns:
            StreamSummary: the figures, also in ``stream.json``.

        Example::

            >>> summary = StreamExplainer(model, out_dir="out").explain("clip.mp4")
        """
        for _ in self.run(source, realtime=realtime, fps=fps):
            pass
        assert self.summary is not None
        return self.summary

    def run(
        self, source: Any, realtime: bool = True, fps: float | None = None
    ) -> Iterator[WindowResult]:
        r"""Explain ``source`` window by window; yields each :class:`WindowResult` when written.

        Args:
            source: a video file, a camera index (``0`` or ``"0"``), a stream URL, or an
                iterable of ``uint8`` RGB ``(H, W, 3)`` frames or ``(time, frame)`` pairs
                (:func:`~captum_video.stream.open_source`).
            realtime (bool, optional): keep up with the source, skipping (or spacing) windows
                as the policy says; a file or a timed iterator is played at its own rate.
                False: explain every window, reading as fast as the explainer goes.
                Default: True
            fps (float, optional): frame rate of an iterable of bare frames (or one that
                replaces a file's). Default: None

        Returns:
            iterator of WindowResult: in stream order. Leaving the loop early (``break``, an
            exception, Ctrl-C) stops the stream and finishes its files.

        Raises:
            RuntimeError: the explainer is already running a stream.
            Exception: what a thread raised (after the files are finished).
        """
        if not self._running.acquire(blocking=False):
            raise RuntimeError("this StreamExplainer is already running a stream")
        try:
            opened = open_source(source, fps=fps)
            yield from self._run(opened, realtime)
        finally:
            self._running.release()

    # -- the pipeline --------------------------------------------------------------------

    def _run(self, source: FrameSource, realtime: bool) -> Iterator[WindowResult]:
        self._stop.clear()
        self._reason = None
        summary = StreamSummary(
            source=source.description, method=self.method_name, policy=self.policy,
            realtime=realtime, clip_frames=self.clip_frames, stride=self.stride,
            stride_last=self.stride, stride_max=self.stride, fps=source.fps,
        )  # fmt: skip
        self.summary = summary
        state = RunState(summary, self.stride)
        windows: WindowQueue[Window] = WindowQueue(max(1, self.batch_size))
        explained: queue.Queue[Any] = queue.Queue(maxsize=4)
        results: queue.Queue[Any] = queue.Queue(maxsize=4)
        outputs = None
        if self.out_dir is not None:
            outputs = StreamOutputs(
                self.out_dir, self.method_name, source.fps, self.class_names,
                self.overlay_format, self.tensorboard_every,
                lambda: source.total_frames, state.stages,
                self.overlay_pixels,
            )  # fmt: skip
            outputs.write_summary(summary)
        try:
            if self.warmup:
                self._warm_up(state)
        except BaseException:
            source.close()
            if outputs is not None:
                outputs.close(summary)
            raise
        state.started = time.perf_counter()
        threads = [
            threading.Thread(target=self._reader().run, args=(source, realtime, windows, state),
                             name="stream-reader"),
            threading.Thread(target=self._explain_windows, args=(windows, explained, state),
                             name="stream-explainer"),
            threading.Thread(target=self._writer().run,
                             args=(explained, results, outputs, state), name="stream-writer"),
        ]  # fmt: skip
        threads[0].daemon = True  # a source that never returns must not keep the program alive
        for thread in threads:
            thread.start()
        try:
            while True:
                try:
                    item = results.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                if item is END:
                    break
                if self.on_window is not None:
                    self.on_window(item)
                yield item
        except BaseException as err:
            self.stop(type(err).__name__ if isinstance(err, KeyboardInterrupt) else "closed")
            raise
        finally:
            state.consumer_gone = True
            self.stop("closed")  # no-op when the stream already ended or a reason is set
            for thread in threads[1:]:
                thread.join()
            threads[0].join(_READER_GRACE)
        if state.errors:
            raise state.errors[0]

    def _writer(self) -> ResultWriter:
        return ResultWriter(self.stop, lambda: self._reason or "end of source")

    def _reader(self) -> WindowReader:
        def note_end() -> None:
            if self._reason is None:
                self._reason = "end of source"

        return WindowReader(self.clip_frames, self.size, self.stride, self.policy,  # type: ignore[arg-type]
                            self.duration, self._stop, self.stop, note_end)  # fmt: skip

    def _warm_up(self, state: RunState) -> None:
        height, width = self.size
        blank = torch.zeros(1, 3, self.clip_frames, height, width, device=module_device(self.model))
        start = time.perf_counter()
        self._explain_batch(blank)
        state.service = time.perf_counter() - start

    def _explain_batch(self, clips: Tensor) -> tuple[Tensor, Tensor]:
        """Probabilities ``(B, K)`` and relevance ``(B, T, H, W)`` (float32, CPU)."""
        x = self.prepare(clips)
        with torch.no_grad():
            probs = self.model(x).float().softmax(-1)
        if self.target == "prediction":
            target = probs.argmax(1)
        else:
            target = torch.full((len(x),), int(self.target), dtype=torch.long, device=x.device)
        relevance = self.explain_fn(x, target).detach()
        return probs, reduce_channels(relevance.float())[:, 0].cpu()

    def _explain_windows(
        self, windows: WindowQueue[Window], explained: queue.Queue[Any], state: RunState
    ) -> None:
        summary = state.summary
        device = module_device(self.model)
        stopped_at = None
        try:
            while True:
                batch = windows.get_many(self.batch_size, timeout=POLL_SECONDS)
                if batch is None:
                    break
                if not batch:
                    # A reader stuck in a source that never returns must not hold the files.
                    if self._stop.is_set():
                        stopped_at = stopped_at or time.perf_counter()
                        if time.perf_counter() - stopped_at > _READER_GRACE:
                            break
                    continue
                if self._stop.is_set():
                    with state.lock:
                        summary.windows_dropped_at_stop += len(batch)
                    continue
                if self.max_windows is not None:
                    left = self.max_windows - summary.windows_explained
                    with state.lock:
                        summary.windows_dropped_at_stop += len(batch[left:])
                    batch = batch[:left]
                start = time.perf_counter()
                clips = torch.from_numpy(np.stack([w.frames for w in batch])).to(device)
                clips = clips.permute(0, 4, 1, 2, 3).float().div_(255.0)  # (B, C, T, H, W)
                probs, relevance = self._explain_batch(clips)
                ready = time.perf_counter()
                seconds = (ready - start) / len(batch)
                state.note_service(seconds)
                state.add_stage("explain", ready - start)
                for j, window in enumerate(batch):
                    result = window_result(
                        window, probs[j].cpu(), relevance[j], ready, seconds,
                        self.clip_frames, self.target, self.class_names,
                    )  # fmt: skip
                    state.latency.add(result.latency)
                    state.explain.add(seconds)
                    summary.windows_explained += 1
                    explained.put(result)
                if self.max_windows is not None and summary.windows_explained >= self.max_windows:
                    self.stop("max_windows")
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            state.errors.append(err)
            self.stop("error")
        finally:
            with state.lock:
                summary.windows_dropped_at_stop += len(windows.drain())
            explained.put(END)


def explain_stream(
    model: nn.Module,
    source: Any,
    method: str | Explainer = "gradcam_tube",
    out_dir: str | os.PathLike | None = None,
    realtime: bool = True,
    **options: Any,
) -> StreamSummary:
    r"""Explain a stream to its end (or Ctrl-C): :class:`StreamExplainer` in one call.

    Args:
        model (nn.Module): the classifier.
        source: a file, a camera index, a URL or an iterable of frames (see
            :meth:`StreamExplainer.run`).
        method (str or callable, optional): the method. Default: ``"gradcam_tube"``
        out_dir (str or PathLike, optional): where the outputs go. Default: None
        realtime (bool, optional): keep up with the source. Default: True
        **options: the other keywords of :class:`StreamExplainer` (and ``fps``).

    Returns:
        StreamSummary: the figures.

    Example::

        >>> summary = explain_stream(model, "rtsp://camera/stream", out_dir="live",
        ...                          duration=60)
    """
    fps = options.pop("fps", None)
    stream = StreamExplainer(model, method, out_dir, **options)
    return stream.explain(source, realtime=realtime, fps=fps)

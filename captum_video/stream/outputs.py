"""What a stream writes while it runs: the overlay video, TensorBoard steps, per-window records
and the ``stream.json`` summary, each readable at any moment.

The overlay video shows original | relevance for every frame of an explained window, captioned
with the method, the class and the frame's number and time in the source. Overlapping windows
are averaged per frame (:class:`~captum_video.timeline.WindowStitcher`) and a frame is drawn as
soon as no later window can cover it; frames of skipped windows are left out (their captions'
times show the jumps). Relevance is scaled by a decaying maximum of the windows' 99th
percentiles of ``|relevance|``: a stream has no "whole video" to normalise over, and a scale
fixed by the first window would wash out or saturate later scenes, while one scale per window
would make the colours of neighbouring windows incomparable.

TensorBoard gets one :func:`~captum_video.tensorboard.add_relevance_clip` per explained window
(or every k-th) at the window's index as step; the event file is flushed within a second by
the writer's own thread (a flush per step would make the stream wait for the disk), so the
plugin shows new steps on reload. ``windows.jsonl`` gets one line per window and ``stream.json`` is
replaced atomically (write, then rename) at most once a second and at the end, so a reader
never sees half a file.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from captum_video.stream.results import StreamSummary, WindowResult
from captum_video.tensorboard import add_relevance_clip
from captum_video.timeline import WindowStitcher
from captum_video.visualization import VideoEncoder, caption_frames
from captum_video.visualization.overlay import render_overlay, side_by_side, to_uint8

__all__ = ["StreamOutputs"]

#: Per window, the relevance scale keeps this share of the previous one at least.
SCALE_DECAY = 0.9
#: By default the overlay is drawn at least this many pixels high (nearest-neighbour zoom).
OVERLAY_PIXELS = 256


def _window_scale(relevance: torch.Tensor) -> float:
    """The 99th percentile of ``|relevance|`` (its maximum if that is 0; 0 if all zero)."""
    values = relevance.abs().flatten().float()
    if values.numel() > 100_000:
        values = values[:: values.numel() // 100_000 + 1]
    value = float(torch.quantile(values, 0.99))
    return value if value > 0 else float(values.max())


class StreamOutputs:
    r"""The files of one stream, fed one :class:`WindowResult` at a time (one thread only).

    Args:
        out_dir (str or PathLike): the folder; created.
        method (str): the method's name, for captions and the TensorBoard tag.
        fps (float or None): the source's frame rate (the video plays at it; 8 when unknown).
        class_names (sequence of str or None): labels for TensorBoard's top-5.
        overlay_format (str or None): ``".mp4"`` (H.264), ``".webm"`` or None for no video.
        tensorboard_every (int): log every k-th explained window; 0 logs none.
        total_frames (callable): ``() -> int or None``, the frames of the source when its
            length is known (files), for the captions' "frame i/n"; None for live sources.
        stage_seconds (dict): where the seconds per stage are added up.
        overlay_pixels (int, optional): draw the video at least this many pixels high (an
            integer zoom; frames and captions encode faster when smaller). Default: 256

    Returns:
        An output writer; :meth:`add` each result, :meth:`close` at the end.

    Example::

        >>> outputs = StreamOutputs("out", "gradcam_tube", 16.0, None, ".mp4", 1, lambda: 48,
        ...                         {})
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        method: str,
        fps: float | None,
        class_names: Any,
        overlay_format: str | None,
        tensorboard_every: int,
        total_frames: Callable[[], int | None],
        stage_seconds: dict[str, float],
        overlay_pixels: int = OVERLAY_PIXELS,
    ) -> None:
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.method, self.fps, self.class_names = method, fps, class_names
        self.tensorboard_every = tensorboard_every
        self.total_frames = total_frames
        self.stages = stage_seconds
        self.overlay_pixels = overlay_pixels
        self.files: dict[str, str] = {"json": str(self.out / "stream.json")}
        self._video_path = self.out / f"overlay{overlay_format}" if overlay_format else None
        self._encoder: VideoEncoder | None = None
        self._tensorboard: Any = None
        if tensorboard_every:
            from torch.utils.tensorboard import SummaryWriter  # slow import: not in the stream

            # Its own thread writes the events to disk within a second (flush_secs), so the
            # stream never waits for the disk and the plugin sees new steps on reload.
            self._tensorboard = SummaryWriter(str(self.out / "tensorboard"), flush_secs=1)
            self.files["tensorboard"] = str(self.out / "tensorboard")
        self._stitcher = WindowStitcher(1)
        self._offset = 0  # frame index of the stitcher's frame 0
        self._held: dict[int, tuple[np.ndarray, float, str]] = {}  # frame -> image, time, caption
        self._scale = 0.0
        self._explained = 0
        self._last_json = 0.0
        self._records = open(self.out / "windows.jsonl", "w")  # noqa: SIM115 - closed in close()
        self.files["windows"] = str(self.out / "windows.jsonl")

    def _time(self, stage: str, start: float) -> None:
        self.stages[stage] = self.stages.get(stage, 0.0) + time.perf_counter() - start

    def add(self, result: WindowResult, summary: StreamSummary) -> None:
        """Write what ``result`` finishes: frames, a TensorBoard step, a record, the summary.

        Args:
            result (WindowResult): the next explained window (in stream order).
            summary (StreamSummary): the stream's figures so far, for ``stream.json``.

        Returns:
            None
        """
        self._explained += 1
        if self._video_path is not None:
            self._add_frames(result)
        if self.tensorboard_every and (self._explained - 1) % self.tensorboard_every == 0:
            self._log(result)
        start = time.perf_counter()
        self._records.write(json.dumps(result.record()) + "\n")
        self._records.flush()
        if start - self._last_json >= 1.0:
            self.write_summary(summary)
            self._last_json = start
        self._time("json", start)

    def _add_frames(self, result: WindowResult) -> None:
        start, encoding = time.perf_counter(), self.stages.get("encode", 0.0)
        first, count = result.start_frame, result.end_frame - result.start_frame
        self._draw(self._stitcher.pop_final(first - self._offset))
        if not self._held:  # nothing overlaps: restart the stitcher here (no gap is stored)
            self._stitcher, self._offset = WindowStitcher(count), first
        elif self._stitcher.clip_frames != count:
            raise ValueError(
                f"window of {count} frames in a stream of {self._stitcher.clip_frames}"
            )
        self._stitcher.add(first - self._offset, result.relevance)
        self._scale = max(_window_scale(result.relevance), SCALE_DECAY * self._scale)
        caption = f"{self.method} | {result.label} (p={result.probability:.2f})"
        for offset in range(count):  # the latest window covering a frame names its class
            index = first + offset
            self._held[index] = (result.frames[offset], result.frame_times[offset], caption)
        encoded = self.stages.get("encode", 0.0) - encoding  # counted apart
        self._time("render", start + encoded)

    def _draw(self, finished: Any) -> None:
        """Render and encode the finished ``(frame index, relevance)`` pairs, in runs of frames
        that share a caption."""
        done = [(self._offset + i, m.numpy()) for i, m in finished]
        if not done:
            return
        images = np.stack([self._held[i][0] for i, _ in done])
        relevance = np.stack([m for _, m in done]).astype(np.float64)
        rgb = images.astype(np.float64) / 255.0
        norm = np.clip(np.abs(relevance) / (self._scale or 1.0), 0.0, 1.0)
        drawn = side_by_side(images, to_uint8(render_overlay(norm, rgb)))
        zoom = max(1, self.overlay_pixels // max(images.shape[1:3]))
        if zoom > 1:
            drawn = drawn.repeat(zoom, axis=1).repeat(zoom, axis=2)
        total = self.total_frames()
        begin = 0
        while begin < len(done):
            caption = self._held[done[begin][0]][2]
            end = begin
            while end < len(done) and self._held[done[end][0]][2] == caption:
                end += 1
            times = [self._held[i][1] for i, _ in done[begin:end]]
            # A live stream's length is not known: its captions say "frame 120", no "/n".
            part = caption_frames(
                drawn[begin:end],
                caption,
                times,
                first=done[begin][0],
                total=total,
                show_total=total is not None,
            )
            self._encode(part)
            begin = end
        for index, _ in done:
            del self._held[index]

    def _encode(self, frames: np.ndarray) -> None:
        start = time.perf_counter()
        if self._encoder is None:
            assert self._video_path is not None
            self._encoder = VideoEncoder(self._video_path, fps=self.fps or 8.0)
            self.files["overlay"] = str(self._video_path)
        self._encoder.write(frames)
        self._time("encode", start)

    def _log(self, result: WindowResult) -> None:
        start = time.perf_counter()
        clip = torch.from_numpy(result.frames).permute(3, 0, 1, 2).float() / 255.0  # (3, T, H, W)
        add_relevance_clip(
            self._tensorboard,
            f"stream/{self.method}",
            clip,
            result.relevance,
            global_step=result.window_index,
            target=result.target,
            prediction=result.probabilities,
            method=self.method,
            fps=self.fps or 8.0,
            extra={
                "start_time_s": round(result.start_time, 3),
                "latency_s": round(result.latency, 4),
            },
            class_names=self.class_names,
            frame_format="jpeg",
        )
        self._time("tensorboard", start)

    def write_summary(self, summary: StreamSummary) -> None:
        """Replace ``stream.json`` atomically with ``summary``."""
        summary.files = dict(self.files)
        path = self.out / "stream.json"
        temporary = path.with_name(".stream.json.tmp")
        temporary.write_text(json.dumps(summary.to_json(), indent=2))
        os.replace(temporary, path)

    def close(self, summary: StreamSummary) -> None:
        """Draw the last frames, close the video, flush TensorBoard, write ``stream.json``.

        Every step runs even if an earlier one fails; the first error is raised at the end.

        Args:
            summary (StreamSummary): the final figures.

        Returns:
            None
        """
        errors: list[BaseException] = []
        steps: list[Callable[[], Any]] = [
            lambda: self._draw(self._stitcher.pop_final(None)),
            lambda: self._encoder.close() if self._encoder is not None else None,
            lambda: self._tensorboard.close() if self._tensorboard is not None else None,
            self._records.close,
            lambda: self.write_summary(summary),
        ]
        for step in steps:
            try:
                step()
            except Exception as err:  # noqa: BLE001 - finish the other files first
                errors.append(err)
        if errors:
            raise errors[0]

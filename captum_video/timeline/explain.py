"""Explain a whole video as what it is: a sequence of moments.

:func:`explain_video` reads a video at a chosen frame rate (native by default), cuts it into
windows of the model's clip length with a stride, explains the windows in batches, and stitches
the results into one full-length relevance video (overlaps averaged), a per-window prediction
and probability track, and a relevance-over-time curve in seconds. Windows that span a scene
cut are flagged. Frames are decoded one at a time and finished frames go straight to disk, so
memory does not grow with the video's length.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from captum_video._model_state import module_device
from captum_video.explainers import make_explainer
from captum_video.io import video_preprocessor
from captum_video.registry import class_names_of, input_size_of
from captum_video.relevance import reduce_channels
from captum_video.timeline.frames import iter_video_frames
from captum_video.timeline.render import render_timeline
from captum_video.timeline.storage import NpyAppender
from captum_video.timeline.windows import SceneCutDetector, WindowStitcher

__all__ = ["VideoTimeline", "explain_video"]


@dataclass
class VideoTimeline:
    r"""What :func:`explain_video` found, and where it wrote it.

    Frame indices count from 0 (as in the arrays); every human-facing output (captions, the
    plot, the report) numbers frames from 1 and gives times in seconds.

    Attributes:
        video (str): the source file.
        method (str): the method's name.
        fps (float): frames per second of the explained sequence.
        num_frames (int): its length in frames.
        clip_frames (int), stride (int): the windows.
        frame_times (list of float): time of every frame, seconds.
        curve (list of float): relevance mass of every frame (sum of ``|relevance|``), divided
            by the largest frame's.
        windows (list of dict): per window: ``start_frame``, ``end_frame`` (exclusive),
            ``start_time``, ``end_time``, ``prediction``, ``label``, ``probability``,
            ``target``, ``target_probability``, ``scene_cut`` (a cut lies inside it).
        scene_cuts (list of int): frames that start a new scene.
        files (dict): name -> path of what was written (``relevance`` ``.npy`` ``(T, H, W)``
            float16, ``overlay`` video, ``plot``, ``json``).

    Example::

        >>> timeline = explain_video(model, "bikes.mp4", out_dir="bikes")
        >>> timeline.peak_time()
        4.2
    """

    video: str
    method: str
    fps: float
    num_frames: int
    clip_frames: int
    stride: int
    frame_times: list[float] = field(default_factory=list)
    curve: list[float] = field(default_factory=list)
    windows: list[dict[str, Any]] = field(default_factory=list)
    scene_cuts: list[int] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def peak_time(self) -> float:
        """The time in seconds of the frame holding the most relevance."""
        return self.frame_times[int(np.argmax(self.curve))]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, saying how frames are numbered."""
        return {"frame_numbering": "indices from 0; times in seconds", **asdict(self)}


@torch.no_grad()
def _predict(model: nn.Module, x: Tensor) -> Tensor:
    return model(x).float().softmax(-1)


def explain_video(
    model: nn.Module,
    video: str | os.PathLike,
    method: str = "gradcam_tube",
    out_dir: str | os.PathLike | None = None,
    *,
    layer: nn.Module | None = None,
    fps: float | None = None,
    clip_frames: int | None = None,
    stride: int | None = None,
    start: float | None = None,
    end: float | None = None,
    size: tuple[int, int] | None = None,
    batch_size: int = 8,
    target: str | int = "prediction",
    preprocess: Any = "auto",
    class_names: Sequence[str] | None = None,
    overlay_format: str = ".mp4",
    progress: bool = False,
    **method_kwargs: Any,
) -> VideoTimeline:
    r"""Explain every moment of a video: windows, stitched relevance, predictions over time.

    Args:
        model (nn.Module): the video classifier (taking ``(N, C, T, H, W)``; adapt other
            layouts with :func:`captum_video.registry.adapt`), on its device.
        video (str or PathLike): the video file.
        method (str, optional): a name of :data:`captum_video.explainers.EXPLAINERS`.
            Default: ``"gradcam_tube"``
        out_dir (str or PathLike, optional): where to write ``timeline.json``,
            ``relevance.npy``, the overlay video and ``timeline.png``; None writes nothing
            but the curve and tracks in the returned object. Default: None
        layer (nn.Module, optional): layer of layer methods; default the registry's.
        fps (float, optional): frame rate to read the video at; None keeps the native rate.
        clip_frames (int, optional): frames per window; default the model's clip length
            (:func:`~captum_video.registry.input_size_of`).
        stride (int, optional): frames between window starts; default half a window.
        start (float, optional), end (float, optional): the part to explain, in seconds.
        size (tuple of int, optional): ``(H, W)`` the model sees; default the model's.
        batch_size (int, optional): windows per batch. Default: 8
        target (str or int, optional): ``"prediction"`` (each window's predicted class) or a
            class index. Default: ``"prediction"``
        preprocess (str or callable, optional): ``"auto"`` (the registry's normalisation for
            the model), a preset name, None, or ``x -> x'`` applied to clips in ``[0, 1]``.
        class_names (sequence of str, optional): default the registry's for the model.
        overlay_format (str, optional): ``".mp4"`` (H.264) or ``".webm"``. Default: ``".mp4"``
        progress (bool, optional): show a progress bar. Default: False
        **method_kwargs: passed to :func:`~captum_video.explainers.make_explainer` (e.g.
            ``max_memory=``, or ``attribute`` keywords).

    Returns:
        VideoTimeline: the tracks and curve, and the files written.

    Raises:
        ValueError: the video is shorter than one window (the message says how to fit it),
            bad options, or an unreadable file (named).

    Example::

        >>> from captum_video.models import load_demo_model
        >>> timeline = explain_video(load_demo_model("motion"), "moving.mp4", out_dir="out")
        >>> [w["label"] for w in timeline.windows][:3]
        ['right', 'right', 'left']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    native_t, native_h, native_w = input_size_of(model)
    clip_frames = int(clip_frames or native_t)
    stride = int(stride or max(1, clip_frames // 2))
    if clip_frames < 1 or not 1 <= stride <= clip_frames:
        raise ValueError(
            f"clip_frames must be >= 1 and stride in [1, clip_frames] (so every frame is "
            f"explained), got clip_frames={clip_frames}, stride={stride}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(target, str) and target != "prediction":
        raise ValueError(f"target must be 'prediction' or a class index, got {target!r}")
    size = tuple(size) if size is not None else (native_h, native_w)  # type: ignore[assignment]
    prepare = video_preprocessor(preprocess, model)
    names = list(class_names) if class_names is not None else class_names_of(model)
    explain = make_explainer(method, model, layer, **method_kwargs)
    device = module_device(model)
    out = Path(out_dir) if out_dir is not None else None

    frames = iter_video_frames(video, fps=fps, size=size, start=start, end=end)  # type: ignore[arg-type]
    ring: deque[np.ndarray] = deque(maxlen=clip_frames)
    stitcher = WindowStitcher(clip_frames)
    cuts = SceneCutDetector()
    timeline = VideoTimeline(str(video), method, 0.0, 0, clip_frames, stride)
    pending: list[tuple[int, Tensor]] = []
    relevance_rows = NpyAppender(out / "relevance.npy", np.float16) if out else None
    frame_rows = NpyAppender(out / ".frames.npy", np.uint8) if out else None
    mass: list[float] = []

    def finish(before: int | None) -> None:
        for _, relevance in stitcher.pop_final(before):
            mass.append(float(relevance.abs().sum()))
            if relevance_rows is not None:
                relevance_rows.append(relevance.numpy())

    def run_batch() -> None:
        starts = [s for s, _ in pending]
        clips = torch.stack([c for _, c in pending]).to(device)  # (B, C, T, H, W)
        x = prepare(clips)
        probs = _predict(model, x)
        prob, pred = probs.max(1)
        tgt = pred if target == "prediction" else torch.full_like(pred, int(target))
        relevance = explain(x, tgt).detach()
        relevance = reduce_channels(relevance.float())[:, 0].cpu()  # (B, T, H, W)
        for j, first in enumerate(starts):
            stitcher.add(first, relevance[j])
            cls, tcls = int(pred[j]), int(tgt[j])
            timeline.windows.append(
                {
                    "start_frame": first,
                    "end_frame": first + clip_frames,
                    "prediction": cls,
                    "label": names[cls] if names and cls < len(names) else str(cls),
                    "probability": float(prob[j]),
                    "target": tcls,
                    "target_probability": float(probs[j, tcls]),
                }
            )
            finish(first + 1 if j + 1 == len(starts) else starts[j + 1])
        pending.clear()

    bar = tqdm(desc="explain video", unit="frame", disable=not progress)
    try:
        last_start = None
        for frame in frames:
            timeline.frame_times.append(frame.time)
            if cuts.update(frame.image):
                timeline.scene_cuts.append(frame.index)
            if frame_rows is not None:
                frame_rows.append(frame.image)
            ring.append(frame.image)
            bar.update(1)
            first = frame.index - clip_frames + 1
            if first >= 0 and first % stride == 0:
                pending.append((first, _to_clip(ring)))
                last_start = first
                if len(pending) == batch_size:
                    run_batch()
        total = len(timeline.frame_times)
        if total < clip_frames:
            raise ValueError(
                f"{video} gives {total} frames{'' if fps is None else f' at {fps} fps'} in the "
                f"requested range, fewer than one window of {clip_frames} frames; use a longer "
                "range, a higher fps, or a smaller clip_frames"
            )
        if last_start is None or last_start + clip_frames < total:  # cover the last frames
            pending.append((total - clip_frames, _to_clip(ring)))
        if pending:
            run_batch()
        finish(None)
    finally:
        bar.close()
        for rows in (relevance_rows, frame_rows):
            if rows is not None:
                rows.close()
    timeline.num_frames = total
    timeline.fps = fps or _native_rate(timeline.frame_times)
    peak = max(mass) if mass and max(mass) > 0 else 1.0
    timeline.curve = [m / peak for m in mass]
    cut_set = set(timeline.scene_cuts)
    for window in timeline.windows:
        s, e = window["start_frame"], window["end_frame"]
        window["start_time"] = timeline.frame_times[s]
        window["end_time"] = timeline.frame_times[e - 1]
        window["scene_cut"] = any(s < c < e for c in cut_set)
    if out is not None:
        timeline.files = render_timeline(timeline, out, overlay_format)
        (out / ".frames.npy").unlink(missing_ok=True)
        json_path = out / "timeline.json"
        timeline.files["json"] = str(json_path)
        json_path.write_text(json.dumps(timeline.to_json(), indent=2))
    return timeline


def _to_clip(frames: deque[np.ndarray]) -> Tensor:
    """``(T, H, W, 3)`` uint8 frames -> ``(3, T, H, W)`` float in ``[0, 1]``."""
    array = np.stack(list(frames))
    return torch.from_numpy(array).permute(3, 0, 1, 2).float().div_(255.0)


def _native_rate(times: Sequence[float]) -> float:
    if len(times) < 2:
        return 0.0
    return float((len(times) - 1) / max(times[-1] - times[0], 1e-9))

"""Views of a whole-video timeline: the overlay video and the timeline plot.

Both read the stored relevance and frames from disk in blocks, so a video of any length is
drawn in constant memory. The overlay uses one colour scale for the whole video (a high
percentile of the relevance's magnitude), so equal colours mean equal relevance at every time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from captum_video.visualization.captions import caption_frames
from captum_video.visualization.encode import VideoEncoder
from captum_video.visualization.overlay import render_overlay, side_by_side, to_uint8

if TYPE_CHECKING:
    from captum_video.timeline.explain import VideoTimeline

__all__ = ["render_timeline"]

_BLOCK = 64  # frames drawn at a time


def _scale(relevance: np.ndarray) -> float:
    """The 99th percentile of ``|relevance|`` on a sample of frames (1 if all zero)."""
    step = max(1, len(relevance) // 64)
    sample = np.abs(relevance[::step].astype(np.float32))
    value = float(np.quantile(sample, 0.99)) if sample.size else 0.0
    if value <= 0:
        value = float(sample.max()) if sample.size else 0.0
    return value if value > 0 else 1.0


def _window_captions(timeline: VideoTimeline) -> list[str]:
    """Per frame: the method and the prediction of the latest window covering it."""
    captions = [timeline.method] * timeline.num_frames
    for window in timeline.windows:
        text = f"{timeline.method} | {window['label']} (p={window['probability']:.2f})"
        for index in range(window["start_frame"], window["end_frame"]):
            captions[index] = text
    return captions


def render_timeline(
    timeline: VideoTimeline, out: Path, overlay_format: str = ".mp4"
) -> dict[str, str]:
    """Write the overlay video (original | relevance, captioned) and the timeline plot.

    Args:
        timeline (VideoTimeline): a finished timeline whose ``relevance.npy`` and
            ``.frames.npy`` are in ``out``.
        out (Path): the output folder.
        overlay_format (str, optional): ``".mp4"`` or ``".webm"``. Default: ``".mp4"``

    Returns:
        dict: ``{"relevance", "overlay", "plot"}`` -> path.

    Example::

        >>> files = render_timeline(timeline, Path("out"))
    """
    relevance = np.load(out / "relevance.npy", mmap_mode="r")
    frames = np.load(out / ".frames.npy", mmap_mode="r")
    scale = _scale(relevance)
    captions = _window_captions(timeline)
    times = timeline.frame_times
    zoom = max(1, 256 // max(frames.shape[1:3]))
    overlay_path = out / f"overlay{overlay_format}"
    with VideoEncoder(overlay_path, fps=timeline.fps or 8.0) as encoder:
        for first in range(0, len(frames), _BLOCK):
            block = slice(first, min(first + _BLOCK, len(frames)))
            rgb = frames[block].astype(np.float64) / 255.0
            norm = np.clip(np.abs(relevance[block].astype(np.float64)) / scale, 0.0, 1.0)
            drawn = side_by_side(to_uint8(rgb), to_uint8(render_overlay(norm, rgb)))
            if zoom > 1:
                drawn = drawn.repeat(zoom, axis=1).repeat(zoom, axis=2)
            # One caption call per run of frames that share the window's caption.
            start = block.start
            while start < block.stop:
                stop = start
                while stop < block.stop and captions[stop] == captions[start]:
                    stop += 1
                part = drawn[start - block.start : stop - block.start]
                encoder.write(
                    caption_frames(
                        part, captions[start], times[start:stop], first=start,
                        total=timeline.num_frames,
                    )
                )  # fmt: skip
                start = stop
    plot_path = out / "timeline.png"
    _plot(timeline, plot_path)
    return {
        "relevance": str(out / "relevance.npy"),
        "overlay": str(overlay_path),
        "plot": str(plot_path),
    }


def _plot(timeline: VideoTimeline, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    times = np.asarray(timeline.frame_times)
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 4.5), sharex=True, gridspec_kw={"height_ratios": [2, 1]}
    )
    top.plot(times, timeline.curve, color="#c62828", lw=1.5)
    top.set_ylabel("relevance\n(of the peak frame)")
    top.set_title(f"{Path(timeline.video).name}: {timeline.method}, {timeline.num_frames} frames")
    labels: dict[str, Any] = {}
    palette = plt.get_cmap("tab10")
    for window in timeline.windows:
        colour = labels.setdefault(window["label"], palette(len(labels) % 10))
        bottom.plot(
            [window["start_time"], window["end_time"]],
            [window["probability"]] * 2,
            color=colour,
            lw=4,
            solid_capstyle="butt",
            label=window["label"],
        )
    handles = {h.get_label(): h for h in bottom.get_lines()}
    bottom.legend(handles.values(), handles.keys(), fontsize=7, ncol=4, loc="lower right")
    bottom.set_ylim(0, 1.05)
    bottom.set_ylabel("prediction\nprobability")
    bottom.set_xlabel("time (s)")
    for cut in timeline.scene_cuts:
        for axis in (top, bottom):
            axis.axvline(times[cut], color="black", ls="--", lw=0.8)
    if timeline.scene_cuts:
        top.text(times[timeline.scene_cuts[0]], 1.0, " scene cut", va="top", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)

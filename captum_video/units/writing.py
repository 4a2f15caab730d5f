"""Writing optimised unit clips: one video file per unit, TensorBoard, and a channel grid.

The clips of :class:`~captum_video.units.ClipVisualization` are ordinary ``[0, 1]`` clips, so
they go through the package's own writers: :func:`~captum_video.visualization.write_video`
(H.264 MP4, VP8 WebM, GIF, AVI, with a caption strip naming the unit) and
:func:`~captum_video.tensorboard.add_relevance_clip`, which stores the frames for the
"Relevance Video" tab of the ``captum_video`` TensorBoard plugin. ``SummaryWriter.add_video``
is not used: it needs the ``moviepy`` package, which captum-video does not require.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from captum_video._scalars import validate_positive_int
from captum_video._validation import validate_video
from captum_video.tensorboard import add_relevance_clip
from captum_video.visualization import write_video

__all__ = ["clip_grid", "write_unit_clips", "add_unit_clips"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def _unit_clips(clips: Any) -> Tensor:
    if isinstance(clips, Tensor) and clips.dim() == 4:
        clips = clips[None]  # one clip (3, T, H, W)
    validate_video(clips, name="clips", channels=3)
    if clips.shape[0] == 0:
        raise ValueError("clips is empty: pass (N, 3, T, H, W) with N >= 1")
    return clips.detach().float().clamp(0.0, 1.0).cpu()


def _names(names: Sequence[str] | None, count: int) -> list[str]:
    if names is None:
        return [f"unit_{i}" for i in range(count)]
    names = [str(n) for n in names]
    if len(names) != count:
        raise ValueError(f"names has {len(names)} entries for {count} clips: pass one per clip")
    return names


def clip_grid(
    clips: Tensor, ncols: int | None = None, padding: int = 1, pad_value: float = 1.0
) -> Tensor:
    """Tile ``N`` clips into one clip, row by row, e.g. every channel of a layer.

    Args:
        clips (Tensor): ``(N, 3, T, H, W)``.
        ncols (int, optional): clips per row; default ``ceil(sqrt(N))``.
        padding (int, optional): pixels between tiles and around them. Default: 1
        pad_value (float, optional): value of the padding. Default: 1.0 (white)

    Returns:
        Tensor: ``(3, T, rows * (H + padding) + padding, ncols * (W + padding) + padding)``.

    Example::

        >>> clip_grid(torch.rand(8, 3, 4, 16, 16), ncols=4).shape
        torch.Size([3, 4, 35, 69])
    """
    clips = _unit_clips(clips)
    n, c, t, h, w = clips.shape
    ncols = validate_positive_int(ncols, "ncols") if ncols is not None else math.ceil(n**0.5)
    padding = validate_positive_int(padding, "padding", minimum=0)
    nrows = math.ceil(n / ncols)
    grid = torch.full(
        (c, t, nrows * (h + padding) + padding, ncols * (w + padding) + padding),
        float(pad_value),
    )
    for i in range(n):
        top = padding + (i // ncols) * (h + padding)
        left = padding + (i % ncols) * (w + padding)
        grid[:, :, top : top + h, left : left + w] = clips[i]
    return grid


def write_unit_clips(
    clips: Tensor,
    folder: str | os.PathLike,
    names: Sequence[str] | None = None,
    fps: float = 8.0,
    scale: int = 4,
    suffix: str = ".mp4",
    caption: bool = True,
) -> list[Path]:
    """Write one video file per optimised clip, ``<folder>/<name><suffix>``.

    Args:
        clips (Tensor): ``(N, 3, T, H, W)`` in ``[0, 1]``.
        folder (str or PathLike): the output folder (created).
        names (sequence of str, optional): one name per clip, e.g. ``"layer3_ch5"`` or a class
            name; used for the caption and, with characters other than letters, digits,
            ``_`` and ``-`` replaced by ``_``, for the file name. Default: ``unit_<i>``
        fps (float, optional): frames per second. Default: 8.0
        scale (int, optional): nearest-neighbour up-scaling (tiny clips play too small
            otherwise). Default: 4
        suffix (str, optional): ``".mp4"``, ``".webm"``, ``".gif"`` or ``".avi"``.
            Default: ``".mp4"``
        caption (bool, optional): a strip on top naming the unit and the frame. Default: True

    Returns:
        list of pathlib.Path: the files, in the order of ``clips``.

    Example::

        >>> clips = ClipVisualization(load_demo_model("motion")).optimize(target=[0, 1])
        >>> write_unit_clips(clips, "units", names=["right", "left"], suffix=".gif")
        [PosixPath('units/right.gif'), PosixPath('units/left.gif')]
    """
    clips = _unit_clips(clips)
    labels = _names(names, clips.shape[0])
    stems = [_UNSAFE.sub("_", label).strip("_") or f"unit_{i}" for i, label in enumerate(labels)]
    if len(set(stems)) != len(stems):
        raise ValueError(f"names give the same file name twice: {stems}; pass distinct names")
    out = Path(folder)
    paths = []
    for clip, label, stem in zip(clips, labels, stems, strict=True):
        frames = np.rint(clip.permute(1, 2, 3, 0).numpy() * 255.0).astype(np.uint8)
        paths.append(
            write_video(
                frames,
                out / f"{stem}{suffix}",
                fps=fps,
                scale=scale,
                caption=label if caption else None,
            )
        )
    return paths


def add_unit_clips(
    writer: Any,
    tag: str,
    clips: Tensor,
    names: Sequence[str] | None = None,
    global_step: int | None = None,
    fps: float = 8.0,
    attributions: Tensor | None = None,
) -> list[dict[str, Any]]:
    """Log optimised clips for the ``captum_video`` TensorBoard plugin, one tag per unit.

    Each clip is written with :func:`~captum_video.tensorboard.add_relevance_clip` under
    ``<tag>/<name>``, with ``method="ClipVisualization"`` and the unit's name in the info
    line. The plugin plays the clip as its "original" part; ``attributions`` (e.g. a saliency
    map of the unit on its own clip) become the relevance overlay, and without them the
    overlay is empty.

    Args:
        writer (SummaryWriter): a ``torch.utils.tensorboard.SummaryWriter``.
        tag (str): the tag prefix, e.g. ``"units/layer3"``.
        clips (Tensor): ``(N, 3, T, H, W)`` in ``[0, 1]``.
        names (sequence of str, optional): one name per clip. Default: ``unit_<i>``
        global_step (int, optional): the step, e.g. the training step. Default: None
        fps (float, optional): playback speed. Default: 8.0
        attributions (Tensor, optional): ``(N, C, T, H, W)`` relevance to overlay.
            Default: None

    Returns:
        list of dict: the headers :func:`~captum_video.tensorboard.add_relevance_clip` wrote.

    Example::

        >>> from torch.utils.tensorboard import SummaryWriter
        >>> clips = ClipVisualization(load_demo_model("motion")).optimize(target=[0, 1])
        >>> with SummaryWriter("runs/units") as writer:
        ...     headers = add_unit_clips(writer, "units/classes", clips, ["right", "left"])
    """
    clips = _unit_clips(clips)
    labels = _names(names, clips.shape[0])
    if attributions is not None and (
        not isinstance(attributions, Tensor)
        or attributions.dim() < 4
        or attributions.shape[0] != clips.shape[0]
    ):
        raise ValueError(
            f"attributions must be a tensor with one map per clip, ({clips.shape[0]}, C, T, H, W)"
        )
    tags = [f"{tag}/{_UNSAFE.sub('_', label)}" for label in labels]
    if len(set(tags)) != len(tags):
        raise ValueError(f"names give the same tag twice: {tags}; pass distinct names")
    headers = []
    for i, (clip, label, full_tag) in enumerate(zip(clips, labels, tags, strict=True)):
        attr = attributions[i] if attributions is not None else torch.zeros(clip.shape[1:])
        headers.append(
            add_relevance_clip(
                writer,
                full_tag,
                clip,
                attr,
                global_step=global_step,
                method="ClipVisualization",
                fps=fps,
                extra={"unit": label},
            )
        )
    return headers

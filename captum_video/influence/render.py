"""Showing explanation by example: a test clip beside its proponents and opponents.

The grid plays all clips in step: the first row is the test clip and its proponents, the
second (when opponents are given) its opponents, each tile captioned with what it is (the
clip's index in the training set, its label and TracIn score). Written as a video
(``.mp4``, ``.webm``, ``.gif``, ``.avi``) through
:func:`~captum_video.visualization.write_video`, or as a ``.png`` film strip: a few frames
spread over the clip, time running downwards.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from torch import Tensor

from captum_video._scalars import validate_positive_int
from captum_video.influence.tracin import InfluentialClips
from captum_video.visualization import caption_frames, write_video
from captum_video.visualization._inputs import video_frames
from captum_video.visualization.overlay import to_uint8

__all__ = ["influence_frames", "render_influence"]

_GAP = 4  # pixels between tiles


def _tile(clip: Any, caption: str, scale: int, name: str) -> np.ndarray:
    frames = to_uint8(video_frames(clip, name))
    frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    return caption_frames(frames, caption)


def _row(tiles: list[np.ndarray | None], shape: tuple[int, ...]) -> np.ndarray:
    count, height, width, _ = shape
    row = np.full((count, height, len(tiles) * (width + _GAP) - _GAP, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        if tile is not None:
            row[:, :, i * (width + _GAP) : i * (width + _GAP) + width] = tile
    return row


def influence_frames(
    test_clip: Any,
    proponent_clips: Sequence[Any],
    opponent_clips: Sequence[Any] = (),
    test_caption: str = "test",
    proponent_captions: Sequence[str] | None = None,
    opponent_captions: Sequence[str] | None = None,
    scale: int | None = None,
) -> np.ndarray:
    """Frames of a grid: the test clip and its proponents, its opponents below.

    Args:
        test_clip (Tensor): ``(C, T, H, W)`` in ``[0, 1]``.
        proponent_clips (sequence of Tensor): clips of the same shape.
        opponent_clips (sequence of Tensor, optional): clips of the same shape; a second
            row when given. Default: ``()``
        test_caption (str, optional): the test tile's caption. Default: ``"test"``
        proponent_captions, opponent_captions (sequence of str, optional): one per clip.
            Default: ``"proponent i"`` / ``"opponent i"``
        scale (int, optional): nearest-neighbour up-scaling of every tile. Default: None
            (tiles at least 160 pixels wide, so their captions can be read)

    Returns:
        ndarray: ``uint8`` ``(T, H', W', 3)``.

    Example::

        >>> frames = influence_frames(clip, [clips[3], clips[7]], [clips[5]], scale=2)
        >>> frames.shape[0] == clip.shape[1]
        True
    """
    if scale is None:
        scale = max(1, -(-160 // int(video_frames(test_clip, "test_clip").shape[2])))
    scale = validate_positive_int(scale, "scale")
    if not proponent_clips and not opponent_clips:
        raise ValueError("nothing to show: pass proponent_clips and/or opponent_clips")
    pro_caps = proponent_captions or [f"proponent {i + 1}" for i in range(len(proponent_clips))]
    opp_caps = opponent_captions or [f"opponent {i + 1}" for i in range(len(opponent_clips))]
    if len(pro_caps) != len(proponent_clips) or len(opp_caps) != len(opponent_clips):
        raise ValueError("give one caption per clip (proponent_captions, opponent_captions)")
    test = _tile(test_clip, test_caption, scale, "test_clip")
    pros = [
        _tile(clip, caption, scale, f"proponent_clips[{i}]")
        for i, (clip, caption) in enumerate(zip(proponent_clips, pro_caps, strict=True))
    ]
    opps = [
        _tile(clip, caption, scale, f"opponent_clips[{i}]")
        for i, (clip, caption) in enumerate(zip(opponent_clips, opp_caps, strict=True))
    ]
    named = [(f"proponent_clips[{i}]", t) for i, t in enumerate(pros)]
    named += [(f"opponent_clips[{i}]", t) for i, t in enumerate(opps)]
    for name, tile in named:
        if tile.shape != test.shape:
            raise ValueError(
                f"{name} must have the test clip's shape to play in step with it; got frames "
                f"(T, H, W) = {tile.shape[:3]} beside {test.shape[:3]} (scaled and captioned)"
            )
    width = 1 + max(len(pros), len(opps))
    rows = [_row([test, *pros, *[None] * (width - 1 - len(pros))], test.shape)]
    if opps:
        rows.append(_row([None, *opps, *[None] * (width - 1 - len(opps))], test.shape))
    if len(rows) == 1:
        return rows[0]
    gap = np.full((test.shape[0], _GAP, rows[0].shape[2], 3), 255, np.uint8)
    return np.concatenate([rows[0], gap, rows[1]], axis=1)


def _name(label: int, class_names: Sequence[str] | None) -> str:
    if class_names is not None and 0 <= label < len(class_names):
        return repr(class_names[label])
    return f"class {label}"


def render_influence(
    test_clip: Tensor,
    train_dataset: Any,
    proponents: InfluentialClips | None = None,
    opponents: InfluentialClips | None = None,
    index: int = 0,
    class_names: Sequence[str] | None = None,
    path: str | os.PathLike | None = None,
    fps: float = 4.0,
    scale: int | None = None,
    png_frames: int = 4,
) -> np.ndarray:
    """Render test clip ``index`` of a :class:`VideoTracIn` or :class:`VideoSimilarityInfluence`
    call beside its examples (captioned ``+1``, ``-1``, ... or ``near1``, ``far1``, ...).

    Args:
        test_clip (Tensor): the test clip ``(C, T, H, W)`` (or ``(1, C, T, H, W)``), in
            ``[0, 1]``.
        train_dataset (Dataset): the training set the indices point into (e.g.
            ``tracin.train_dataset``); item ``i`` is ``(clip, label, ...)``.
        proponents (InfluentialClips, optional): from ``tracin.proponents(...)`` or
            ``similar.most_similar(...)``.
        opponents (InfluentialClips, optional): from ``tracin.opponents(...)`` or
            ``similar.least_similar(...)``.
        index (int, optional): which test clip of those calls. Default: 0
        class_names (sequence of str, optional): names of the classes. Default: None
        path (str or PathLike, optional): also write the grid: a video (``.mp4``, ``.webm``,
            ``.gif``, ``.avi``) or a ``.png`` film strip. Default: None
        fps (float, optional): frame rate of a video file. Default: 4.0
        scale (int, optional): up-scaling of every tile. Default: None (tiles >= 160
            pixels wide)
        png_frames (int, optional): frames in a ``.png`` strip (spread over the clip).
            Default: 4

    Returns:
        ndarray: the grid's frames, ``uint8`` ``(T, H', W', 3)``.

    Example::

        >>> pro, opp = tracin.proponents(test, k=4), tracin.opponents(test, k=4)
        >>> render_influence(test[0], tracin.train_dataset, pro, opp, path="examples.mp4")
    """
    if proponents is None and opponents is None:
        raise ValueError("pass proponents and/or opponents (from VideoTracIn)")
    clip = test_clip[0] if isinstance(test_clip, Tensor) and test_clip.dim() == 5 else test_clip
    target = next(r for r in (proponents, opponents) if r is not None).targets
    if not 0 <= index < len(target):
        raise ValueError(f"index {index} is outside the {len(target)} test clips of the results")
    groups: list[tuple[list[Any], list[str]]] = []
    for result, sign, word in ((proponents, "+", "near"), (opponents, "-", "far")):
        clips: list[Any] = []
        captions: list[str] = []
        if result is not None:
            # Similarity results (they carry a metric) are nearest / farthest, not +/-.
            prefix = word if getattr(result, "metric", None) else sign
            for rank, (i, score) in enumerate(
                zip(result.indices[index], result.scores[index], strict=True)
            ):
                item = train_dataset[int(i)]
                label = int(item[1])
                clips.append(item[0])
                # Three significant digits: cosines of near neighbours differ in the third.
                captions.append(
                    f"{prefix}{rank + 1} #{int(i)} {_name(label, class_names)} {float(score):.3g}"
                )
        groups.append((clips, captions))
    frames = influence_frames(
        clip,
        groups[0][0],
        groups[1][0],
        test_caption=f"test: {_name(int(target[index]), class_names)}",
        proponent_captions=groups[0][1],
        opponent_captions=groups[1][1],
        scale=scale,
    )
    if path is not None:
        _write(frames, Path(path), fps, validate_positive_int(png_frames, "png_frames"))
    return frames


def _write(frames: np.ndarray, path: Path, fps: float, png_frames: int) -> None:
    if path.suffix.lower() != ".png":
        write_video(frames, path, fps=fps)
        return
    picks = np.unique(np.linspace(0, len(frames) - 1, min(png_frames, len(frames))).round())
    gap = np.full((_GAP, frames.shape[2], 3), 255, np.uint8)
    strip = np.concatenate([part for t in picks for part in (frames[int(t)], gap)][:-1], axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), strip[..., ::-1]):
        raise OSError(f"could not write {path}")

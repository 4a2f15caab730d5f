"""Windows over a frame sequence, their explanations stitched back into one per-frame
relevance, and scene cuts: the pieces a whole-video timeline and a live stream share.

A video is explained as overlapping windows of the model's clip length; each frame's relevance
is the mean of the windows that cover it. :class:`WindowStitcher` keeps only the frames that a
future window can still reach, so memory does not grow with the video. :class:`SceneCutDetector`
flags frames that differ sharply from the one before (a cheap frame-difference test on small
greyscale copies), since a window across a cut shows the model two unrelated scenes.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterator

import cv2
import numpy as np
import torch
from torch import Tensor

__all__ = ["SceneCutDetector", "WindowStitcher", "window_starts"]


def window_starts(num_frames: int, clip_frames: int, stride: int) -> list[int]:
    """First frame of every window of ``clip_frames`` frames, ``stride`` apart, covering all.

    The last window ends at the last frame (it may overlap its neighbour more than others).

    Args:
        num_frames (int): frames in the video.
        clip_frames (int): frames per window.
        stride (int): frames between window starts, ``>= 1``.

    Returns:
        list of int: the starts, increasing.

    Example::

        >>> window_starts(20, 8, 4)
        [0, 4, 8, 12]
        >>> window_starts(21, 8, 4)
        [0, 4, 8, 12, 13]
    """
    if clip_frames < 1 or stride < 1:
        raise ValueError(f"clip_frames and stride must be >= 1, got {clip_frames}, {stride}")
    if num_frames < clip_frames:
        return []
    starts = list(range(0, num_frames - clip_frames + 1, stride))
    if starts[-1] + clip_frames < num_frames:
        starts.append(num_frames - clip_frames)
    return starts


class WindowStitcher:
    r"""Average the relevance of overlapping windows into one map per frame, in order.

    Windows must be added in order of their start; :meth:`pop_final` hands out every frame
    that no later window can cover (those before the next window's start), so only the
    frames of one window stay in memory.

    Args:
        clip_frames (int): frames per window.

    Returns:
        A stitcher.

    Example::

        >>> stitcher = WindowStitcher(clip_frames=4)
        >>> stitcher.add(0, torch.ones(4, 2, 2))
        >>> stitcher.add(2, 3 * torch.ones(4, 2, 2))
        >>> [float(m.mean()) for _, m in stitcher.pop_final(before=6)]
        [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]
    """

    def __init__(self, clip_frames: int) -> None:
        self.clip_frames = clip_frames
        self._first = 0  # index of the oldest frame still held
        self._sums: deque[Tensor] = deque()
        self._counts: deque[int] = deque()

    def add(self, start: int, relevance: Tensor) -> None:
        """Add one window's relevance ``(T, H, W)`` starting at frame ``start``.

        Args:
            start (int): the window's first frame.
            relevance (Tensor): its relevance, one map per frame.

        Returns:
            None
        """
        if relevance.dim() != 3 or relevance.shape[0] != self.clip_frames:
            raise ValueError(
                f"relevance must be (T={self.clip_frames}, H, W), got {tuple(relevance.shape)}"
            )
        if start < self._first:
            raise ValueError(f"windows must come in order: start {start} < {self._first}")
        stop = start + self.clip_frames
        while self._first + len(self._sums) < stop:  # frames seen for the first time
            self._sums.append(torch.zeros_like(relevance[0], dtype=torch.float64))
            self._counts.append(0)
        for offset in range(self.clip_frames):
            position = start + offset - self._first
            self._sums[position] += relevance[offset].double()
            self._counts[position] += 1

    def pop_final(self, before: int | None = None) -> Iterator[tuple[int, Tensor]]:
        """Hand out ``(frame index, mean relevance (H, W))`` of the frames before ``before``.

        Args:
            before (int, optional): the next window's start; None hands out every frame held.

        Returns:
            iterator: the finished frames, in order; frames no window covered are skipped.
        """
        while self._sums and (before is None or self._first < before):
            total, count = self._sums.popleft(), self._counts.popleft()
            index = self._first
            self._first += 1
            if count:
                yield index, (total / count).float()


class SceneCutDetector:
    r"""Flag a scene cut when a frame differs sharply from the previous one.

    The difference is the mean absolute difference of 32 x 32 greyscale copies in ``[0, 1]``;
    a cut needs it above ``threshold`` and above ``ratio`` times the median of the last
    ``history`` differences (so fast motion in a busy scene is not a cut).

    Args:
        threshold (float, optional): smallest difference that can be a cut. Default: 0.12
        ratio (float, optional): how far above the recent median it must be. Default: 4.0
        history (int, optional): differences remembered for the median. Default: 30

    Returns:
        A detector; :meth:`update` takes the frames in order.

    Example::

        >>> detector = SceneCutDetector()
        >>> detector.update(np.zeros((64, 64, 3), np.uint8))
        False
        >>> detector.update(np.full((64, 64, 3), 200, np.uint8))
        True
    """

    def __init__(self, threshold: float = 0.12, ratio: float = 4.0, history: int = 30) -> None:
        self.threshold, self.ratio = threshold, ratio
        self._previous: np.ndarray | None = None
        self._recent: deque[float] = deque(maxlen=history)

    def update(self, frame: np.ndarray) -> bool:
        """Whether ``frame`` (``uint8`` RGB ``(H, W, 3)``) starts a new scene.

        Args:
            frame (ndarray): the next frame.

        Returns:
            bool: True when a cut lies between the previous frame and this one.
        """
        small = cv2.resize(frame, (32, 32), interpolation=cv2.INTER_AREA)
        grey = small.astype(np.float32).mean(axis=-1) / 255.0
        previous, self._previous = self._previous, grey
        if previous is None:
            return False
        difference = float(np.abs(grey - previous).mean())
        usual = statistics.median(self._recent) if self._recent else 0.0
        cut = difference > self.threshold and difference > self.ratio * usual
        if not cut:
            self._recent.append(difference)
        return cut

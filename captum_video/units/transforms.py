"""Random transformations of a clip applied before every optimisation step.

A unit can be excited by a pattern that only works at one exact pixel and frame offset: an
adversarial texture, not a feature. Asking the clip to excite the unit under small random
shifts and scalings (transformation robustness; Mordvintsev, Olah and Tyka 2015,
"Inceptionism: Going Deeper into Neural Networks"; Olah, Mordvintsev and Schubert 2017,
"Feature Visualization", Distill) removes those patterns. For clips the shift includes time:
a pattern that must work whichever frame the model's window starts on cannot rely on one
frame flashing, which is what makes the result *move* rather than flicker.

The :class:`~captum_video.units.FourierClip` parametrisation is periodic in time and space, so
shifts are circular rolls (no border to invent). Every transform takes ``(clips, generator)``
and draws one random offset per call, shared by the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from captum_video._scalars import validate_positive_int
from captum_video._validation import validate_video

__all__ = [
    "ClipTransform",
    "SpatialJitter",
    "TemporalJitter",
    "RandomScale",
    "standard_transforms",
    "apply_transforms",
]

#: A transform: ``(clips (N, C, T, H, W), generator) -> clips`` of the same shape.
ClipTransform = Callable[[Tensor, torch.Generator], Tensor]


def _check(clips: Tensor, generator: torch.Generator) -> None:
    # No NaN scan here: it would force a device sync at every optimisation step.
    validate_video(clips, name="clips", check_finite=False)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")


def _offset(limit: int, generator: torch.Generator) -> int:
    return int(torch.randint(-limit, limit + 1, (1,), generator=generator)) if limit else 0


class SpatialJitter:
    """Roll every frame by the same random ``(dy, dx)`` in ``[-pixels, pixels]``.

    Args:
        pixels (int): the largest shift in pixels.

    Returns:
        Calling it with ``(clips, generator)`` returns the shifted clips.

    Example::

        >>> jitter = SpatialJitter(2)
        >>> jitter(torch.rand(1, 3, 4, 8, 8), torch.Generator().manual_seed(0)).shape
        torch.Size([1, 3, 4, 8, 8])
    """

    def __init__(self, pixels: int) -> None:
        self.pixels = validate_positive_int(pixels, "pixels", minimum=0)

    def __call__(self, clips: Tensor, generator: torch.Generator) -> Tensor:
        _check(clips, generator)
        dy, dx = _offset(self.pixels, generator), _offset(self.pixels, generator)
        return torch.roll(clips, shifts=(dy, dx), dims=(-2, -1))

    def __repr__(self) -> str:
        return f"SpatialJitter({self.pixels})"


class TemporalJitter:
    """Roll the clip by a random number of frames in ``[-frames, frames]`` (a time shift).

    Args:
        frames (int): the largest shift in frames.

    Returns:
        Calling it with ``(clips, generator)`` returns the shifted clips.

    Example::

        >>> shift = TemporalJitter(3)
        >>> shift(torch.rand(1, 3, 8, 4, 4), torch.Generator().manual_seed(0)).shape
        torch.Size([1, 3, 8, 4, 4])
    """

    def __init__(self, frames: int) -> None:
        self.frames = validate_positive_int(frames, "frames", minimum=0)

    def __call__(self, clips: Tensor, generator: torch.Generator) -> Tensor:
        _check(clips, generator)
        return torch.roll(clips, shifts=_offset(self.frames, generator), dims=-3)

    def __repr__(self) -> str:
        return f"TemporalJitter({self.frames})"


class RandomScale:
    """Zoom the frames by a factor drawn from ``scales``, keeping ``(H, W)``.

    Frames are resized bilinearly, then centre-cropped (zoom in) or padded with their border
    pixels (zoom out) back to ``(H, W)``, so layer shapes and neuron positions stay put.

    Args:
        scales (sequence of float): the factors to draw from, e.g. ``(0.9, 1.0, 1.1)``.

    Returns:
        Calling it with ``(clips, generator)`` returns the scaled clips.

    Example::

        >>> zoom = RandomScale((0.9, 1.1))
        >>> zoom(torch.rand(1, 3, 4, 16, 16), torch.Generator().manual_seed(0)).shape
        torch.Size([1, 3, 4, 16, 16])
    """

    def __init__(self, scales: Sequence[float]) -> None:
        if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence):
            raise TypeError(f"scales must be a sequence of factors, got {scales!r}")
        bad = [s for s in scales if isinstance(s, bool) or not isinstance(s, (int, float))]
        if not scales or bad or any(not 0 < s < math.inf for s in scales):
            raise ValueError(f"scales must be finite positive factors, got {tuple(scales)!r}")
        self.scales = tuple(float(s) for s in scales)

    def __call__(self, clips: Tensor, generator: torch.Generator) -> Tensor:
        _check(clips, generator)
        factor = self.scales[int(torch.randint(len(self.scales), (1,), generator=generator))]
        n, c, t, h, w = clips.shape
        nh, nw = max(1, round(h * factor)), max(1, round(w * factor))
        if (nh, nw) == (h, w):
            return clips
        frames = clips.transpose(1, 2).reshape(n * t, c, h, w)
        frames = F.interpolate(frames, size=(nh, nw), mode="bilinear", align_corners=False)
        top, left = (nh - h) // 2, (nw - w) // 2
        if nh >= h:
            frames = frames[..., top : top + h, :]
        else:
            frames = F.pad(frames, (0, 0, -top, h - nh + top), mode="replicate")
        if nw >= w:
            frames = frames[..., left : left + w]
        else:
            frames = F.pad(frames, (-left, w - nw + left, 0, 0), mode="replicate")
        return frames.reshape(n, t, c, h, w).transpose(1, 2)

    def __repr__(self) -> str:
        return f"RandomScale({self.scales})"


def standard_transforms(
    jitter: int = 2, time_shift: int = 4, scales: Sequence[float] = (0.95, 1.0, 1.05)
) -> list[ClipTransform]:
    """The default robustness: spatial jitter, a small random zoom, jitter again, a time shift.

    Mirrors Lucid's ``standard_transforms`` (jitter, scale, jitter) scaled to small clips,
    plus the temporal roll.

    Args:
        jitter (int, optional): largest spatial shift in pixels of each jitter. Default: 2
        time_shift (int, optional): largest temporal shift in frames. Default: 4
        scales (sequence of float, optional): zoom factors. Default: ``(0.95, 1.0, 1.05)``

    Returns:
        list: the transforms, in the order they are applied.

    Example::

        >>> standard_transforms(jitter=1, time_shift=2)
        [SpatialJitter(1), RandomScale((0.95, 1.0, 1.05)), SpatialJitter(1), TemporalJitter(2)]
    """
    out: list[ClipTransform] = [SpatialJitter(jitter), RandomScale(scales), SpatialJitter(jitter)]
    out.append(TemporalJitter(time_shift))
    return out


def apply_transforms(
    clips: Tensor, transforms: Sequence[ClipTransform], generator: torch.Generator
) -> Tensor:
    """Apply ``transforms`` in order, each drawing its randomness from ``generator``.

    Args:
        clips (Tensor): ``(N, C, T, H, W)``.
        transforms (sequence of callable): ``(clips, generator) -> clips``.
        generator (torch.Generator): source of every random draw.

    Returns:
        Tensor: the transformed clips, same shape.

    Example::

        >>> g = torch.Generator().manual_seed(0)
        >>> apply_transforms(torch.rand(1, 3, 8, 8, 8), standard_transforms(), g).shape
        torch.Size([1, 3, 8, 8, 8])
    """
    _check(clips, generator)
    if any(not callable(t) for t in transforms):
        raise TypeError("transforms must be callables (clips, generator) -> clips")
    for transform in transforms:
        clips = transform(clips, generator)
    return clips

"""Turn the relevance and clip tensors callers have into the NumPy arrays the renderers draw.

Every view in :mod:`captum_video.visualization` accepts what an attribution method returns
for one clip: a torch tensor (or NumPy array) of shape ``(1, C, T, H, W)``, ``(C, T, H, W)``
(``C`` may be 1, e.g. a layer map after up-sampling) or ``(T, H, W)``, and a clip
``(C, T, H, W)`` or ``(1, C, T, H, W)`` with float values in ``[0, 1]``. Integer (``uint8``)
clips are refused with the fix ``clip.float() / 255``, as everywhere in captum-video. Arrays
use the package's channels-first layout too, so one rule covers both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from captum_video.relevance import reduce_channels

__all__ = ["attr_volume", "video_frames", "check_matching", "select_frames"]


def _to_numpy(value: Any, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu").numpy()
    if isinstance(value, np.ndarray):
        return value
    raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(value).__name__}")


def attr_volume(attr: Any, name: str = "attr") -> np.ndarray:
    """Relevance of one clip as a ``(T, H, W)`` float64 array, channels summed.

    Channels are summed (signed), as Captum's ``visualize_image_attr`` does with an
    ``(H, W, C)`` attribution, so the sign filter is applied afterwards.

    Args:
        attr (Tensor or ndarray): ``(1, C, T, H, W)``, ``(C, T, H, W)`` or ``(T, H, W)``.
        name (str, optional): argument name used in error messages. Default: ``"attr"``

    Returns:
        ndarray: ``(T, H, W)`` float64.

    Example::

        >>> attr_volume(torch.ones(1, 3, 4, 8, 8)).shape
        (4, 8, 8)
    """
    array = _to_numpy(attr, name)
    if array.ndim == 5:
        if array.shape[0] != 1:
            raise ValueError(
                f"{name} holds {array.shape[0]} clips (shape {tuple(array.shape)}); the "
                f"visualisations draw one clip: pass {name}[i]"
            )
        array = array[0]
    if array.ndim == 4 and array.dtype.kind in "fiu":
        array = reduce_channels(torch.from_numpy(np.ascontiguousarray(array))[None])[0, 0].numpy()
    if array.ndim != 3:
        raise ValueError(
            f"{name} must be (1, C, T, H, W), (C, T, H, W) or (T, H, W), got shape "
            f"{tuple(array.shape)}"
        )
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if array.size == 0:
        raise ValueError(f"{name} is empty: shape {tuple(array.shape)}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains {int((~np.isfinite(array)).sum())} NaN or inf values")
    return array


def video_frames(video: Any, name: str = "video") -> np.ndarray:
    """A clip as ``(T, H, W, 3)`` float64 RGB frames in ``[0, 1]``.

    Args:
        video (Tensor or ndarray): ``(C, T, H, W)`` or ``(1, C, T, H, W)`` with ``C`` 1 or 3;
            floats in ``[0, 1]`` (integer clips are refused: convert with
            ``clip.float() / 255``). Grey clips are repeated to RGB.
        name (str, optional): argument name used in error messages. Default: ``"video"``

    Returns:
        ndarray: ``(T, H, W, 3)`` float64 in ``[0, 1]``.

    Example::

        >>> video_frames(torch.rand(3, 4, 8, 8)).shape
        (4, 8, 8, 3)
    """
    array = _to_numpy(video, name)
    if array.ndim == 5:
        if array.shape[0] != 1:
            raise ValueError(
                f"{name} holds {array.shape[0]} clips (shape {tuple(array.shape)}); pass {name}[i]"
            )
        array = array[0]
    if array.ndim != 4 or array.shape[0] not in (1, 3):
        raise ValueError(
            f"{name} must be (C, T, H, W) or (1, C, T, H, W) with C = 1 or 3 (channels first, "
            f"as captum-video clips are), got shape {tuple(array.shape)}; a channels-last "
            "array (T, H, W, C) needs array.transpose(3, 0, 1, 2)"
        )
    if np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
        raise TypeError(
            f"{name} must be a floating-point clip in [0, 1], got dtype {array.dtype}; convert "
            f"with {name}.float() / 255 (a NumPy array: {name}.astype('float32') / 255)"
        )
    if np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
        if not np.isfinite(array).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < -1e-3 or high > 1 + 1e-3:
            raise ValueError(
                f"{name} must hold values in [0, 1], got [{low:.3g}, "
                f"{high:.3g}]; undo the model's input normalisation first "
                "(captum_video.io.denormalize_video)"
            )
        array = np.clip(array, 0.0, 1.0)
    else:
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    frames = np.moveaxis(array, 0, -1)
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    return frames


def check_matching(volume: np.ndarray, frames: np.ndarray, name: str = "attr") -> None:
    """Raise if a ``(T, H, W)`` relevance volume does not cover the ``(T, H, W, 3)`` clip."""
    if volume.shape != frames.shape[:3]:
        raise ValueError(
            f"{name} covers (T, H, W) = {volume.shape} but the video is {frames.shape[:3]}; "
            "up-sample layer maps first (captum_video.attr.upsample_to_input)"
        )


def select_frames(
    num_frames: int, frames: Sequence[int] | int | None, max_frames: int = 16
) -> list[int]:
    """Indices of the frames a grid shows.

    Args:
        num_frames (int): frames in the clip ``T``.
        frames (sequence of int, int or None): explicit indices (negative ones count from the
            end), a number of evenly spaced frames, or ``None`` for all frames up to
            ``max_frames`` evenly spaced ones.
        max_frames (int, optional): cap used when ``frames`` is None. Default: 16

    Returns:
        list of int: indices in ``[0, T)``.

    Example::

        >>> select_frames(32, 4)
        [0, 10, 21, 31]
    """
    if frames is None:
        frames = min(num_frames, max_frames)
    if isinstance(frames, (int, np.integer)):
        count = int(frames)
        if not 1 <= count <= num_frames:
            raise ValueError(f"frames={count} must be between 1 and the clip's {num_frames} frames")
        return [int(round(i)) for i in np.linspace(0, num_frames - 1, count)]
    chosen = [int(i) for i in frames]
    if not chosen:
        raise ValueError("frames is empty; pass at least one frame index")
    for i in chosen:
        if not -num_frames <= i < num_frames:
            raise ValueError(f"frame index {i} is out of range for a clip of {num_frames} frames")
    return [i % num_frames for i in chosen]

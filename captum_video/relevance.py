"""Operations on relevance volumes shared by the methods, metrics, views and the pipeline.

One implementation each: the channel reduction of an input-space attribution, Captum's sign
filter, the per-frame relevance curve, and the up-sampling of a layer map to the clip.
"""

from __future__ import annotations

import numbers
from typing import Literal, TypeVar

import numpy as np
import torch
from captum.attr import LayerAttribution
from torch import Tensor

from captum_video._validation import validate_finite

__all__ = [
    "ChannelReduction",
    "SIGNS",
    "apply_sign",
    "reduce_channels",
    "relevance_per_frame",
    "upsample_to_input",
]

#: How channels of an input-space attribution are reduced to one map.
ChannelReduction = Literal["sum", "abs_sum", "positive_sum", "max_abs"]
_REDUCTIONS = ("sum", "abs_sum", "positive_sum", "max_abs")
#: Captum's sign filters (``captum.attr.visualization.VisualizeSign``).
SIGNS = ("positive", "absolute_value", "negative", "all")

ArrayT = TypeVar("ArrayT", Tensor, np.ndarray)


def reduce_channels(attr: Tensor, mode: ChannelReduction = "sum") -> Tensor:
    """Reduce an input-space attribution ``(N, C, T, H, W)`` to ``(N, 1, T, H, W)``.

    Args:
        attr (Tensor): attribution with channels in dimension 1.
        mode (str, optional): ``"sum"`` (signed sum over channels, as Hiley et al.'s
            ``get_exp`` and Captum's image views), ``"abs_sum"`` (sum of magnitudes),
            ``"positive_sum"`` (sum of the positive parts) or ``"max_abs"`` (largest
            magnitude). Default: ``"sum"``

    Returns:
        Tensor: ``(N, 1, T, H, W)``, same device and dtype as ``attr``.

    Example::

        >>> reduce_channels(torch.ones(2, 3, 4, 8, 8)).shape
        torch.Size([2, 1, 4, 8, 8])
    """
    if not isinstance(attr, Tensor) or attr.dim() != 5:
        shape = tuple(attr.shape) if isinstance(attr, Tensor) else type(attr).__name__
        raise ValueError(f"attr must be a (N, C, T, H, W) tensor, got {shape}")
    if mode == "sum":
        return attr.sum(1, keepdim=True)
    if mode == "abs_sum":
        return attr.abs().sum(1, keepdim=True)
    if mode == "positive_sum":
        return attr.clamp(min=0).sum(1, keepdim=True)
    if mode == "max_abs":
        return attr.abs().amax(1, keepdim=True)
    raise ValueError(f"mode (the channel reduction) must be one of {_REDUCTIONS}, got {mode!r}")


def apply_sign(relevance: ArrayT, sign: str) -> ArrayT:
    """Captum's sign filter, with ``"negative"`` returned as magnitudes (``>= 0``).

    Works on tensors and NumPy arrays alike.

    Args:
        relevance (Tensor or ndarray): signed relevance.
        sign (str): ``"positive"``, ``"absolute_value"``, ``"negative"`` or ``"all"``.

    Returns:
        Tensor or ndarray: the filtered relevance, same shape and type.

    Example::

        >>> apply_sign(np.array([-2.0, 1.0]), "negative")
        array([2., 0.])
    """
    if sign not in SIGNS:
        raise ValueError(f"sign must be one of {', '.join(SIGNS)}, got {sign!r}")
    # "+ 0.0" turns the -0.0 of masked negatives into 0.0.
    if sign == "positive":
        return relevance * (relevance > 0) + 0.0
    if sign == "negative":
        return -relevance * (relevance < 0) + 0.0
    if sign == "absolute_value":
        return abs(relevance)
    return relevance


def relevance_per_frame(
    relevance: Tensor,
    sign: str = "absolute_value",
    normalize: Literal["sum", "max", "mean"] | None = "sum",
) -> Tensor:
    r"""The relevance curve over time: how much relevance each frame holds, ``(N, T)``.

    Channels are summed (signed) first, as in the heat maps, then the sign filter is applied
    and each frame's ``(H, W)`` map is summed.

    Args:
        relevance (Tensor): ``(N, C, T, H, W)`` (``C`` may be 1).
        sign (str, optional): Captum's sign filter; ``"all"`` keeps signed sums.
            Default: ``"absolute_value"``
        normalize (str or None, optional): ``"sum"``: the share of the clip's relevance per
            frame (curves of methods of any scale compare; signed curves are divided by their
            absolute total); ``"max"``: divided by the largest frame's magnitude; ``"mean"``:
            the mean over a frame's ``C x H x W`` voxels (for a frame-constant attribution
            such as temporal occlusion, the value itself); None: raw sums. A clip with no
            relevance gives zeros. Default: ``"sum"``

    Returns:
        Tensor: ``(N, T)``, same device and dtype.

    Example::

        >>> attr = torch.zeros(1, 3, 4, 8, 8)
        >>> attr[:, :, 1] = 1.0
        >>> relevance_per_frame(attr).tolist()
        [[0.0, 1.0, 0.0, 0.0]]
    """
    if normalize not in ("sum", "max", "mean", None):
        raise ValueError(f"normalize must be 'sum', 'max', 'mean' or None, got {normalize!r}")
    validate_finite(relevance, "relevance")
    mass = apply_sign(reduce_channels(relevance, "sum")[:, 0], sign).sum(dim=(2, 3))
    if normalize is None:
        return mass
    if normalize == "mean":
        _, c, _, h, w = relevance.shape
        return mass / (c * h * w)
    magnitude = mass.abs()
    scale = magnitude.sum(1, keepdim=True) if normalize == "sum" else magnitude.amax(1, True)
    return torch.where(scale > 0, mass / scale.clamp_min(torch.finfo(mass.dtype).tiny), mass)


def upsample_to_input(
    layer_attr: Tensor, size: tuple[int, int, int], mode: str = "trilinear"
) -> Tensor:
    """Up-sample a layer map ``(N, K, T', H', W')`` to the clip's ``(T, H, W)``.

    A thin wrapper over Captum's ``LayerAttribution.interpolate`` that keeps
    ``align_corners=False`` semantics and does nothing when the size already matches.

    Args:
        layer_attr (Tensor): ``(N, K, T', H', W')`` map.
        size (tuple of int): target ``(T, H, W)``.
        mode (str, optional): ``"trilinear"``, ``"nearest"`` or ``"area"``. Default: ``"trilinear"``

    Returns:
        Tensor: ``(N, K, T, H, W)``.

    Example::

        >>> upsample_to_input(torch.rand(1, 1, 2, 4, 4), (8, 32, 32)).shape
        torch.Size([1, 1, 8, 32, 32])
    """
    if not isinstance(layer_attr, Tensor) or layer_attr.dim() != 5:
        shape = tuple(layer_attr.shape) if isinstance(layer_attr, Tensor) else type(layer_attr)
        raise ValueError(f"layer_attr must be a (N, K, T', H', W') tensor, got {shape}")
    if not (
        isinstance(size, (tuple, list))
        and len(size) == 3
        and all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1 for s in size
        )
    ):
        raise ValueError(f"size must be (T, H, W) of three ints >= 1, got {size!r}")
    size = tuple(int(s) for s in size)  # type: ignore[assignment]
    if tuple(layer_attr.shape[2:]) == size:
        return layer_attr
    return LayerAttribution.interpolate(layer_attr, size, interpolate_mode=mode)

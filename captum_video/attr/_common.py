"""Small tensor helpers shared by the attribution methods: channel reduction and up-sampling."""

from __future__ import annotations

from typing import Literal

from captum.attr import LayerAttribution
from torch import Tensor

__all__ = ["reduce_channels", "upsample_to_input"]

ChannelReduction = Literal["sum", "abs_sum", "max_abs"]


def reduce_channels(attr: Tensor, mode: ChannelReduction = "sum") -> Tensor:
    """Reduce an input-space attribution ``(N, C, T, H, W)`` to ``(N, 1, T, H, W)``.

    Args:
        attr (Tensor): attribution with channels in dimension 1.
        mode (str, optional): ``"sum"`` (signed sum over channels, as Hiley et al.'s
            ``get_exp``), ``"abs_sum"`` (sum of magnitudes) or ``"max_abs"`` (largest magnitude).
            Default: ``"sum"``

    Returns:
        Tensor: ``(N, 1, T, H, W)``, same device and dtype as ``attr``.

    Example::

        >>> reduce_channels(torch.ones(2, 3, 4, 8, 8)).shape
        torch.Size([2, 1, 4, 8, 8])
    """
    if attr.dim() != 5:
        raise ValueError(f"attr must be (N, C, T, H, W), got shape {tuple(attr.shape)}")
    if mode == "sum":
        return attr.sum(1, keepdim=True)
    if mode == "abs_sum":
        return attr.abs().sum(1, keepdim=True)
    if mode == "max_abs":
        return attr.abs().amax(1, keepdim=True)
    raise ValueError(f"mode must be 'sum', 'abs_sum' or 'max_abs', got {mode!r}")


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
    size = tuple(int(s) for s in size)  # type: ignore[assignment]
    if tuple(layer_attr.shape[2:]) == size:
        return layer_attr
    return LayerAttribution.interpolate(layer_attr, size, interpolate_mode=mode)

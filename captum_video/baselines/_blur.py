"""Gaussian blur of clips along time or within frames (replicated borders)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from captum_video.baselines._frames import _check

__all__ = ["temporal_blur", "spatial_blur"]


def _gaussian_matrix(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``(size, size)`` matrix of a normalised 1-D Gaussian filter with replicated borders."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, device=device)
    kernel = torch.exp(-0.5 * (offsets.to(dtype) / sigma) ** 2)
    kernel = kernel / kernel.sum()
    rows = torch.arange(size, device=device).view(size, 1).expand(size, offsets.numel())
    cols = (rows + offsets.view(1, -1)).clamp(0, size - 1)  # replicate padding
    matrix = torch.zeros(size, size, device=device, dtype=dtype)
    return matrix.index_put_((rows, cols), kernel.expand_as(rows).contiguous(), accumulate=True)


def _check_sigma(sigma: float) -> float:
    """``sigma`` as a float, or a ValueError naming it (negative, NaN, infinite, not a number)."""
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    return float(sigma)


def temporal_blur(x: Tensor, sigma: float) -> Tensor:
    r"""Gaussian blur along time only (replicated borders): motion is smeared, frames are not.

    Args:
        x (Tensor): clips ``(N, C, T, H, W)``.
        sigma (float): standard deviation in frames; ``0`` returns a copy of ``x``.

    Returns:
        Tensor: ``(N, C, T, H, W)``.

    Example::

        >>> clip = torch.rand(1, 3, 8, 16, 16)
        >>> temporal_blur(clip, 1.0).shape
        torch.Size([1, 3, 8, 16, 16])
    """
    _check(x)
    sigma = _check_sigma(sigma)
    if sigma == 0:
        return x.clone()
    g = _gaussian_matrix(x.shape[2], float(sigma), x.device, x.dtype)
    return torch.einsum("ts,ncshw->ncthw", g, x)


def spatial_blur(x: Tensor, sigma: float | None = None) -> Tensor:
    r"""Gaussian blur of every frame in ``(H, W)`` (replicated borders); time is untouched.

    Args:
        x (Tensor): clips ``(N, C, T, H, W)``.
        sigma (float, optional): standard deviation in pixels. Default: ``0.1 * min(H, W)``

    Returns:
        Tensor: ``(N, C, T, H, W)``.

    Example::

        >>> spatial_blur(torch.rand(1, 3, 4, 16, 16), 2.0).shape
        torch.Size([1, 3, 4, 16, 16])
    """
    _check(x)
    h, w = x.shape[3], x.shape[4]
    sigma = 0.1 * min(h, w) if sigma is None else _check_sigma(sigma)
    if sigma == 0:
        return x.clone()
    gh = _gaussian_matrix(h, sigma, x.device, x.dtype)
    gw = _gaussian_matrix(w, sigma, x.device, x.dtype)
    return torch.einsum("yh,nctho,xo->nctyx", gh, x, gw)

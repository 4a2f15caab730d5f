"""Dense optical flow of clips (OpenCV Farneback), for motion masks and motion metrics.

Optical flow is a pre-processing of the *video*, not part of any attribution, so it runs on
the CPU through OpenCV and returns tensors on the clip's device.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from torch import Tensor

from captum_video._validation import validate_video

__all__ = ["optical_flow", "flow_magnitude", "motion_mask"]

#: Farneback parameters: pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags.
FARNEBACK_DEFAULTS: dict[str, float | int] = {
    "pyr_scale": 0.5,
    "levels": 3,
    "winsize": 9,
    "iterations": 3,
    "poly_n": 5,
    "poly_sigma": 1.1,
    "flags": 0,
}


def _grey_uint8(video: Tensor) -> np.ndarray:
    """``(N, C, T, H, W)`` clip in [0, 1] (or any range) -> ``(N, T, H, W)`` uint8 grey."""
    grey = video.detach().float().mean(1)  # (N, T, H, W)
    lo = grey.amin(dim=(1, 2, 3), keepdim=True)
    hi = grey.amax(dim=(1, 2, 3), keepdim=True)
    grey = (grey - lo) / (hi - lo).clamp_min(1e-8)
    return (grey * 255).round().to(torch.uint8).cpu().numpy()


def optical_flow(video: Tensor, **farneback: float | int) -> Tensor:
    """Dense optical flow between consecutive frames of each clip.

    Flow ``t`` is the motion from frame ``t`` to frame ``t + 1``; the last frame repeats the
    flow into it so the result has one field per frame.

    Args:
        video (Tensor): ``(N, C, T, H, W)`` or ``(C, T, H, W)`` clip(s).
        **farneback: overrides of :data:`FARNEBACK_DEFAULTS` for ``cv2.calcOpticalFlowFarneback``.

    Returns:
        Tensor: ``(N, T, 2, H, W)`` (or ``(T, 2, H, W)`` for one clip) float32 flow in pixels,
        ``(dx, dy)`` in channel 1, on the clip's device.

    Example::

        >>> clip = torch.rand(3, 8, 32, 32)
        >>> optical_flow(clip).shape
        torch.Size([8, 2, 32, 32])
    """
    single = isinstance(video, Tensor) and video.dim() == 4
    batch = video.unsqueeze(0) if single else video
    validate_video(batch, name="video", min_frames=2, guess_layout=True)
    unknown = sorted(set(farneback) - set(FARNEBACK_DEFAULTS))
    if unknown:
        raise TypeError(
            f"unknown Farneback parameters {unknown}; known: {sorted(FARNEBACK_DEFAULTS)}"
        )
    params = {**FARNEBACK_DEFAULTS, **farneback}
    grey = _grey_uint8(batch)
    n, t, h, w = grey.shape
    flow = np.zeros((n, t, 2, h, w), dtype=np.float32)
    for i in range(n):
        for j in range(t - 1):
            # OpenCV's type stubs omit None for the optional output argument.
            field = cv2.calcOpticalFlowFarneback(  # type: ignore[call-overload]
                grey[i, j],
                grey[i, j + 1],
                None,
                params["pyr_scale"],
                int(params["levels"]),
                int(params["winsize"]),
                int(params["iterations"]),
                int(params["poly_n"]),
                params["poly_sigma"],
                int(params["flags"]),
            )
            flow[i, j] = field.transpose(2, 0, 1)
        flow[i, t - 1] = flow[i, t - 2]
    out = torch.from_numpy(flow).to(video.device)
    return out[0] if single else out


def flow_magnitude(flow: Tensor) -> Tensor:
    """Per-pixel speed ``sqrt(dx^2 + dy^2)`` of a flow field ``(..., 2, H, W)`` -> ``(..., H, W)``.

    Args:
        flow (Tensor): output of :func:`optical_flow`.

    Returns:
        Tensor: flow magnitude in pixels per frame.

    Example::

        >>> flow_magnitude(torch.ones(4, 2, 8, 8)).shape
        torch.Size([4, 8, 8])
    """
    if not isinstance(flow, Tensor):
        raise TypeError(f"flow must be a Tensor, got {type(flow).__name__}")
    if flow.dim() < 3 or flow.shape[-3] != 2:
        raise ValueError(
            f"flow must be (..., 2, H, W) with (dx, dy) in dimension -3, got shape "
            f"{tuple(flow.shape)}"
        )
    return torch.linalg.vector_norm(flow, dim=-3)


def motion_mask(video: Tensor, threshold: float = 0.5, **farneback: float | int) -> Tensor:
    """Boolean mask of moving pixels: optical-flow magnitude above ``threshold`` px/frame.

    Args:
        video (Tensor): ``(N, C, T, H, W)`` or ``(C, T, H, W)`` clip(s).
        threshold (float, optional): speed in pixels per frame above which a pixel moves.
            Default: 0.5
        **farneback: overrides of the Farneback parameters.

    Returns:
        Tensor: bool ``(N, T, H, W)`` (or ``(T, H, W)``) on the clip's device.

    Example::

        >>> motion_mask(torch.rand(3, 8, 32, 32)).dtype
        torch.bool
    """
    check_threshold(threshold)
    return flow_magnitude(optical_flow(video, **farneback)) > threshold


def check_threshold(threshold: float, name: str = "threshold") -> float:
    """A speed threshold as a float: finite and >= 0, or a ValueError naming it."""
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not math.isfinite(threshold)
        or threshold < 0
    ):
        raise ValueError(
            f"{name} must be a finite number >= 0 (pixels per frame), got {threshold!r}"
        )
    return float(threshold)

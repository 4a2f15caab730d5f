"""Smoothness penalties that make an optimised clip move instead of flicker.

Transformation robustness and a ``1 / frequency`` parametrisation slow the growth of high
frequencies; a penalty on them stops it (Olah, Mordvintsev and Schubert 2017, "Feature
Visualization", Distill, section "The Enemy of Feature Visualization"). Total variation
(Rudin, Osher and Fatemi 1992, "Nonlinear total variation based noise removal algorithms";
used for feature inversion by Mahendran and Vedaldi 2015, "Understanding Deep Image
Representations by Inverting Them") is the mean absolute difference of neighbouring values;
over time it is the mean absolute change from one frame to the next, which flicker maximises
and smooth motion of a soft pattern keeps small.
"""

from __future__ import annotations

from torch import Tensor

from captum_video._validation import validate_video

__all__ = ["spatial_total_variation", "temporal_total_variation"]


def spatial_total_variation(clips: Tensor) -> Tensor:
    r"""Mean absolute difference of vertically and horizontally adjacent pixels, per clip.

    .. math::

        \mathrm{TV}_s(x) = \operatorname{mean}|x_{c,t,i+1,j} - x_{c,t,i,j}|
        + \operatorname{mean}|x_{c,t,i,j+1} - x_{c,t,i,j}|

    Args:
        clips (Tensor): ``(N, C, T, H, W)``.

    Returns:
        Tensor: ``(N,)``.

    Example::

        >>> spatial_total_variation(torch.zeros(2, 3, 4, 8, 8))
        tensor([0., 0.])
    """
    validate_video(clips, name="clips", check_finite=False)
    dy = (clips[..., 1:, :] - clips[..., :-1, :]).abs().flatten(1).mean(1)
    dx = (clips[..., 1:] - clips[..., :-1]).abs().flatten(1).mean(1)
    return dy + dx


def temporal_total_variation(clips: Tensor) -> Tensor:
    r"""Mean absolute change of each pixel from one frame to the next, per clip.

    .. math::

        \mathrm{TV}_t(x) = \operatorname{mean}|x_{c,t+1,i,j} - x_{c,t,i,j}|

    Args:
        clips (Tensor): ``(N, C, T, H, W)`` with ``T >= 2``.

    Returns:
        Tensor: ``(N,)``.

    Example::

        >>> temporal_total_variation(torch.ones(1, 3, 4, 8, 8))
        tensor([0.])
    """
    validate_video(clips, name="clips", min_frames=2, check_finite=False)
    return (clips[:, :, 1:] - clips[:, :, :-1]).abs().flatten(1).mean(1)

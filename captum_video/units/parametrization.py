"""A clip as a learnable space-time Fourier spectrum, optionally colour-decorrelated.

Optimising pixels directly gives high-frequency noise that excites a unit as well as any
structure does; a gradient step on a pixel basis amplifies the highest frequencies most.
Parametrising the image by its Fourier coefficients scaled by ``1 / frequency`` whitens the
gradient, so all frequencies move at a similar pace and low-frequency structure appears first
(Olah, Mordvintsev and Schubert 2017, "Feature Visualization", Distill; Mordvintsev, Pezzotti,
Schubert and Olah 2018, "Differentiable Image Parameterizations", Distill). For a clip the
spectrum is over ``(T, H, W)`` (``torch.fft.rfftn``): a pattern moving at ``v`` pixels per
frame puts its energy at temporal frequency ``-v . k``, so the same ``1 / |f|`` scale on the
joint frequency vector favours slow, smooth motion over frame-to-frame flicker.

Colours can be decorrelated as in Lucid (``decorrelate=True``): the optimised channels are
mapped through the square root of the colour covariance of natural images. It is off by
default: that matrix gives the green-magenta axis about a seventh of the range of the
luminance axis, and on the demo appearance model the clip for "green" then came out yellow.
A sigmoid brings each value to ``(0, 1)``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import Tensor, nn

from captum_video._scalars import validate_positive_int

__all__ = ["FourierClip", "COLOR_CORRELATION_SVD_SQRT"]

#: Square root of the RGB colour covariance of ImageNet images (Lucid's
#: ``color_correlation_svd_sqrt``): maps decorrelated channels to RGB.
COLOR_CORRELATION_SVD_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]]
)


class FourierClip(nn.Module):
    r"""``N`` clips ``(3, T, H, W)`` in ``(0, 1)`` parametrised by scaled Fourier coefficients.

    .. math::

        x = \sigma\Big(M \, \mathcal{F}^{-1}\big[s \odot z\big]\Big), \qquad
        s(f) = \max(|f|, f_{\min})^{-d},

    where ``z`` are the learnable complex coefficients of ``torch.fft.rfftn`` over
    ``(T, H, W)`` (inverted with the orthonormal ``irfftn`` and divided by 4, as in Lucid),
    ``|f|`` the length of the frequency vector in cycles per frame and per pixel (the temporal
    component multiplied by ``time_weight``), ``f_min = 1 / max(T, H, W)``, ``d`` the
    ``decay_power``, ``M`` the colour decorrelation matrix (identity when
    ``decorrelate=False``) and ``sigma`` the logistic sigmoid. The clip is periodic in time
    and space, so rolling it (temporal or spatial jitter) gives another valid clip.

    Args:
        num_clips (int): ``N``, clips optimised together.
        clip_size (tuple of int): ``(T, H, W)``.
        decay_power (float, optional): exponent ``d`` of the ``1 / |f|`` scale; 1 as in
            Lucid's images, larger is smoother. Default: 2.0
        time_weight (float, optional): how much a cycle per frame counts against a cycle per
            pixel in ``|f|``; above 1 damps fast change over time. Default: 1.0
        decorrelate (bool, optional): map channels through
            :data:`COLOR_CORRELATION_SVD_SQRT` (Lucid's default for natural images).
            Default: False
        init_std (float, optional): standard deviation of the initial coefficients.
            Default: 0.01
        generator (torch.Generator, optional): source of the initial coefficients.
            Default: None

    Returns:
        ``forward()`` returns the clips ``(N, 3, T, H, W)`` in ``(0, 1)``.

    Example::

        >>> param = FourierClip(2, (16, 32, 32), generator=torch.Generator().manual_seed(0))
        >>> param().shape
        torch.Size([2, 3, 16, 32, 32])
    """

    def __init__(
        self,
        num_clips: int,
        clip_size: tuple[int, int, int],
        decay_power: float = 2.0,
        time_weight: float = 1.0,
        decorrelate: bool = False,
        init_std: float = 0.01,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        num_clips = validate_positive_int(num_clips, "num_clips")
        t, h, w = check_clip_size(clip_size)
        decay_power = check_float(decay_power, "decay_power", allow_zero=True)
        time_weight = check_float(time_weight, "time_weight")
        init_std = check_float(init_std, "init_std", allow_zero=True)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        self.clip_size = (t, h, w)
        self.decorrelate = decorrelate
        ft = torch.fft.fftfreq(t).view(t, 1, 1) * time_weight
        fy = torch.fft.fftfreq(h).view(1, h, 1)
        fx = torch.fft.rfftfreq(w).view(1, 1, w // 2 + 1)
        freq = torch.sqrt(ft**2 + fy**2 + fx**2)
        scale = freq.clamp_min(1.0 / max(t, h, w)) ** -decay_power
        self.scale: Tensor
        self.register_buffer("scale", scale, persistent=False)
        shape = (num_clips, 3, t, h, w // 2 + 1, 2)  # real and imaginary parts
        spectrum = torch.randn(shape, generator=generator) * init_std
        self.spectrum = nn.Parameter(spectrum)
        # Lucid divides by the largest column norm so the decorrelated channels keep unit scale.
        matrix = COLOR_CORRELATION_SVD_SQRT / COLOR_CORRELATION_SVD_SQRT.norm(dim=0).max()
        self.color_matrix: Tensor
        self.register_buffer("color_matrix", matrix, persistent=False)

    def logits(self) -> Tensor:
        """The clips before the sigmoid, ``(N, 3, T, H, W)``, colours already mapped to RGB."""
        coeffs = torch.view_as_complex(self.spectrum) * self.scale
        # Lucid's extra 1/4 keeps the initial values small next to the sigmoid's range.
        pixels = torch.fft.irfftn(coeffs, s=self.clip_size, dim=(2, 3, 4), norm="ortho") / 4.0
        if self.decorrelate:
            pixels = torch.einsum("rc,nc...->nr...", self.color_matrix, pixels)
        return pixels

    def forward(self) -> Tensor:
        return torch.sigmoid(self.logits())


def check_clip_size(clip_size: Any, name: str = "clip_size") -> tuple[int, int, int]:
    """``(T, H, W)`` as three positive ints, or a ValueError / TypeError naming ``name``."""
    if not isinstance(clip_size, (tuple, list)) or len(clip_size) != 3:
        raise ValueError(f"{name} must be (T, H, W), three ints, got {clip_size!r}")
    t, h, w = (validate_positive_int(v, name) for v in clip_size)
    return t, h, w


def check_float(value: Any, name: str, allow_zero: bool = False) -> float:
    """A finite number ``> 0`` (``>= 0`` with ``allow_zero``), or an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return number

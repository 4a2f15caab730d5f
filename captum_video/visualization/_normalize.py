"""Normalise a relevance volume once over the whole clip, so frames can be compared.

Captum's image visualisation normalises one ``(H, W)`` map with ``_normalize_attr``: sign
filter, then divide by the value at which the cumulative sum of sorted ``|attr|`` reaches
``100 - outlier_perc`` percent of the total, clipped to ``[-1, 1]``. That code is
shape-agnostic, so calling it once on the ``(T, H, W)`` volume gives the volume-wise
normalisation video explanations need (as in the Saliency Tubes code): a frame that holds
little relevance stays pale instead of being stretched to full colour by a per-frame rescale.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
from captum.attr._utils.visualization import _normalize_attr

from captum_video.relevance import SIGNS, apply_sign
from captum_video.visualization._inputs import attr_volume

__all__ = ["normalize_video_attr", "apply_sign", "check_sign"]

NormalizeMode = Literal["percentile", "max", "minmax"]


def check_sign(sign: str) -> None:
    """Raise a ValueError unless ``sign`` is one of Captum's ``VisualizeSign`` names."""
    if sign not in SIGNS:
        raise ValueError(f"sign must be one of {', '.join(SIGNS)}, got {sign!r}")


def _normalize_frames_separately(volume: np.ndarray, **kwargs: Any) -> np.ndarray:
    with warnings.catch_warnings():
        # empty frames are normal in a clip; only an empty clip deserves the warning
        warnings.filterwarnings("ignore", message="the .* relevance of this clip is zero")
        return np.stack([normalize_video_attr(frame[None], **kwargs)[0] for frame in volume])


def normalize_video_attr(
    attr: Any,
    sign: str = "absolute_value",
    outlier_perc: int | float = 2,
    mode: NormalizeMode = "percentile",
    per_frame: bool = False,
) -> np.ndarray:
    r"""Normalise one clip's relevance to ``[0, 1]`` (or ``[-1, 1]`` for ``sign="all"``).

    The default reproduces Captum's ``_normalize_attr`` (sign filter, cumulative-sum outlier
    threshold, clip) but computes the threshold once over all frames, so equal colours mean
    equal relevance in every frame.

    Args:
        attr (Tensor or ndarray): ``(1, C, T, H, W)``, ``(C, T, H, W)`` or ``(T, H, W)``
            relevance of one clip; channels are summed first, as Captum does.
        sign (str, optional): ``"positive"``, ``"absolute_value"``, ``"negative"`` or
            ``"all"``, with Captum's meanings. ``negative`` relevance comes back as
            magnitudes in ``[0, 1]``, as in Captum. Default: ``"absolute_value"``
        outlier_perc (int or float, optional): percentage of the total relevance held by the
            largest values that saturates to 1 (Captum's ``outlier_perc``); ``mode="percentile"``
            only. Default: 2
        mode (str, optional): ``"percentile"`` (Captum's threshold), ``"max"`` (divide by the
            largest magnitude: Saliency Tubes' Keras script / Hiley's ``max|R|``) or
            ``"minmax"`` (``(m - min) / (max - min)`` of the sign-filtered volume, as the
            Saliency Tubes PyTorch code; not for ``sign="all"``). Default: ``"percentile"``
        per_frame (bool, optional): normalise every frame on its own. This hides how
            relevance changes over time; use it only to inspect weak frames. Default: False

    Returns:
        ndarray: ``(T, H, W)`` float64 in ``[0, 1]`` (``[-1, 1]`` for ``sign="all"``). An
        all-zero volume gives zeros (with a warning) instead of dividing by zero.

    Example::

        >>> attr = torch.zeros(1, 3, 4, 8, 8)
        >>> attr[0, :, 0, 2:4, 2:4] = 1.0   # strong in frame 0
        >>> attr[0, :, 3, 2:4, 2:4] = 0.1   # weak in frame 3
        >>> norm = normalize_video_attr(attr)
        >>> float(norm[0].max()), round(float(norm[3].max()), 2)
        (1.0, 0.1)
    """
    check_sign(sign)
    if mode not in ("percentile", "max", "minmax"):
        raise ValueError(f"mode must be 'percentile', 'max' or 'minmax', got {mode!r}")
    if not 0 <= outlier_perc < 100:
        raise ValueError(f"outlier_perc must be in [0, 100), got {outlier_perc}")
    if mode == "minmax" and sign == "all":
        raise ValueError(
            "mode='minmax' maps to [0, 1] and cannot keep signs; use sign='all' "
            "with mode='percentile' or 'max'"
        )
    volume = attr_volume(attr)
    if per_frame:
        return _normalize_frames_separately(volume, sign=sign, outlier_perc=outlier_perc, mode=mode)
    filtered = apply_sign(volume, sign)
    magnitude = np.abs(filtered)
    if not magnitude.any():
        warnings.warn(
            f"the {sign} relevance of this clip is zero everywhere; drawing zeros", stacklevel=2
        )
        return np.zeros_like(volume)
    if mode == "percentile" and outlier_perc == 0:
        # No outliers means the threshold is the largest magnitude. Captum's
        # _cumulative_sum_threshold(v, 100) can raise IndexError here, because
        # cum[-1] * 0.01 * 100 may round above cum[-1] (e.g. 64 values of float32 0.1).
        mode = "max"
    if mode == "percentile":
        # Captum's own normaliser, called once on the whole volume (it is shape-agnostic).
        # Its "tiny threshold" warning is noise here: relevance scales are arbitrary.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Attempting to normalize by value")
            return _normalize_attr(volume, sign, outlier_perc)
    if mode == "max":
        return filtered / magnitude.max()
    low, high = float(filtered.min()), float(filtered.max())
    if high == low:
        return np.ones_like(filtered)
    return (filtered - low) / (high - low)

r"""Localisation of video explanations against ground truth: pointing game, relevance mass
and relevance rank.

Ground truth comes as voxel masks ``(N, T, H, W)`` (e.g. from
:class:`~captum_video.datasets.MovingShapes`) or, for the pointing game, as per-frame boxes.
Every function is batched over clips and frames and runs on the attribution's device.

- :func:`pointing_game` (Zhang et al. 2016, TorchRay convention): per frame,
  the maximum of the map is a hit if it lies within ``tolerance`` pixels of the object.
- :func:`relevance_mass` (Arras et al. 2022, "relevance mass accuracy"; with magnitudes, the
  share of Ross et al. 2017, "Right for the Right Reasons"): the share of relevance inside the
  mask.
- :func:`relevance_rank` (Arras et al. 2022, "relevance rank accuracy"): of the K most
  relevant voxels, with K the mask's size, the share inside the mask.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from captum_video._validation import validate_finite
from captum_video.relevance import reduce_channels

__all__ = ["PointingGameResult", "pointing_game", "relevance_mass", "relevance_rank"]

Relevance = Literal["positive", "absolute", "signed"]


class PointingGameResult(NamedTuple):
    """Result of :func:`pointing_game`.

    Attributes:
        accuracy (Tensor): ``(N,)`` hits / frames with ground truth (NaN for a clip with none).
        hits (Tensor): ``(N, T)`` bool, the frame's maximum lies on the object.
        valid (Tensor): ``(N, T)`` bool, the frame has ground truth (counted in ``accuracy``).
    """

    accuracy: Tensor
    hits: Tensor
    valid: Tensor


def pointing_game(
    attributions: Tensor,
    boxes_or_masks: Tensor,
    tolerance: float = 15.0,
) -> PointingGameResult:
    r"""Pointing game per frame: is the map's maximum on (or near) the ground-truth object?

    In every frame the point is the location of the largest value of the channel-summed
    map (the first one on ties). With a mask it is a hit when some object pixel lies within
    Euclidean distance ``tolerance`` of the point (distance ``<= tolerance``, so the edge
    counts); with a box it is a hit when the point lies inside the box enlarged by
    ``tolerance`` pixels on each side. Frames without ground truth (an empty mask, or a box
    with ``x1 < x0`` or NaN) are left out, as the object is not there.

    TorchRay uses 15 px on 224 px images; scale the tolerance with the frame size (about
    2 px on 32 px frames).

    Args:
        attributions (Tensor): ``(N, C, T, H, W)``; channels are summed.
        boxes_or_masks (Tensor): masks ``(N, T, H, W)`` or ``(N, 1, T, H, W)`` (bool or
            0/1), or boxes ``(N, T, 4)`` as inclusive pixel coordinates
            ``(x0, y0, x1, y1)`` (x is the column, y the row).
        tolerance (float, optional): accepted distance in pixels. Default: 15.0

    Returns:
        PointingGameResult: ``(accuracy, hits, valid)``.

    Example::

        >>> clips, labels, masks = MovingShapes("motion", num_samples=4).tensors()
        >>> attr = GradCAMTube(model, model.layer3).attribute(clips, target=labels)
        >>> pointing_game(attr, masks, tolerance=2).accuracy.mean()
    """
    relevance = _channel_sum(attributions, "signed")
    n, t, h, w = relevance.shape
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, (int, float))
        or not math.isfinite(tolerance)
        or tolerance < 0
    ):
        raise ValueError(f"tolerance must be a finite number of pixels >= 0, got {tolerance!r}")
    flat_max = relevance.flatten(2).argmax(2)  # (N, T)
    py = torch.div(flat_max, w, rounding_mode="floor").to(relevance.dtype)
    px = (flat_max % w).to(relevance.dtype)
    gt = boxes_or_masks
    if isinstance(gt, Tensor) and gt.dim() == 3 and gt.shape == (n, t, 4):
        boxes = gt.to(device=relevance.device, dtype=relevance.dtype)
        x0, y0, x1, y1 = boxes.unbind(-1)
        valid = (x1 >= x0) & (y1 >= y0)  # NaN compares False: no box
        hits = (
            (px >= x0 - tolerance)
            & (px <= x1 + tolerance)
            & (py >= y0 - tolerance)
            & (py <= y1 + tolerance)
        )
    else:
        mask = _mask(gt, (n, t, h, w), relevance.device)
        valid = mask.flatten(2).any(2)
        yy = torch.arange(h, device=relevance.device, dtype=relevance.dtype).view(1, 1, h, 1)
        xx = torch.arange(w, device=relevance.device, dtype=relevance.dtype).view(1, 1, 1, w)
        dist2 = (yy - py.view(n, t, 1, 1)) ** 2 + (xx - px.view(n, t, 1, 1)) ** 2
        inf = torch.tensor(float("inf"), device=relevance.device, dtype=relevance.dtype)
        nearest = torch.where(mask, dist2, inf).flatten(2).amin(2)
        hits = nearest <= tolerance**2
    hits = hits & valid
    count = valid.sum(1)
    accuracy = hits.sum(1).to(relevance.dtype) / count.to(relevance.dtype)  # 0/0 -> NaN
    return PointingGameResult(accuracy, hits, valid)


def relevance_mass(attributions: Tensor, mask: Tensor, relevance: Relevance = "positive") -> Tensor:
    r"""Share of relevance that falls inside a ground-truth mask.

    ``mass = sum_{v in mask} r_v / sum_v r_v`` with ``r`` the positive part of the
    attribution (``"positive"``, Arras et al.'s relevance mass accuracy), its magnitude
    (``"absolute"``, the "right reasons" share of Ross et al. 2017) or the signed value. The
    transform is applied per channel, then channels are summed. A map that is zero outside the mask
    scores 1.0; a uniform map scores the mask's share of the clip. A map with no relevance
    at all gives NaN.

    Args:
        attributions (Tensor): ``(N, C, T, H, W)`` relevance.
        mask (Tensor): ``(N, T, H, W)`` or ``(N, 1, T, H, W)``, bool or 0/1.
        relevance (str, optional): ``"positive"``, ``"absolute"`` or ``"signed"``.
            Default: ``"positive"``

    Returns:
        Tensor: ``(N,)`` on the attribution's device.

    Example::

        >>> relevance_mass(attr, masks).mean()   # share of relevance on the moving square
    """
    r = _channel_sum(attributions, relevance)
    m = _mask(mask, tuple(r.shape), r.device)
    total = r.flatten(1).sum(1)
    inside = (r * m).flatten(1).sum(1)
    return torch.where(
        total != 0,
        inside / total.where(total != 0, torch.ones_like(total)),
        torch.full_like(total, float("nan")),
    )


def relevance_rank(attributions: Tensor, mask: Tensor, relevance: Relevance = "positive") -> Tensor:
    r"""Share of the ``K`` most relevant voxels that lie inside the mask, ``K = |mask|``.

    Arras et al.'s relevance rank accuracy, per clip. Ties are broken by voxel order, so
    give a map without plateaus (a constant map scores the mask's position, not 0.5). A
    perfect map (largest inside the mask) scores 1.0. Clips with an empty mask give NaN.

    Args:
        attributions (Tensor): ``(N, C, T, H, W)`` relevance.
        mask (Tensor): ``(N, T, H, W)`` or ``(N, 1, T, H, W)``, bool or 0/1.
        relevance (str, optional): ``"positive"``, ``"absolute"`` or ``"signed"`` (how
            channels are combined before ranking, as in :func:`relevance_mass`).
            Default: ``"positive"``

    Returns:
        Tensor: ``(N,)`` in ``[0, 1]``.

    Example::

        >>> relevance_rank(attr, masks).mean()
    """
    r = _channel_sum(attributions, relevance).flatten(1)
    m = _mask(mask, (r.shape[0], *attributions.shape[2:]), r.device).flatten(1)
    k = m.sum(1)
    order = r.argsort(dim=1, descending=True, stable=True)
    inside_sorted = m.gather(1, order).cumsum(1)  # hits among the top-j, j = 1..V
    hits = inside_sorted.gather(1, (k - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
    kf = k.to(r.dtype)
    return torch.where(k > 0, hits.to(r.dtype) / kf.clamp(min=1), torch.full_like(kf, float("nan")))


_REDUCTION = {"positive": "positive_sum", "absolute": "abs_sum", "signed": "sum"}


def _channel_sum(attributions: Tensor, relevance: str) -> Tensor:
    if not isinstance(attributions, Tensor):
        raise TypeError(f"attributions must be a Tensor, got {type(attributions).__name__}")
    if attributions.dim() != 5:
        raise ValueError(
            f"attributions must be (N, C, T, H, W), got shape {tuple(attributions.shape)}"
        )
    if relevance not in _REDUCTION:
        raise ValueError(f"relevance must be 'positive', 'absolute' or 'signed', got {relevance!r}")
    validate_finite(attributions, "attributions")
    if not attributions.is_floating_point():
        attributions = attributions.float()
    return reduce_channels(attributions, _REDUCTION[relevance])[:, 0]  # type: ignore[arg-type]


def _mask(mask: Tensor, shape: tuple[int, ...], device: torch.device) -> Tensor:
    """A bool mask ``(N, T, H, W)`` from ``(N, T, H, W)`` or ``(N, 1, T, H, W)``."""
    if not isinstance(mask, Tensor):
        raise TypeError(f"the ground truth must be a Tensor, got {type(mask).__name__}")
    validate_finite(mask, "the ground-truth mask")
    if mask.dim() == 5 and mask.shape[1] == 1:
        mask = mask[:, 0]
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(
            f"the ground-truth mask must have shape (N, T, H, W) = {tuple(shape)} "
            f"(or (N, 1, T, H, W)), or boxes (N, T, 4); got {tuple(mask.shape)}"
        )
    return mask.to(device) != 0

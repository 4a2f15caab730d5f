r"""Feature masks for Captum's perturbation methods on video: frames, segments, tubes,
supervoxels and optical-flow regions.

Every builder returns an integer ``feature_mask`` for ``FeatureAblation``,
``ShapleyValueSampling``, ``Lime``, ``KernelShap`` or ``FeaturePermutation``: a ``long``
tensor that broadcasts to the clip ``(N, C, T, H, W)`` (the channel axis is 1, so all colour
channels of a voxel form one feature), with ids ``0 .. K - 1`` that are all used, so every
voxel belongs to exactly one feature::

    >>> fa = FeatureAblation(model)
    >>> attr = fa.attribute(clip, target=label, feature_mask=frame_mask(clip))

Content-independent masks (frames, segments, tubes) are ``(1, 1, T, *, *)`` and shared by the
batch; content-dependent ones (supervoxels, flow) are ``(N, 1, T, H, W)``, one per clip.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from captum_video._validation import validate_video
from captum_video.flow import check_threshold, flow_magnitude, optical_flow

__all__ = [
    "frame_mask",
    "segment_mask",
    "tube_mask",
    "shifted_tube_mask",
    "cuboid_ids",
    "supervoxel_mask",
    "flow_mask",
    "num_features",
    "relabel",
]


def num_features(mask: Tensor) -> int:
    r"""Number of features of a mask with ids ``0 .. K - 1`` (``max + 1``).

    Args:
        mask (Tensor): an integer feature mask.

    Returns:
        int: ``K``.

    Example::

        >>> num_features(frame_mask(torch.rand(1, 3, 8, 16, 16)))
        8
    """
    _check_mask(mask)
    return int(mask.max()) + 1


def _check_mask(mask: Tensor) -> None:
    """A non-empty integer feature mask, or a TypeError / ValueError naming ``mask``."""
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask must be an integer Tensor of feature ids, got {type(mask).__name__}")
    if mask.is_floating_point() or mask.is_complex() or mask.dtype == torch.bool:
        raise TypeError(
            f"mask must hold integer feature ids, got dtype {mask.dtype}; build one with "
            "frame_mask, tube_mask, ... or pass mask.long()"
        )
    if mask.dim() == 0 or mask.numel() == 0:
        raise ValueError(f"mask must be a non-empty (N, ...) tensor, got shape {tuple(mask.shape)}")


def relabel(mask: Tensor) -> Tensor:
    r"""Renumber each clip's ids to ``0 .. K_n - 1`` in order of first appearance in sorted id
    order, dropping unused ids (what Captum expects: no empty features).

    Args:
        mask (Tensor): integer mask ``(N, ...)``.

    Returns:
        Tensor: ``long`` mask of the same shape.

    Example::

        >>> relabel(torch.tensor([[3, 3, 7], [0, 5, 5]]))
        tensor([[0, 0, 1],
                [0, 1, 1]])
    """
    _check_mask(mask)
    flat = mask.reshape(mask.shape[0], -1).long()
    # Per-clip dense ranks without a Python loop: offset each clip into its own id range.
    span = int(flat.max()) - int(flat.min()) + 1
    shifted = flat - flat.min() + span * torch.arange(flat.shape[0], device=mask.device)[:, None]
    _, inverse = torch.unique(shifted, return_inverse=True)
    first_of_clip = inverse.min(dim=1, keepdim=True).values
    return (inverse - first_of_clip).view(mask.shape)


def _shape(video: Tensor) -> tuple[int, int, int, int]:
    validate_video(video, name="video", check_finite=False)
    n, _, t, h, w = video.shape
    return n, t, h, w


def frame_mask(video: Tensor) -> Tensor:
    r"""One feature per frame: ``(1, 1, T, 1, 1)`` with id ``t`` for frame ``t``.

    Args:
        video (Tensor): clips ``(N, C, T, H, W)`` (only shape and device are used).

    Returns:
        Tensor: ``long`` mask ``(1, 1, T, 1, 1)`` on the clip's device.

    Example::

        >>> frame_mask(torch.rand(2, 3, 4, 8, 8)).flatten()
        tensor([0, 1, 2, 3])
    """
    _, t, _, _ = _shape(video)
    return torch.arange(t, device=video.device).view(1, 1, t, 1, 1)


def segment_mask(video: Tensor, num_segments: int) -> Tensor:
    r"""One feature per run of consecutive frames: ``T`` frames split into ``num_segments``
    segments whose lengths differ by at most one (as ``torch.tensor_split``).

    Args:
        video (Tensor): clips ``(N, C, T, H, W)``.
        num_segments (int): number of segments, ``1 <= num_segments <= T``.

    Returns:
        Tensor: ``long`` mask ``(1, 1, T, 1, 1)``.

    Example::

        >>> segment_mask(torch.rand(1, 3, 8, 8, 8), 3).flatten()
        tensor([0, 0, 0, 1, 1, 1, 2, 2])
    """
    _, t, _, _ = _shape(video)
    if not isinstance(num_segments, int) or not 1 <= num_segments <= t:
        raise ValueError(f"num_segments must be an int in [1, {t}], got {num_segments!r}")
    frames = torch.arange(t, device=video.device)
    # Segment j starts at the tensor_split boundary: the first j * (T % K) segments are longer.
    size, extra = divmod(t, num_segments)
    long_part = extra * (size + 1)
    ids = torch.where(
        frames < long_part,
        frames // (size + 1),
        extra + (frames - long_part) // max(size, 1),
    )
    return ids.view(1, 1, t, 1, 1)


def cuboid_ids(
    size: tuple[int, int, int],
    cell: tuple[int | None, int, int],
    device: torch.device | str | None = None,
) -> tuple[Tensor, int]:
    r"""The cuboid cell each voxel of a ``(T, H, W)`` grid falls in, and the number of cells.

    Cells of ``(t, h, w)`` frames x rows x columns tile the grid in raster order (time
    slowest); cells at the far borders may be smaller, and a cell larger than the grid along an
    axis covers that axis once.

    Args:
        size (tuple of int): ``(T, H, W)``.
        cell (tuple): ``(t, h, w)`` cell extent; ``t = None`` spans all frames.
        device (torch.device or str, optional): where the ids go. Default: CPU

    Returns:
        tuple: ``(ids, count)``, ``ids`` a ``long`` tensor ``(T, H, W)`` in ``0 .. count - 1``.

    Example::

        >>> ids, count = cuboid_ids((4, 4, 4), (2, 2, 4))
        >>> count, ids[3, 3, 0].item()
        (4, 3)
    """
    t, h, w = (int(s) for s in size)
    ct, ch, cw = cell
    ct = t if ct is None else ct
    for name, extent in (("t", ct), ("h", ch), ("w", cw)):
        if isinstance(extent, bool) or not isinstance(extent, int) or extent < 1:
            raise ValueError(f"cell {name} must be a positive int, got {extent!r} (cell={cell})")
    nt, nh, nw = math.ceil(t / ct), math.ceil(h / ch), math.ceil(w / cw)
    it = torch.arange(t, device=device) // ct
    ih = torch.arange(h, device=device) // ch
    iw = torch.arange(w, device=device) // cw
    ids = (it.view(t, 1, 1) * nh + ih.view(1, h, 1)) * nw + iw.view(1, 1, w)
    return ids, nt * nh * nw


def tube_mask(video: Tensor, cell: tuple[int | None, int, int]) -> Tensor:
    r"""One feature per spatio-temporal cell of ``(t, h, w)`` frames x pixels: a grid of
    tubes (``t = None`` or ``T`` makes each tube span the whole clip). Cells at the far
    borders may be smaller.

    Args:
        video (Tensor): clips ``(N, C, T, H, W)``.
        cell (tuple): ``(t, h, w)`` cell extent in frames, rows and columns.

    Returns:
        Tensor: ``long`` mask ``(1, 1, T, H, W)``, ids in raster order (time slowest).

    Example::

        >>> m = tube_mask(torch.rand(1, 3, 8, 16, 16), (4, 8, 8))
        >>> num_features(m)
        8
    """
    _, t, h, w = _shape(video)
    return cuboid_ids((t, h, w), cell, video.device)[0].view(1, 1, t, h, w)


def shifted_tube_mask(
    video: Tensor, cell: tuple[int | None, int, int], offset: tuple[int, int, int]
) -> Tensor:
    r"""The grid of :func:`tube_mask` with its cell boundaries shifted by ``offset`` voxels.

    Along an axis of cell extent ``c``, boundaries lie where ``(i + o) % c == 0``. A border
    cell thinner than half a cell joins its neighbour, so a shifted grid has as many features
    as the unshifted one, give or take one per axis (thin slivers would be features of a few
    voxels, each costing a sampling method its share of the samples). Several shifts of one
    cell give segmentations that no single placement privileges
    (:class:`~captum_video.attr.AggregatedPerturbation` averages runs over them).

    Args:
        video (Tensor): clips ``(N, C, T, H, W)``.
        cell (tuple): ``(t, h, w)`` cell extent in frames, rows and columns (``t = None``:
            whole-clip tubes, which are not shifted in time).
        offset (tuple of int): ``(t, h, w)`` shift, each in ``0 .. extent - 1``.

    Returns:
        Tensor: ``long`` mask ``(1, 1, T, H, W)``, ids in raster order (time slowest).

    Example::

        >>> m = shifted_tube_mask(torch.rand(1, 3, 8, 16, 16), (8, 8, 8), (0, 2, 2))
        >>> num_features(m), m[0, 0, 0, 5, 5].item(), m[0, 0, 0, 6, 6].item()
        (4, 0, 3)
    """
    _, t, h, w = _shape(video)
    extents = (t if cell[0] is None else cell[0], cell[1], cell[2])
    cuboid_ids((t, h, w), extents)  # checks each extent
    if (
        not isinstance(offset, (tuple, list))
        or len(offset) != 3
        or not all(
            isinstance(o, int) and not isinstance(o, bool) and 0 <= o < c
            for o, c in zip(offset, extents, strict=True)
        )
    ):
        raise ValueError(
            f"offset must be three ints (t, h, w), each in 0 .. cell extent - 1 for cell "
            f"{extents}, got {offset!r}"
        )
    if cell[0] is None:
        offset = (0, offset[1], offset[2])
    (it, _), (ih, nh), (iw, nw) = (
        _axis_cells(size, int(c), int(o), video.device)
        for size, c, o in zip((t, h, w), extents, offset, strict=True)
    )
    ids = (it.view(t, 1, 1) * nh + ih.view(1, h, 1)) * nw + iw.view(1, 1, w)
    return ids.view(1, 1, t, h, w)


def _axis_cells(length: int, cell: int, offset: int, device: torch.device) -> tuple[Tensor, int]:
    """Cell index of each position along one axis of a grid shifted by ``offset``, and the
    number of cells (thin border cells joined to their neighbours)."""
    index = (torch.arange(length, device=device) + offset) // cell
    last = int(index[-1])
    if last > 0 and (cell - offset) * 2 < cell:
        index = index.clamp_min(1)  # a thin first cell joins the second
    if int(index[-1]) > int(index[0]) and (length + offset - last * cell) * 2 < cell:
        index = index.clamp_max(last - 1)  # a thin last cell joins the one before
    index = index - index[0]
    return index, int(index[-1]) + 1


def supervoxel_mask(
    video: Tensor,
    n_segments: int = 64,
    compactness: float = 1.0,
    n_iter: int = 10,
    temporal_weight: float = 1.0,
    chunk: int = 32768,
    offset: tuple[float, float, float] | None = None,
) -> Tensor:
    r"""Spatio-temporal superpixels (SLIC supervoxels): k-means on ``(t, y, x, colour)``.

    Centres start on a regular ``(t, y, x)`` grid with spacing ``S = (THW / n_segments)^(1/3)``
    (cells anisotropic when the clip is short), each at ``offset`` of its cell (the middle by
    default; k-means ends where it starts, so another offset gives another, equally valid
    segmentation). Each iteration assigns every voxel to the
    nearest centre under SLIC's distance ``d_colour^2 + (compactness / S)^2 d_space^2``,
    with colour in the clip's own range, and moves the centres to the means. Everything runs
    in torch on the clip's device; voxel-to-centre distances are computed in chunks of
    ``chunk`` voxels. Connectivity is not enforced (as in plain k-means), so a supervoxel can
    have detached parts; empty clusters are dropped and ids renumbered.

    Args:
        video (Tensor): clips ``(N, C, T, H, W)``.
        n_segments (int, optional): about how many supervoxels. Default: 64
        compactness (float, optional): weight of space against colour; larger gives more
            regular, grid-like cells (colours are scaled to [0, 1], so values
            around 1 balance colour and space; SLIC's 10 is for Lab colours). Default: 1.0
        n_iter (int, optional): k-means iterations. Default: 10
        temporal_weight (float, optional): scale of the time axis against space; above 1
            makes supervoxels shorter in time. Default: 1.0
        chunk (int, optional): voxels per distance block (memory knob). Default: 32768
        offset (tuple of float, optional): where in its grid cell each initial centre lies,
            per axis ``(t, y, x)``, each in ``[0, 1)``. Default: None (``0.5``: the middle)

    Returns:
        Tensor: ``long`` mask ``(N, 1, T, H, W)``, ids ``0 .. K_n - 1`` per clip.

    Example::

        >>> clip = torch.rand(1, 3, 8, 32, 32)
        >>> m = supervoxel_mask(clip, n_segments=16)
        >>> m.shape
        torch.Size([1, 1, 8, 32, 32])
    """
    n, t, h, w = _shape(video)
    if not isinstance(n_segments, int) or n_segments < 1:
        raise ValueError(f"n_segments must be a positive int, got {n_segments!r}")
    fractions = _cell_offset(offset)
    dev = video.device
    colour = video.detach().float()
    lo = colour.amin(dim=(1, 2, 3, 4), keepdim=True)
    hi = colour.amax(dim=(1, 2, 3, 4), keepdim=True)
    colour = (colour - lo) / (hi - lo).clamp_min(1e-8)
    # Grid of initial centres: as many cells per axis as fit the voxel budget.
    step = (t * h * w / n_segments) ** (1 / 3)
    counts = [max(1, min(size, round(size / step))) for size in (t, h, w)]
    spacing = (t * h * w / math.prod(counts)) ** (1 / 3)
    coords = torch.stack(
        torch.meshgrid(
            torch.arange(t, device=dev, dtype=torch.float32) * temporal_weight,
            torch.arange(h, device=dev, dtype=torch.float32),
            torch.arange(w, device=dev, dtype=torch.float32),
            indexing="ij",
        ),
        dim=-1,
    ).view(-1, 3)
    scale = compactness / spacing
    # Voxel features (N, V, 3 + C): scaled position, then colour.
    feats = torch.cat(
        [
            (coords * scale).expand(n, -1, -1),
            colour.flatten(2).transpose(1, 2),
        ],
        dim=2,
    )
    grid = [
        ((torch.arange(c, device=dev, dtype=torch.float32) + f) * size / c).floor().long()
        for c, size, f in zip(counts, (t, h, w), fractions, strict=True)
    ]
    seeds = torch.stack(torch.meshgrid(*grid, indexing="ij"), dim=-1).view(-1, 3)
    seed_index = (seeds[:, 0] * h + seeds[:, 1]) * w + seeds[:, 2]
    centres = feats[:, seed_index]  # (N, K, 3 + C)
    k = centres.shape[1]
    for _ in range(max(1, n_iter)):
        labels = torch.cat(
            [
                torch.cdist(feats[:, i : i + chunk], centres).argmin(2)
                for i in range(0, feats.shape[1], chunk)
            ],
            dim=1,
        )
        sums = torch.zeros_like(centres).scatter_add_(
            1, labels.unsqueeze(2).expand_as(feats), feats
        )
        sizes = torch.zeros(n, k, device=dev).scatter_add_(
            1, labels, torch.ones_like(labels, dtype=torch.float32)
        )
        # Empty clusters keep their old centre (and are dropped by relabel).
        centres = torch.where(
            sizes.unsqueeze(2) > 0, sums / sizes.clamp_min(1).unsqueeze(2), centres
        )
    return relabel(labels.view(n, t, h, w)).view(n, 1, t, h, w)


def _cell_offset(offset: Any) -> tuple[float, float, float]:
    """``offset`` of :func:`supervoxel_mask` checked: three fractions in ``[0, 1)``."""
    if offset is None:
        return (0.5, 0.5, 0.5)
    if (
        not isinstance(offset, (tuple, list))
        or len(offset) != 3
        or not all(isinstance(f, (int, float)) and 0 <= f < 1 for f in offset)
    ):
        raise ValueError(
            "offset must be three fractions (t, y, x) in [0, 1) of a grid cell, such as "
            f"(0.5, 0.25, 0.75), got {offset!r}"
        )
    return (float(offset[0]), float(offset[1]), float(offset[2]))


def flow_mask(
    video: Tensor,
    threshold: float = 0.5,
    directions: int = 4,
    num_segments: int = 1,
    **farneback: float | int,
) -> Tensor:
    r"""Features from dense optical flow: within each temporal segment, the static voxels form
    one feature and the moving voxels (speed above ``threshold``) one feature per direction
    bin. Ablating a feature removes "what moves right in frames 0-3", say.

    The flow comes from :func:`captum_video.flow.optical_flow` (OpenCV Farneback).

    Args:
        video (Tensor): clips ``(N, C, T, H, W)``, ``T >= 2``.
        threshold (float, optional): speed in pixels per frame above which a voxel moves.
            Default: 0.5
        directions (int, optional): number of equal angular bins for the flow direction
            (bin 0 is centred on "right", counter-clockwise in image coordinates).
            Default: 4
        num_segments (int, optional): temporal segments, as :func:`segment_mask`. Default: 1
        **farneback: Farneback parameter overrides passed to ``optical_flow``.

    Returns:
        Tensor: ``long`` mask ``(N, 1, T, H, W)``, ids ``0 .. K_n - 1`` per clip.

    Example::

        >>> clip = MovingShapes("motion", num_samples=1)[0][0][None]
        >>> m = flow_mask(clip, directions=4)
        >>> m.shape
        torch.Size([1, 1, 16, 32, 32])
    """
    n, t, h, w = _shape(video)
    check_threshold(threshold)
    if not isinstance(directions, int) or directions < 1:
        raise ValueError(f"directions must be a positive int, got {directions!r}")
    segments = segment_mask(video, num_segments).view(1, t, 1, 1)
    flow = optical_flow(video, **farneback)  # (N, T, 2, H, W)
    moving = flow_magnitude(flow) > threshold  # (N, T, H, W)
    # Image y points down: negate dy so that "up" has angle +pi/2.
    angle = torch.atan2(-flow[:, :, 1], flow[:, :, 0])
    width = 2 * math.pi / directions
    bins = torch.floor((angle + width / 2) / width).long() % directions
    ids = torch.where(moving, 1 + bins, torch.zeros_like(bins)) + segments * (directions + 1)
    return relabel(ids).view(n, 1, t, h, w)

"""Clip-level temporal perturbations: frozen, shuffled, reversed and stuttered clips."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from captum_video._validation import validate_video

__all__ = [
    "freeze",
    "freeze_soft",
    "shuffle",
    "jumble",
    "reverse",
    "reverse_masked",
    "subsample",
    "mean_frame",
]


def _check(x: Tensor, name: str = "x") -> Tensor:
    # Finite-ness is not required: a perturbation should not reject what it is handed.
    return validate_video(x, name=name, check_finite=False)


def _gather_frames(x: Tensor, index: Tensor) -> Tensor:
    """``x[n, :, index[n, t]]`` for a per-clip ``(N, T)`` (or shared ``(T,)``) frame index."""
    if index.dim() == 1:
        return x.index_select(2, index)
    n, c, t, h, w = x.shape
    idx = index.to(x.device).view(n, 1, -1, 1, 1).expand(n, c, index.shape[1], h, w)
    return x.gather(2, idx)


def _mask_per_clip(mask: Tensor | Any, x: Tensor, name: str = "mask") -> Tensor:
    """A per-frame mask ``(T,)`` or ``(N, T)`` as ``(N, T)`` in ``x``'s dtype and device."""
    if not isinstance(mask, Tensor):
        mask = torch.as_tensor(mask)
    n, t = x.shape[0], x.shape[2]
    if mask.dim() == 1:
        mask = mask.unsqueeze(0)
    if mask.dim() != 2 or mask.shape[1] != t or mask.shape[0] not in (1, n):
        raise ValueError(
            f"{name} must have shape (T,) or (N, T) = ({t},) or ({n}, {t}), got {tuple(mask.shape)}"
        )
    return mask.to(device=x.device, dtype=x.dtype).expand(n, t)


def freeze(x: Tensor, frame: int = 0) -> Tensor:
    r"""The "frozen" clip: frame ``frame`` repeated ``T`` times (zero motion, same appearance).

    Args:
        x (Tensor): clips ``(N, C, T, H, W)``.
        frame (int, optional): the frame to hold; negative values count from the end.
            Default: 0

    Returns:
        Tensor: ``(N, C, T, H, W)`` with ``out[:, :, t] == x[:, :, frame]`` for every ``t``.

    Example::

        >>> clip = torch.rand(2, 3, 8, 16, 16)
        >>> frozen = freeze(clip)
        >>> bool((frozen.diff(dim=2) == 0).all())
        True
    """
    _check(x)
    t = x.shape[2]
    if not -t <= frame < t:
        raise ValueError(f"frame must be in [-{t}, {t}) for a clip of {t} frames, got {frame}")
    return x[:, :, frame : frame + 1 if frame != -1 else None].expand_as(x).contiguous()


def freeze_soft(x: Tensor, mask: Tensor) -> Tensor:
    r"""Soft freeze of Mänttäri et al.: ``y_0 = x_0``, ``y_t = (1 - m_t) x_t + m_t y_{t-1}``.

    A frame with ``m_t = 1`` repeats the previous *output* frame, so a run of ones holds the
    frame before the run; ``m_t = 0`` keeps frame ``t``. The recursion is unrolled into one
    ``(T, T)`` mixing matrix per clip, ``W[t, s] = (1 - m_s) prod_{s < u <= t} m_u`` (with
    ``m_0`` treated as 0), applied with a single ``einsum``; it is differentiable in ``mask``.

    Args:
        x (Tensor): clips ``(N, C, T, H, W)``.
        mask (Tensor): per-frame mask in ``[0, 1]``, ``(T,)`` or ``(N, T)``.

    Returns:
        Tensor: ``(N, C, T, H, W)``.

    Example::

        >>> clip = torch.rand(1, 3, 6, 8, 8)
        >>> m = torch.tensor([0.0, 0, 1, 1, 0, 0])
        >>> y = freeze_soft(clip, m)
        >>> torch.equal(y[:, :, 3], clip[:, :, 1])
        True
    """
    _check(x)
    m = _mask_per_clip(mask, x)
    t = x.shape[2]
    m = torch.cat([torch.zeros_like(m[:, :1]), m[:, 1:]], dim=1)  # y_0 = x_0
    idx = torch.arange(t, device=x.device)
    # between[t, s, u] is True for s < u <= t: the factors m_u that carry frame s to t.
    between = (idx.view(1, 1, t) > idx.view(1, t, 1)) & (idx.view(1, 1, t) <= idx.view(t, 1, 1))
    carry = torch.where(
        between.unsqueeze(0), m.view(-1, 1, 1, t), torch.ones_like(m).view(-1, 1, 1, t)
    )
    weights = carry.prod(-1) * (1 - m).unsqueeze(1)  # (N, T, S)
    weights = weights * (idx.view(t, 1) >= idx.view(1, t))  # only past frames
    return torch.einsum("nts,ncshw->ncthw", weights, x)


def _random_keys(x: Tensor, generator: torch.Generator | None) -> Tensor:
    device = generator.device if generator is not None else x.device
    n, t = x.shape[0], x.shape[2]
    return torch.rand(n, t, generator=generator, device=device).to(x.device)


def shuffle(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    r"""Each clip's frames in a uniformly random order (one permutation per clip).

    Args:
        x (Tensor): clips ``(N, C, T, H, W)``.
        generator (torch.Generator, optional): source of randomness; the same seed gives the
            same permutations. Default: None (the global generator)

    Returns:
        Tensor: ``(N, C, T, H, W)``, a permutation of each clip's frames.

    Example::

        >>> clip = torch.rand(2, 3, 8, 16, 16)
        >>> a = shuffle(clip, torch.Generator().manual_seed(0))
        >>> b = shuffle(clip, torch.Generator().manual_seed(0))
        >>> torch.equal(a, b)
        True
    """
    _check(x)
    return _gather_frames(x, _random_keys(x, generator).argsort(dim=1))


def jumble(x: Tensor, segment: int, generator: torch.Generator | None = None) -> Tensor:
    r"""Shuffle frames *within* consecutive segments of ``segment`` frames (Schiappa et al.).

    Local order is destroyed while the coarse order of events survives; ``segment = T`` is a
    full :func:`shuffle`, ``segment = 1`` is the identity.

    Args:
        x (Tensor): clips ``(N, C, T, H, W)``.
        segment (int): frames per segment (the last segment may be shorter).
        generator (torch.Generator, optional): source of randomness. Default: None

    Returns:
        Tensor: ``(N, C, T, H, W)``.

    Example::

        >>> clip = torch.arange(8.0).view(1, 1, 8, 1, 1)
        >>> jumble(clip, 4, torch.Generator().manual_seed(0)).flatten()[:4].sort().values
        tensor([0., 1., 2., 3.])
    """
    _check(x)
    if not isinstance(segment, int) or segment < 1:
        raise ValueError(f"segment must be a positive int, got {segment!r}")
    seg_id = torch.arange(x.shape[2], device=x.device) // segment
    # Keys in [seg_id, seg_id + 1): sorting them shuffles within segments only.
    keys = _random_keys(x, generator) + seg_id.to(x.dtype if x.is_floating_point() else torch.float)
    return _gather_frames(x, keys.argsort(dim=1))


def reverse(x: Tensor) -> Tensor:
    r"""The clip played backwards: ``out[:, :, t] = x[:, :, T - 1 - t]``.

    Args:
        x (Tensor): clips ``(N, C, T, H, W)``.

    Returns:
        Tensor: ``(N, C, T, H, W)``.

    Example::

        >>> clip = torch.rand(1, 3, 8, 16, 16)
        >>> torch.equal(reverse(reverse(clip)), clip)
        True
    """
    _check(x)
    return x.flip(2)


def reverse_masked(x: Tensor, mask: Tensor, threshold: float = 0.1) -> Tensor:
    r"""Mänttäri et al.'s masked reverse: every run of frames with ``m_t > threshold`` is played
    backwards inside itself, blended by the mask: ``y_t = (1 - m_t) x_t + m_t x_{s + e - t}``
    for a run ``s..e``. Differentiable in ``mask`` (the run boundaries are not).

    Args:
        x (Tensor): clips ``(N, C, T, H, W)``.
        mask (Tensor): per-frame mask in ``[0, 1]``, ``(T,)`` or ``(N, T)``.
        threshold (float, optional): frames above it belong to a run. Default: 0.1

    Returns:
        Tensor: ``(N, C, T, H, W)``.

    Example::

        >>> clip = torch.arange(6.0).view(1, 1, 6, 1, 1)
        >>> reverse_masked(clip, torch.tensor([0.0, 1, 1, 1, 0, 0])).flatten()
        tensor([0., 3., 2., 1., 4., 5.])
    """
    _check(x)
    m = _mask_per_clip(mask, x)
    n, t = m.shape
    on = m > threshold
    starts = on & ~torch.cat([torch.zeros_like(on[:, :1]), on[:, :-1]], dim=1)
    run = torch.where(on, starts.long().cumsum(1), torch.zeros_like(starts, dtype=torch.long))
    pos = torch.arange(t, device=x.device).expand(n, t)
    # First and last frame of every run (run 0 collects the frames that are off).
    first = torch.full((n, t + 1), t, device=x.device, dtype=torch.long)
    last = torch.full((n, t + 1), -1, device=x.device, dtype=torch.long)
    first = first.scatter_reduce(1, run, pos, reduce="amin")
    last = last.scatter_reduce(1, run, pos, reduce="amax")
    mirror = torch.where(on, first.gather(1, run) + last.gather(1, run) - pos, pos)
    weight = m.view(n, 1, t, 1, 1)
    return (1 - weight) * x + weight * _gather_frames(x, mirror)


def subsample(x: Tensor, rate: int) -> Tensor:
    r"""Keep every ``rate``-th frame and repeat it ``rate`` times (same length, stutter).

    Args:
        x (Tensor): clips ``(N, C, T, H, W)``.
        rate (int): temporal sub-sampling factor, ``>= 1``.

    Returns:
        Tensor: ``(N, C, T, H, W)`` with ``out[:, :, t] = x[:, :, (t // rate) * rate]``.

    Example::

        >>> clip = torch.arange(6.0).view(1, 1, 6, 1, 1)
        >>> subsample(clip, 2).flatten()
        tensor([0., 0., 2., 2., 4., 4.])
    """
    _check(x)
    if not isinstance(rate, int) or rate < 1:
        raise ValueError(f"rate must be a positive int, got {rate!r}")
    index = torch.arange(x.shape[2], device=x.device) // rate * rate
    return x.index_select(2, index)


def mean_frame(x: Tensor) -> Tensor:
    r"""Every frame replaced by the clip's temporal mean frame (static appearance, no motion).

    Args:
        x (Tensor): clips ``(N, C, T, H, W)``.

    Returns:
        Tensor: ``(N, C, T, H, W)``.

    Example::

        >>> clip = torch.rand(1, 3, 8, 16, 16)
        >>> torch.allclose(mean_frame(clip)[:, :, 0], clip.mean(2))
        True
    """
    _check(x)
    return x.mean(2, keepdim=True).expand_as(x).contiguous()

r"""Temporal perturbations of clips: frozen, shuffled, reversed, stuttered and blurred videos.

Every operator maps a batch of clips ``(N, C, T, H, W)`` to a tensor of the same shape, dtype
and device, with plain batched tensor ops (no Python loop over frames), so each one can be
used directly as a Captum baseline, e.g. Integrated Gradients from a frozen clip attributes
only what motion adds (spec, methods.md section 6.1)::

    >>> ig = IntegratedGradients(model)
    >>> motion_only = ig.attribute(clip, baselines=freeze(clip), target=label)

The operators that take a mask (:func:`freeze_soft`, :func:`reverse_masked`) are
differentiable in the mask, which is what :class:`captum_video.attr.TemporalMask` optimises.
Random operators take a ``generator`` so results repeat.
"""

from __future__ import annotations

import math
from collections.abc import Callable
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
    "temporal_blur",
    "spatial_blur",
    "mean_frame",
    "occlude_window",
    "PERTURBATIONS",
    "get_perturbation",
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
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
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
    sigma = 0.1 * min(h, w) if sigma is None else float(sigma)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return x.clone()
    gh = _gaussian_matrix(h, sigma, x.device, x.dtype)
    gw = _gaussian_matrix(w, sigma, x.device, x.dtype)
    return torch.einsum("yh,nctho,xo->nctyx", gh, x, gw)


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


def _fill_frames(x: Tensor, start: Tensor, stop: Tensor, fill: str, sigma: float | None) -> Tensor:
    """The values that :func:`occlude_window` writes into the window, as an ``x``-like tensor."""
    t = x.shape[2]
    if fill == "zero":
        return torch.zeros_like(x)
    if fill == "mean":
        return mean_frame(x)
    if fill == "blur":
        return spatial_blur(x, sigma)
    before = (start - 1).clamp_min(0)
    after = stop.clamp_max(t - 1)
    if fill == "freeze":
        # The last frame before the window, or the first after it when the window opens the clip.
        source = torch.where(start > 0, before, after)
        return _gather_frames(x, source.view(-1, 1).expand(-1, t))
    if fill == "interpolate":
        has_before, has_after = start > 0, stop < t
        left = torch.where(has_before, before, after)
        right = torch.where(has_after, after, before)
        pos = torch.arange(t, device=x.device).view(1, t)
        alpha = ((pos - left.view(-1, 1)) / (right - left).clamp_min(1).view(-1, 1)).clamp(0, 1)
        a = _gather_frames(x, left.view(-1, 1).expand(-1, t))
        b = _gather_frames(x, right.view(-1, 1).expand(-1, t))
        alpha = alpha.to(x.dtype).view(x.shape[0], 1, t, 1, 1)
        return (1 - alpha) * a + alpha * b
    raise ValueError(
        "fill must be 'zero', 'mean', 'blur', 'freeze', 'interpolate', a number or a tensor, "
        f"got {fill!r}"
    )


def occlude_window(
    x: Tensor,
    start: int | Tensor,
    length: int,
    fill: str | float | Tensor = "freeze",
    sigma: float | None = None,
) -> Tensor:
    r"""Replace frames ``start .. start + length - 1`` (clipped at ``T``) by a fill.

    Fills: ``"zero"``; ``"mean"`` (the clip's temporal mean frame); ``"blur"`` (the same
    frames blurred spatially, :func:`spatial_blur`); ``"freeze"`` (the last frame before the
    window, or the first after it when the window starts at 0); ``"interpolate"`` (a linear
    blend between the frames on either side of the window); a number; or a tensor that
    broadcasts to ``x`` (e.g. a dataset mean).

    Args:
        x (Tensor): clips ``(N, C, T, H, W)``.
        start (int or Tensor): first occluded frame, one for all clips or ``(N,)`` per clip.
        length (int): window length in frames, ``>= 1``.
        fill (str, float or Tensor, optional): what to put in the window. Default: ``"freeze"``
        sigma (float, optional): blur width in pixels for ``fill="blur"``. Default: None

    Returns:
        Tensor: ``(N, C, T, H, W)``.

    Example::

        >>> clip = torch.arange(6.0).view(1, 1, 6, 1, 1)
        >>> occlude_window(clip, 2, 2, fill="freeze").flatten()
        tensor([0., 1., 1., 1., 4., 5.])
    """
    _check(x)
    n, t = x.shape[0], x.shape[2]
    if not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be a positive int, got {length!r}")
    start_t = torch.as_tensor(start, device=x.device).long().flatten().expand(n)
    if bool(((start_t < 0) | (start_t >= t)).any()):
        raise ValueError(f"start must be in [0, {t}) for a clip of {t} frames, got {start}")
    stop_t = (start_t + length).clamp_max(t)
    if fill == "freeze" and bool(((start_t == 0) & (stop_t == t)).any()):
        raise ValueError("fill='freeze' needs an unoccluded frame, but the window covers the clip")
    pos = torch.arange(t, device=x.device).view(1, t)
    inside = ((pos >= start_t.view(-1, 1)) & (pos < stop_t.view(-1, 1))).view(n, 1, t, 1, 1)
    if isinstance(fill, str):
        values = _fill_frames(x, start_t, stop_t, fill, sigma)
    else:
        values = torch.as_tensor(fill, device=x.device, dtype=x.dtype)
    return torch.where(inside, values, x)


#: Named clip-level perturbations (each ``x -> x'``), used by ``temporal_sensitivity``.
PERTURBATIONS: dict[str, Callable[..., Tensor]] = {
    "freeze": freeze,
    "shuffle": shuffle,
    "reverse": reverse,
    "mean": mean_frame,
    "jumble": jumble,
    "subsample": subsample,
    "temporal_blur": temporal_blur,
}


def get_perturbation(op: str | Callable[..., Tensor]) -> Callable[..., Tensor]:
    r"""Look up a perturbation by name in :data:`PERTURBATIONS` (callables pass through).

    Args:
        op (str or callable): a name such as ``"freeze"`` or a function ``x -> x'``.

    Returns:
        callable: the operator.

    Example::

        >>> get_perturbation("reverse") is reverse
        True
    """
    if callable(op):
        return op
    if op not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {op!r}; choose from {sorted(PERTURBATIONS)}")
    return PERTURBATIONS[op]

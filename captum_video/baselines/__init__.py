r"""Temporal perturbations of clips: frozen, shuffled, reversed, stuttered and blurred videos.

Every operator maps a batch of clips ``(N, C, T, H, W)`` to a tensor of the same shape, dtype
and device, with plain batched tensor ops (no Python loop over frames), so each one can be
used directly as a Captum baseline, e.g. Integrated Gradients from a frozen clip attributes
only what motion adds::

    >>> ig = IntegratedGradients(model)
    >>> motion_only = ig.attribute(clip, baselines=freeze(clip), target=label)

The operators that take a mask (:func:`freeze_soft`, :func:`reverse_masked`) are
differentiable in the mask, which is what :class:`captum_video.attr.TemporalMask` optimises.
Random operators take a ``generator`` so results repeat.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from captum_video.baselines._blur import spatial_blur, temporal_blur
from captum_video.baselines._frames import (
    freeze,
    freeze_soft,
    jumble,
    mean_frame,
    reverse,
    reverse_masked,
    shuffle,
    subsample,
)
from captum_video.baselines._windows import (
    FILLS,
    WINDOW_DEPENDENT_FILLS,
    baseline_fill,
    occlude_window,
    occlude_windows,
)

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
    "FILLS",
    "WINDOW_DEPENDENT_FILLS",
    "baseline_fill",
    "occlude_window",
    "occlude_windows",
    "PERTURBATIONS",
    "get_perturbation",
]

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

r"""Stability of a random explanation across seeds: does the map repeat when only the seed
changes?

Sampling-based perturbation methods (LIME, Kernel SHAP, Shapley value sampling) give a
different map for every random seed, and LIME's map also depends on its segmentation (Hiley
et al. 2019, "Explainable Deep Learning for Video Recognition Tasks: A Framework &
Recommendations"; Alvarez-Melis and Jaakkola 2018, "On the Robustness of Interpretability
Methods"; Visani et al. 2020, "Statistical stability indices for LIME"; Zhou, Hooker and
Wang 2021, "S-LIME: Stabilized-LIME for Model Explanation"). The measure here is the one those
papers read off by eye: explain the same clip with ``S`` seeds and average the Spearman rank
correlation of the maps over all ``S (S - 1) / 2`` pairs, per clip:

.. math::
    \text{stability}_n = \binom{S}{2}^{-1} \sum_{i < j} \rho_s\big(|a^{(i)}_n|, |a^{(j)}_n|\big)

1 means every seed ranks the voxels alike; 0 means the ranking is noise. Ranks (not values)
are compared, so a map that only changes scale from seed to seed is perfectly stable. The
correlation itself is :func:`captum_video.metrics.sanity.spearman_correlation` (average ranks
on ties, which matters for the piecewise-constant maps of masked methods).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from captum.attr import Attribution
from torch import Tensor

from captum_video._targets import validate_target
from captum_video._validation import validate_finite, validate_video
from captum_video.metrics.sanity import spearman_correlation

__all__ = ["SeedStability", "rank_stability", "seed_stability"]


class SeedStability(NamedTuple):
    """Result of :func:`seed_stability`.

    Attributes:
        stability (Tensor): ``(N,)`` mean pairwise Spearman correlation per clip.
        maps (Tensor): ``(S, N, ...)`` the maps of every seed, in seed order (for further
            metrics on the same runs, e.g. :func:`~captum_video.metrics.relevance_mass`).
    """

    stability: Tensor
    maps: Tensor


def rank_stability(maps: Tensor | Sequence[Tensor], absolute: bool = True) -> Tensor:
    r"""Mean pairwise Spearman rank correlation of ``S`` maps of the same clips, per clip.

    Every map is flattened per clip (all channels and voxels); ties share their mean rank.
    A map that is constant for a clip has no ranking: its pairs, and so the clip's
    stability, are NaN.

    Args:
        maps (Tensor or sequence of Tensor): ``(S, N, ...)`` or ``S`` tensors ``(N, ...)`` of
            one shape, ``S >= 2``: the maps of the same ``N`` clips from ``S`` runs.
        absolute (bool, optional): compare magnitudes ``|a|`` (a voxel that matters counts
            whatever its sign, as in the sanity checks of Adebayo et al. 2018); ``False``
            compares signed values. Default: True

    Returns:
        Tensor: ``(N,)`` in ``[-1, 1]``, on the maps' device.

    Example::

        >>> base = torch.rand(2, 1, 4, 8, 8)
        >>> runs = [base + 0.01 * torch.randn_like(base) for _ in range(3)]
        >>> rank_stability(runs).shape
        torch.Size([2])
    """
    if isinstance(maps, Tensor):
        stacked = maps
    elif isinstance(maps, Sequence) and all(isinstance(m, Tensor) for m in maps) and maps:
        shapes = {tuple(m.shape) for m in maps}
        if len(shapes) != 1:
            raise ValueError(f"maps must all have one shape, got shapes {sorted(shapes)}")
        stacked = torch.stack(list(maps))
    else:
        raise TypeError(
            "maps must be a (S, N, ...) tensor or a sequence of S (N, ...) tensors, got "
            f"{type(maps).__name__}"
        )
    if stacked.dim() < 3 or stacked.shape[0] < 2:
        raise ValueError(
            "maps must hold at least 2 runs of (N, ...) maps: a (S, N, ...) tensor with "
            f"S >= 2 and a map dimension, got shape {tuple(stacked.shape)}"
        )
    validate_finite(stacked, "maps")
    flat = stacked.detach().flatten(2).float()
    if absolute:
        flat = flat.abs()
    pairs = itertools.combinations(range(flat.shape[0]), 2)
    return torch.stack([spearman_correlation(flat[i], flat[j]) for i, j in pairs]).mean(0)


def seed_stability(
    explain: Attribution | Callable[[Tensor, Any], Tensor],
    inputs: Tensor,
    seeds: Sequence[int] = (0, 1, 2, 3),
    target: Any = None,
    absolute: bool = True,
    **attribute_kwargs: Any,
) -> SeedStability:
    r"""Explain the same clips once per seed and measure how alike the maps rank the voxels.

    Each run seeds torch's global random number generator with ``seeds[i]``
    (``torch.manual_seed``; this is what Captum's ``Lime``, ``KernelShap``,
    ``ShapleyValueSampling`` and ``FeaturePermutation`` draw from) inside
    ``torch.random.fork_rng``, so the caller's random state is the same afterwards. The
    maps then go to :func:`rank_stability`.

    Args:
        explain (Attribution or Callable): a Captum attribution object, called as
            ``explain.attribute(inputs, target=target, **attribute_kwargs)``, or a callable
            ``explain(inputs, target) -> (N, ...)`` maps.
        inputs (Tensor): clips ``(N, C, T, H, W)``.
        seeds (sequence of int, optional): at least two distinct seeds. Default: ``(0, 1, 2, 3)``
        target (Any, optional): the class to explain, passed on unchanged; fix it (e.g. the
            labels) so every seed explains the same class. Default: None
        absolute (bool, optional): compare magnitudes, see :func:`rank_stability`.
            Default: True
        **attribute_kwargs: further keywords of ``explain.attribute`` (``n_samples``,
            ``feature_mask``, ``baselines``, ...); only with an attribution object.

    Returns:
        SeedStability: ``(stability, maps)``, ``stability`` ``(N,)`` and the ``(S, N, ...)``
        maps.

    Example::

        >>> model = load_demo_model("motion")
        >>> clips, labels, _ = MovingShapes("motion", num_samples=2).tensors()
        >>> result = seed_stability(Lime(model), clips, seeds=[0, 1, 2], target=labels,
        ...                         feature_mask=tube_mask(clips, (4, 8, 8)), n_samples=64)
        >>> result.stability.shape, result.maps.shape[0]
        (torch.Size([2]), 3)
    """
    validate_video(inputs, guess_layout=True)
    validate_target(target)
    seeds = list(seeds)
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int)]
    if bad or len(set(seeds)) < 2:
        raise ValueError(
            f"seeds must be at least two distinct ints, got {seeds!r}; e.g. seeds=range(4)"
        )
    if isinstance(explain, Attribution):
        method = explain

        def run() -> Tensor:
            return method.attribute(inputs, target=target, **attribute_kwargs)  # type: ignore[no-any-return]

    elif callable(explain):
        if attribute_kwargs:
            raise TypeError(
                f"keywords {sorted(attribute_kwargs)} are for an attribution object's "
                "attribute; a callable explain(inputs, target) takes none (bind them in it)"
            )
        function = explain

        def run() -> Tensor:
            return function(inputs, target)

    else:
        raise TypeError(
            "explain must be a Captum attribution object or a callable explain(inputs, "
            f"target), got {type(explain).__name__}"
        )
    # Fork the generator of the clips' CUDA device too (manual_seed seeds every device).
    devices = [inputs.device] if inputs.device.type == "cuda" else []
    maps = []
    for seed in seeds:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            out = run()
        if not isinstance(out, Tensor):
            raise TypeError(
                f"explain must return one tensor of maps (N, ...), got {type(out).__name__}; "
                "for tuple inputs pick one element in a callable"
            )
        maps.append(out.detach())
    stacked = torch.stack(maps)
    return SeedStability(rank_stability(stacked, absolute=absolute), stacked)

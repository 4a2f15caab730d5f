r"""Remove and retrain (ROAR) and keep and retrain (KAR) for video explanations.

Deletion curves (:func:`~captum_video.metrics.deletion`) ask the *trained* model about clips
with voxels replaced. The model never saw such clips, so part of the score drop is the
distribution shift of the replacement, not lost information. Hooker, Erhan, Kindermans and Kim
(2019, "A Benchmark for Interpretability Methods in Deep Neural Networks") therefore replace
the top ``k`` % of every training *and* test example's relevance by an uninformative value,
**retrain** a fresh model of the same architecture on the modified training set and measure
its accuracy on the modified test set:

- ROAR removes the ``k`` % most relevant voxels; a good explanation makes the retrained
  accuracy fall faster than a random ranking does (lower is better);
- KAR keeps only the ``k`` % most relevant voxels and replaces the rest; a good explanation
  keeps the retrained accuracy higher than a random ranking (higher is better).

As Hooker et al. do for images, a removed voxel takes the clip's per-channel mean, ranks
come from the channel-summed relevance, and ties are broken at random (per-frame curves,
CAM maps and sparse maps have many equal values; a stable sort would remove voxels in raster
order, which is itself a spatial prior). The same modified data set is used for every
retraining seed, so the spread over seeds measures training noise only.

A caveat worth knowing before reading a ROAR curve: the *shape* of the replaced region is
itself information. When a map follows the object, removing its top voxels leaves a
mean-coloured hole that moves with the object, and a network can read the motion off the hole:
on ``MovingShapes("motion")`` a network retrained on the ROAR mask of Grad-CAM tubes alone (no
pixel of the clip) classifies 99 to 100 % of the test clips at every ``k``, where a random
map's mask gives chance (``python -m benchmarks.roar``). Rong, Leemann, Borisov, Kasneci and
Kasneci (2022, "A Consistent and Efficient Evaluation Strategy for Attribution Methods")
describe this class leakage through the mask. ``mask_only=True`` runs that control.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from captum_video._validation import validate_video
from captum_video.metrics._perturbation import _reduce_attributions, generator_device
from captum_video.models.training import evaluate

__all__ = ["DEFAULT_FRACTIONS", "RoarResult", "ablate_top", "remove_and_retrain", "roar_curve"]

#: The fractions of voxels removed (ROAR) or kept (KAR) by default, as Hooker et al. (2019).
DEFAULT_FRACTIONS: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)

Mode = Literal["roar", "kar"]


@dataclass(frozen=True)
class RoarResult:
    """Result of :func:`remove_and_retrain`.

    Attributes:
        mode (str): ``"roar"`` (top ``k`` removed) or ``"kar"`` (only the top ``k`` kept).
        fractions (tuple of float): the fractions ``k`` of voxels removed or kept.
        accuracy (tuple of float): test accuracy per fraction, mean over seeds.
        accuracy_per_seed (tuple of tuple of float): ``[seed][fraction]`` accuracies.
        seeds (tuple of int): the retraining seeds.
    """

    mode: str
    fractions: tuple[float, ...]
    accuracy: tuple[float, ...]
    accuracy_per_seed: tuple[tuple[float, ...], ...]
    seeds: tuple[int, ...]

    @property
    def spread(self) -> tuple[float, ...]:
        """Per fraction, the largest minus the smallest accuracy over seeds (0 for one seed)."""
        return tuple(
            max(run[i] for run in self.accuracy_per_seed)
            - min(run[i] for run in self.accuracy_per_seed)
            for i in range(len(self.fractions))
        )


@torch.no_grad()
def ablate_top(
    clips: Tensor,
    attributions: Tensor,
    fraction: float,
    *,
    mode: Mode = "roar",
    channel_reduction: str = "sum",
    generator: torch.Generator | None = None,
    return_mask: bool = False,
) -> Tensor:
    r"""Replace the top ``fraction`` of each clip's voxels (ROAR), or all but them (KAR).

    Voxels ``(t, h, w)`` are ranked by the channel-summed relevance, highest first, with ties
    broken at random; the first ``m = round(fraction * T * H * W)`` are the *top*. ROAR sets
    every channel of the top voxels to the clip's per-channel mean, KAR sets every other
    voxel to it.

    Args:
        clips (Tensor): ``(N, C, T, H, W)`` clips.
        attributions (Tensor): ``(N, C, T, H, W)`` or ``(N, 1, T, H, W)`` relevance, one map
            per clip.
        fraction (float): share of voxels in ``[0, 1]`` removed (ROAR) or kept (KAR).
        mode (str, optional): ``"roar"`` or ``"kar"``. Default: ``"roar"``
        channel_reduction (str, optional): ``"sum"`` (signed, as Hooker et al.) or
            ``"abs_sum"`` (magnitude). Default: ``"sum"``
        generator (torch.Generator, optional): source of the tie-breaking keys, so results
            repeat. Default: None (the global generator)
        return_mask (bool, optional): return the bool mask ``(N, 1, T, H, W)`` of the
            replaced voxels instead of the clips. Default: False

    Returns:
        Tensor: new modified clips, same shape, dtype and device as ``clips`` (or the mask).

    Raises:
        ValueError: clips that are not 5-D finite videos, attributions of another shape or
            with NaN, a fraction outside ``[0, 1]`` or an unknown mode.

    Example::

        >>> clips = torch.rand(2, 3, 16, 32, 32)
        >>> removed = ablate_top(clips, clips.mean(1, keepdim=True), 0.1)
        >>> int((removed != clips).any(1).sum())  # 10 % of 2 x 16 x 32 x 32 voxels
        3276
    """
    validate_video(clips, name="clips")
    relevance = _reduce_attributions(attributions, clips, channel_reduction)
    fraction = _check_fraction(fraction)
    _check_mode(mode)
    n, _, t, h, w = clips.shape
    volume = t * h * w
    # Random keys first, then a stable sort by relevance: equal relevance keeps the random
    # order, so ties are broken at random without a second sort key.
    keys = torch.rand(n, volume, generator=generator, device=generator_device(generator))
    shuffled = keys.to(clips.device).argsort(dim=1)
    scores = relevance.reshape(n, volume).gather(1, shuffled)
    ranking = shuffled.gather(1, scores.argsort(dim=1, descending=True, stable=True))
    top = torch.zeros(n, volume, dtype=torch.bool, device=clips.device)
    top.scatter_(1, ranking[:, : int(round(fraction * volume))], True)
    replaced = top if mode == "roar" else ~top
    if return_mask:
        return replaced.view(n, 1, t, h, w)
    mean = clips.mean(dim=(2, 3, 4), keepdim=True)
    return torch.where(replaced.view(n, 1, t, h, w), mean, clips)


def remove_and_retrain(
    train_clips: Tensor,
    train_labels: Tensor,
    train_attributions: Tensor,
    test_clips: Tensor,
    test_labels: Tensor,
    test_attributions: Tensor,
    model_factory: Callable[[], nn.Module],
    train_fn: Callable[[nn.Module, Tensor, Tensor, int], Any],
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    mode: Mode = "roar",
    seeds: Sequence[int] = (0,),
    channel_reduction: str = "sum",
    ablation_seed: int = 0,
    batch_size: int = 64,
    mask_only: bool = False,
) -> RoarResult:
    r"""ROAR / KAR accuracy of a freshly trained model per fraction ``k`` (Hooker et al. 2019).

    For every ``k``: :func:`ablate_top` modifies every training and test clip with its own
    map; for every seed, ``torch.manual_seed(seed)``, ``model = model_factory()``,
    ``train_fn(model, modified_train, train_labels, seed)`` trains it (in place) and its
    accuracy on the modified test clips is recorded
    (:func:`~captum_video.models.training.evaluate`). The maps must come from a model trained
    on the *unmodified* training set; a random map is the control every method should beat.

    Args:
        train_clips (Tensor): ``(N, C, T, H, W)`` training clips.
        train_labels (Tensor): ``(N,)`` integer labels.
        train_attributions (Tensor): one map per training clip, ``(N, C | 1, T, H, W)``.
        test_clips (Tensor): ``(M, C, T, H, W)`` test clips.
        test_labels (Tensor): ``(M,)`` integer labels.
        test_attributions (Tensor): one map per test clip.
        model_factory (callable): ``() -> nn.Module``, a fresh untrained model.
        train_fn (callable): ``(model, clips, labels, seed) -> Any``; trains ``model`` in
            place (the return value is ignored).
        fractions (sequence of float, optional): the ``k`` in ``[0, 1]``. Default:
            :data:`DEFAULT_FRACTIONS` (10, 30, 50, 70, 90 %)
        mode (str, optional): ``"roar"`` (remove the top ``k``) or ``"kar"`` (keep only the
            top ``k``). Default: ``"roar"``
        seeds (sequence of int, optional): retraining seeds. Default: ``(0,)``
        channel_reduction (str, optional): ``"sum"`` or ``"abs_sum"``. Default: ``"sum"``
        ablation_seed (int, optional): seed of the tie-breaking keys (the same modified data
            for every training seed). Default: 0
        batch_size (int, optional): clips per forward pass of the evaluation. Default: 64
        mask_only (bool, optional): train and test on the mask of the replaced voxels alone
            (1 where a voxel is replaced, 0 elsewhere, in every channel) instead of the
            modified clips: the leakage control. A network that learns the task from the mask
            shows that the mask's shape carries the label (Rong et al. 2022). Default: False

    Returns:
        RoarResult: accuracy per fraction (mean and per seed).

    Raises:
        ValueError: mismatched clips, labels and maps; an empty ``fractions`` or ``seeds``;
            a fraction outside ``[0, 1]``; an unknown mode.
        TypeError: a ``model_factory`` that returns no ``nn.Module``.

    Example::

        >>> from captum_video.models import C3DSmall
        >>> def fit(model, clips, labels, seed):
        ...     opt = torch.optim.Adam(model.parameters(), 1e-2)
        ...     for _ in range(3):
        ...         loss = torch.nn.functional.cross_entropy(model(clips), labels)
        ...         opt.zero_grad(); loss.backward(); opt.step()
        >>> x, y = torch.rand(8, 3, 16, 32, 32), torch.randint(4, (8,))
        >>> maps = torch.rand(8, 1, 16, 32, 32)
        >>> result = remove_and_retrain(x, y, maps, x, y, maps, C3DSmall, fit, fractions=(0.1,))
        >>> result.mode, len(result.accuracy)
        ('roar', 1)
    """
    _check_split(train_clips, train_labels, train_attributions, "train", channel_reduction)
    _check_split(test_clips, test_labels, test_attributions, "test", channel_reduction)
    _check_mode(mode)
    ks = tuple(_check_fraction(k) for k in fractions)
    if not ks:
        raise ValueError("fractions must hold at least one fraction in [0, 1], got none")
    runs = tuple(int(s) for s in seeds)
    if not runs:
        raise ValueError("seeds must hold at least one retraining seed, got none")
    per_seed: list[list[float]] = [[] for _ in runs]
    for k in ks:
        # One generator per fraction, seeded by its value: the modified data of a fraction are
        # the same whatever other fractions a call has (extra seeds can be run later).
        gen = torch.Generator().manual_seed(ablation_seed * 1_000_003 + round(k * 1_000_000))
        train_x, test_x = (
            _modified(
                clips,
                maps,
                k,
                mode=mode,
                channel_reduction=channel_reduction,
                generator=gen,
                mask_only=mask_only,
            )
            for clips, maps in ((train_clips, train_attributions), (test_clips, test_attributions))
        )
        for j, seed in enumerate(runs):
            torch.manual_seed(seed)
            model = model_factory()
            if not isinstance(model, nn.Module):
                raise TypeError(
                    f"model_factory must return an nn.Module, got {type(model).__name__}"
                )
            train_fn(model, train_x, train_labels, seed)
            per_seed[j].append(evaluate(model, test_x, test_labels, batch_size=batch_size))
    accuracy = tuple(sum(run[i] for run in per_seed) / len(runs) for i in range(len(ks)))
    return RoarResult(mode, ks, accuracy, tuple(tuple(run) for run in per_seed), runs)


def roar_curve(
    result: RoarResult, reference: float | None = None
) -> tuple[list[float], list[float]]:
    """The ROAR / KAR curve as plot-ready lists, optionally anchored at ``k = 0``.

    Args:
        result (RoarResult): what :func:`remove_and_retrain` returned.
        reference (float, optional): accuracy of the model retrained on unmodified data; for
            ROAR it is the point ``k = 0`` (nothing removed), for KAR the point ``k = 1``
            (everything kept). Default: None (no anchor)

    Returns:
        tuple: ``(fractions, accuracy)`` sorted by fraction.

    Raises:
        TypeError: ``result`` is no :class:`RoarResult` or ``reference`` no number.
        ValueError: ``reference`` outside ``[0, 1]``.

    Example::

        >>> r = RoarResult("roar", (0.1, 0.5), (0.6, 0.3), ((0.6, 0.3),), (0,))
        >>> roar_curve(r, reference=0.9)
        ([0.0, 0.1, 0.5], [0.9, 0.6, 0.3])
    """
    if not isinstance(result, RoarResult):
        raise TypeError(
            f"result must be the RoarResult of remove_and_retrain, got {type(result).__name__}"
        )
    points = dict(zip(result.fractions, result.accuracy, strict=True))
    if reference is not None:
        if isinstance(reference, bool) or not isinstance(reference, (int, float)):
            raise TypeError(
                f"reference must be an accuracy in [0, 1] or None, got {type(reference).__name__}"
            )
        if not 0.0 <= float(reference) <= 1.0:
            raise ValueError(f"reference must be an accuracy in [0, 1], got {reference}")
        points.setdefault(0.0 if result.mode == "roar" else 1.0, float(reference))
    ordered = sorted(points.items())
    return [k for k, _ in ordered], [a for _, a in ordered]


def _modified(clips: Tensor, maps: Tensor, k: float, mask_only: bool, **kwargs: Any) -> Tensor:
    """The ablated clips, or with ``mask_only`` the replaced-voxel mask as a clip-shaped tensor."""
    if not mask_only:
        return ablate_top(clips, maps, k, **kwargs)
    mask = ablate_top(clips, maps, k, return_mask=True, **kwargs)
    return mask.to(clips.dtype).expand_as(clips).contiguous()


def _check_fraction(fraction: Any) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise TypeError(f"fraction must be a number in [0, 1], got {type(fraction).__name__}")
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(
            f"fraction must be in [0, 1] (a share of voxels, e.g. 0.1 for 10 %), got {fraction}"
        )
    return float(fraction)


def _check_mode(mode: Any) -> None:
    if mode not in ("roar", "kar"):
        raise ValueError(
            f"mode must be 'roar' (remove the top k) or 'kar' (keep only the top k), got {mode!r}"
        )


def _check_split(
    clips: Tensor, labels: Any, attributions: Any, split: str, channel_reduction: str
) -> None:
    """Check one split up front, so that no model is trained on data that will fail later."""
    validate_video(clips, name=f"{split}_clips")
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.dtype.is_floating_point:
        raise TypeError(
            f"{split}_labels must be a 1-D integer tensor of class indices, got "
            f"{type(labels).__name__} {getattr(labels, 'shape', '')}"
        )
    if labels.numel() != clips.shape[0]:
        raise ValueError(
            f"{split}_labels has {labels.numel()} entries but {split}_clips has "
            f"{clips.shape[0]} clips; give one label per clip"
        )
    try:
        _reduce_attributions(attributions, clips, channel_reduction)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{split}_attributions: {err}") from err

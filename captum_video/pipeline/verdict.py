r"""Motion or appearance? A verdict with its evidence, or "inconclusive".

Freezing a clip (its first frame shown throughout) keeps what it looks like and removes how
things move. For every clip the *relative drop* is the share of the explained class's
probability lost by freezing, ``r_i = (p_i - p_i^{frozen}) / p_i``. The verdict rests on the
mean of ``r_i`` with a bootstrap confidence interval over clips (Efron and Tibshirani 1993,
percentile method):

* ``"motion"`` when the whole interval lies above ``motion_share`` (default 0.5: freezing
  takes away more than half of the confidence),
* ``"appearance"`` when it lies below ``appearance_share`` (default 0.15),
* ``"both"`` when it lies between the two,
* ``"inconclusive"`` when the interval crosses one of those lines (too few or too varied
  clips), or when the model is **near chance** on the data: its mean probability for the
  explained class is below twice chance (``2 / K``; for two classes, below 0.75), or, with
  labels, its accuracy's interval reaches chance (``1 / K``). A network that does not know
  the task cannot decide from anything, and freezing its input changes its near-uniform
  output by noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["motion_verdict"]


def _interval(values: np.ndarray, confidence: float, draws: int, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``."""
    if len(values) == 1:
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(draws, len(values)))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def motion_verdict(
    records: Sequence[Mapping[str, Any]],
    num_classes: int,
    *,
    motion_share: float = 0.5,
    appearance_share: float = 0.15,
    confidence: float = 0.95,
    draws: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    r"""Whether motion or appearance drove a model's decisions on these clips, with evidence.

    Args:
        records (sequence of dict): per-clip records with ``target_probability``,
            ``temporal_sensitivity["freeze"]`` (the probability lost by freezing), and
            ``label`` / ``prediction`` (for the accuracy when labels are given).
        num_classes (int): the model's number of classes ``K``.
        motion_share (float, optional): relative drop above which motion decides.
            Default: 0.5
        appearance_share (float, optional): relative drop below which appearance decides.
            Default: 0.15
        confidence (float, optional): of the bootstrap intervals. Default: 0.95
        draws (int, optional): bootstrap resamples. Default: 2000
        seed (int, optional): of the resampling, so verdicts repeat. Default: 0

    Returns:
        dict: ``verdict`` (``"motion"``, ``"appearance"``, ``"both"``, ``"inconclusive"`` or
        None without a freeze measurement), ``reason`` (one sentence), ``relative_drop``
        (mean), ``interval`` (``[low, high]``), ``confidence``, ``clips``,
        ``target_probability`` (mean), ``frozen_probability`` (mean), ``chance``,
        ``near_chance``, ``accuracy`` and ``accuracy_interval`` (None without labels).

    Example::

        >>> records = [{"target_probability": 0.9, "temporal_sensitivity": {"freeze": 0.8},
        ...             "label": None, "prediction": 0}] * 10
        >>> motion_verdict(records, num_classes=4)["verdict"]
        'motion'
    """
    chance = 1.0 / max(int(num_classes), 1)
    usable = [
        r
        for r in records
        if r.get("temporal_sensitivity", {}).get("freeze") is not None
        and math.isfinite(r["temporal_sensitivity"]["freeze"])
        and r.get("target_probability")
    ]
    result: dict[str, Any] = {
        "verdict": None,
        "reason": "temporal sensitivity (freezing) was not measured",
        "relative_drop": None,
        "interval": None,
        "confidence": confidence,
        "clips": len(usable),
        "target_probability": None,
        "frozen_probability": None,
        "chance": chance,
        "near_chance": None,
        "accuracy": None,
        "accuracy_interval": None,
        "thresholds": {"motion": motion_share, "appearance": appearance_share},
    }
    if not usable:
        return result
    p = np.array([float(r["target_probability"]) for r in usable])
    drop = np.array([float(r["temporal_sensitivity"]["freeze"]) for r in usable])
    relative = drop / p
    low, high = _interval(relative, confidence, draws, seed)
    result.update(
        relative_drop=float(relative.mean()),
        interval=[low, high],
        target_probability=float(p.mean()),
        frozen_probability=float((p - drop).mean()),
    )
    near_chance = bool(p.mean() < min(2.0 * chance, (1.0 + chance) / 2.0))
    labelled = [r for r in usable if r.get("label") is not None]
    if len(labelled) == len(usable):
        correct = np.array([float(r["label"] == r["prediction"]) for r in usable])
        acc_low, acc_high = _interval(correct, confidence, draws, seed + 1)
        result.update(accuracy=float(correct.mean()), accuracy_interval=[acc_low, acc_high])
        near_chance = near_chance or acc_low <= chance
    result["near_chance"] = near_chance
    width = f"{confidence:.0%} interval {low:.2f} to {high:.2f}"
    effect = _effect(float(relative.mean()))
    if near_chance:
        result.update(
            verdict="inconclusive",
            reason=(
                f"the model is near chance on these clips (mean probability "
                f"{p.mean():.2f}, chance {chance:.2f}): it does not know the task, so its "
                "drops say nothing about what it uses"
            ),
        )
    elif low > motion_share:
        result.update(verdict="motion", reason=f"{effect} ({width}), above {motion_share:.0%}")
    elif high < appearance_share:
        result.update(
            verdict="appearance", reason=f"{effect} ({width}), below {appearance_share:.0%}"
        )
    elif low >= appearance_share and high <= motion_share:
        result.update(
            verdict="both",
            reason=f"{effect} ({width}), between {appearance_share:.0%} and {motion_share:.0%}",
        )
    else:
        result.update(
            verdict="inconclusive",
            reason=(
                f"{effect}, but the {width} crosses {motion_share:.0%} or "
                f"{appearance_share:.0%}: explain more clips"
            ),
        )
    return result


def _effect(mean: float) -> str:
    """The mean relative drop in words, following its sign."""
    if mean >= 0:
        return f"freezing the clips takes away {mean:.0%} of the model's confidence"
    return f"freezing the clips raises the model's confidence by {-mean:.0%}"

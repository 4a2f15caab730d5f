"""The TCAV significance test: concept-vs-random scores against random-vs-random scores.

A single TCAV score means little: with a linear head every input has the same gradient, so a
CAV trained on two *random* sets already scores exactly 0 or 1. TCAV is only meaningful
against many random runs. Following tensorflow/tcav, the scores of ``[concept, random_i]``
are compared with those of ``[random_i, random_j]`` by a two-sided Student t-test (equal
variances), per concept and layer; Video-TCAV adds a Bonferroni correction over all the
(concept, layer) hypotheses tested.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from captum.concept import Concept
from scipy import stats as sps

__all__ = ["significance", "SignificanceResult"]


@dataclass
class SignificanceResult:
    r"""Outcome of :func:`significance`: one row per (concept, layer).

    Each row is a dict with ``concept`` (name), ``concept_id``, ``layer``, ``mean`` and
    ``std`` of the concept's scores over random runs, ``random_mean``, ``random_std``, ``n``,
    ``n_random``, ``t``, ``p_value``, ``p_adjusted`` (Bonferroni: ``min(1, p * m)``),
    ``significant`` (``p_value < corrected_alpha``), ``cav_accuracy`` (mean held-out accuracy
    of the concept's CAVs, when the scores carry it) and ``act_pool``.

    Args:
        rows (list of dict): the rows.
        alpha (float): the requested level.
        corrected_alpha (float): the per-test level after correction.
        correction (str or None): the correction used.
        metric (str): the score that was tested.

    Returns:
        A result object; ``table()`` formats it, ``p_values`` maps ``(concept, layer)`` to p.

    Example::

        >>> result = significance(scores, random_concepts=randoms)   # doctest: +SKIP
        >>> print(result.table())                                     # doctest: +SKIP
    """

    rows: list[dict[str, Any]]
    alpha: float
    corrected_alpha: float
    correction: str | None
    metric: str
    num_tests: int = field(default=0)

    @property
    def p_values(self) -> dict[tuple[str, str], float]:
        """``{(concept name, layer): p_value}``."""
        return {(r["concept"], r["layer"]): r["p_value"] for r in self.rows}

    def row(self, concept: str | int, layer: str) -> dict[str, Any]:
        r"""The row of one concept (name or id) and layer.

        Args:
            concept (str or int): concept name or id.
            layer (str): layer name.

        Returns:
            dict: the row.
        """
        for r in self.rows:
            if (r["concept"] == concept or r["concept_id"] == concept) and r["layer"] == layer:
                return r
        raise KeyError(f"no result for concept {concept!r} at layer {layer!r}")

    def is_significant(self, concept: str | int, layer: str) -> bool:
        r"""Whether a concept is significant at a layer after correction.

        Args:
            concept (str or int): concept name or id.
            layer (str): layer name.

        Returns:
            bool
        """
        return bool(self.row(concept, layer)["significant"])

    def table(self) -> str:
        r"""A plain-text table (Markdown) of the rows.

        Returns:
            str
        """
        head = [
            "concept",
            "layer",
            "pool",
            f"{self.metric}",
            "random",
            "CAV acc",
            "p",
            "p adj",
            "sig",
        ]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            cells = [
                r["concept"],
                r["layer"],
                str(r["act_pool"]),
                f"{r['mean']:.3f} ± {r['std']:.3f}",
                f"{r['random_mean']:.3f} ± {r['random_std']:.3f}",
                "-" if r["cav_accuracy"] is None else f"{r['cav_accuracy']:.2f}",
                f"{r['p_value']:.2g}",
                f"{r['p_adjusted']:.2g}",
                "yes" if r["significant"] else "no",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        note = (
            f"alpha={self.alpha}, correction={self.correction}, tests={self.num_tests}, "
            f"per-test alpha={self.corrected_alpha:.3g}"
        )
        return "\n".join(lines + ["", note])

    def __str__(self) -> str:
        return self.table()


def _as_float(value: Any) -> float:
    return float(value.item()) if hasattr(value, "item") else float(value)


def _ttest(a: list[float], b: list[float]) -> tuple[float, float]:
    var_a = sum((x - sum(a) / len(a)) ** 2 for x in a)
    var_b = sum((x - sum(b) / len(b)) ** 2 for x in b)
    if var_a == 0 and var_b == 0:
        # scipy gives nan here; equal constants cannot be told apart, different ones can.
        same = math.isclose(sum(a) / len(a), sum(b) / len(b))
        return (
            (0.0, 1.0)
            if same
            else (math.copysign(math.inf, sum(a) / len(a) - sum(b) / len(b)), 0.0)
        )
    with warnings.catch_warnings():
        # Nearly constant samples (e.g. every run scoring 1.0) make scipy warn about precision;
        # the statistic is still right.
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sps.ttest_ind(a, b, equal_var=True)
    return float(res.statistic), float(res.pvalue)


def significance(
    scores: dict[str, Any],
    alpha: float = 0.05,
    correction: str | None = "bonferroni",
    *,
    random_concepts: Sequence[Concept | int] | None = None,
    metric: str = "sign_count",
    layers: Sequence[str] | None = None,
) -> SignificanceResult:
    r"""Two-sided t-test of each concept's TCAV scores against random-vs-random scores.

    ``scores`` must hold two-concept experimental sets ``[concept, random_i]`` (the concept's
    runs) and ``[random_i, random_j]`` (the null distribution), e.g. from
    :meth:`VideoTCAV.experimental_sets`; the score of the first concept of each set is used.
    It works on the output of Captum's ``TCAV.interpret`` too (then pass
    ``random_concepts``).

    Args:
        scores (dict): ``{set_key: {layer: {metric: tensor}}}``.
        alpha (float, optional): significance level. Default: 0.05
        correction (str, optional): ``"bonferroni"`` (divide ``alpha`` by the number of
            (concept, layer) tests) or None. Default: ``"bonferroni"``
        random_concepts (sequence of Concept or int, optional): the random sets; default those
            with ``kind == "random"`` (or a name starting with ``"random"``) among the
            concepts remembered by :class:`TCAVScores`.
        metric (str, optional): ``"sign_count"`` or ``"magnitude"`` (any key of the
            per-layer dicts). Default: ``"sign_count"``
        layers (sequence of str, optional): restrict to these layers.

    Returns:
        SignificanceResult

    Example::

        >>> sets = VideoTCAV.experimental_sets([moving], randoms)             # doctest: +SKIP
        >>> result = significance(tcav.interpret(clips, sets, target=0))      # doctest: +SKIP
        >>> result.is_significant("moving", "layer3")                        # doctest: +SKIP
    """
    if not isinstance(scores, dict) or not scores:
        raise ValueError("scores must be the non-empty dict returned by interpret")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if correction not in ("bonferroni", None):
        raise ValueError(f"correction must be 'bonferroni' or None, got {correction!r}")
    known: dict[int, Concept] = dict(getattr(scores, "concepts", {}) or {})
    if random_concepts is None:
        random_ids = {
            cid
            for cid, c in known.items()
            if getattr(c, "kind", None) == "random" or c.name.startswith("random")
        }
        if not random_ids:
            raise ValueError(
                "cannot tell which concepts are random: pass random_concepts=[...] or build "
                "them as VideoConcept(..., kind='random')"
            )
    else:
        random_ids = {c.id if isinstance(c, Concept) else int(c) for c in random_concepts}
        known.update({c.id: c for c in random_concepts if isinstance(c, Concept)})

    # Collect the first concept's score of every two-concept set, per layer.
    null: dict[str, list[float]] = {}
    runs: dict[tuple[int, str], list[float]] = {}
    accs: dict[tuple[int, str], list[float]] = {}
    pools: dict[str, Any] = {}
    for key, per_layer in scores.items():
        ids = [int(part) for part in str(key).split("-")]
        if len(ids) != 2 or ids[1] not in random_ids:
            continue
        for layer, result in per_layer.items():
            if layers is not None and layer not in layers:
                continue
            if metric not in result:
                raise ValueError(f"scores have no metric {metric!r}; keys: {sorted(result)}")
            value = _as_float(result[metric][0])
            pools[layer] = result.get("act_pool", "none")
            if ids[0] in random_ids:
                null.setdefault(layer, []).append(value)
            else:
                runs.setdefault((ids[0], layer), []).append(value)
                if "cav_accuracy" in result:
                    accs.setdefault((ids[0], layer), []).append(_as_float(result["cav_accuracy"]))
    if not runs:
        raise ValueError(
            "scores hold no [concept, random] sets; build them with "
            "VideoTCAV.experimental_sets(concepts, random_concepts)"
        )
    num_tests = len(runs)
    corrected = alpha / num_tests if correction == "bonferroni" else alpha
    factor = num_tests if correction == "bonferroni" else 1
    rows = []
    for (cid, layer), values in sorted(runs.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        rand = null.get(layer, [])
        if len(values) < 2 or len(rand) < 2:
            raise ValueError(
                f"concept {cid} at layer {layer!r} has {len(values)} concept-vs-random and "
                f"{len(rand)} random-vs-random runs; the t-test needs >= 2 of each (use >= 2 "
                "random sets and include random-vs-random sets)"
            )
        t, p = _ttest(values, rand)
        acc = accs.get((cid, layer))
        rows.append(
            {
                "concept": known[cid].name if cid in known else str(cid),
                "concept_id": cid,
                "layer": layer,
                "act_pool": pools.get(layer, "none"),
                "mean": sum(values) / len(values),
                "std": _std(values),
                "random_mean": sum(rand) / len(rand),
                "random_std": _std(rand),
                "n": len(values),
                "n_random": len(rand),
                "t": t,
                "p_value": p,
                "p_adjusted": min(1.0, p * factor),
                "significant": p < corrected,
                "cav_accuracy": None if not acc else sum(acc) / len(acc),
            }
        )
    return SignificanceResult(rows, alpha, corrected, correction, metric, num_tests)


def _std(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1))

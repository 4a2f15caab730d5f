"""The significance test against scipy, Bonferroni, and its errors (no model needed)."""

from __future__ import annotations

import pytest
import torch
from captum.concept import Concept
from scipy import stats

from captum_video.concept import TCAVScores, VideoConcept, significance


def _scores(concept_runs: dict[int, list[float]], null: list[float], layers=("l1", "l2")):
    """A TCAV result dict with sets [c, r_i] and [r_i, r_{i+1}] holding the given scores."""
    scores: dict = {}
    for cid, values in concept_runs.items():
        for i, v in enumerate(values):
            scores[f"{cid}-{100 + i}"] = {
                layer: {
                    "sign_count": torch.tensor([v, 1 - v]),
                    "act_pool": "none",
                    "cav_accuracy": torch.tensor(0.9),
                }
                for layer in layers
            }
    for i, v in enumerate(null):
        scores[f"{100 + i}-{100 + (i + 1) % len(null)}"] = {
            layer: {"sign_count": torch.tensor([v, 1 - v]), "act_pool": "none"} for layer in layers
        }
    return scores


def test_p_values_match_scipy_and_bonferroni() -> None:
    strong = [0.9, 0.95, 0.85, 1.0, 0.9]
    weak = [0.5, 0.6, 0.4, 0.55, 0.45]
    null = [0.5, 0.3, 0.6, 0.45, 0.55]
    raw = _scores({0: strong, 1: weak}, null)
    randoms = [Concept(100 + i, f"r{i}", None) for i in range(5)]
    result = significance(raw, random_concepts=randoms)
    assert result.num_tests == 4 and result.corrected_alpha == pytest.approx(0.05 / 4)
    ref = stats.ttest_ind(strong, null, equal_var=True)
    row = result.row(0, "l1")
    assert row["p_value"] == pytest.approx(ref.pvalue) and row["t"] == pytest.approx(ref.statistic)
    assert row["p_adjusted"] == pytest.approx(min(1.0, 4 * ref.pvalue))
    assert row["mean"] == pytest.approx(sum(strong) / 5) and row["n_random"] == 5
    assert row["cav_accuracy"] == pytest.approx(0.9)
    assert result.is_significant(0, "l2") and not result.is_significant(1, "l1")
    uncorrected = significance(raw, random_concepts=[100, 101, 102, 103, 104], correction=None)
    assert uncorrected.corrected_alpha == 0.05
    assert uncorrected.row(1, "l1")["p_value"] == pytest.approx(result.row(1, "l1")["p_value"])
    only_l1 = significance(raw, random_concepts=randoms, layers=["l1"])
    assert only_l1.num_tests == 2
    table = result.table()
    assert "| 0 | l1 | none |" in table and "tests=4" in table


def test_random_sets_are_found_from_the_concepts_remembered_by_the_scores() -> None:
    raw = _scores({0: [1.0, 1.0, 0.9]}, [0.4, 0.6, 0.5])
    concepts = {0: VideoConcept(0, "moving", clips=torch.rand(1, 3, 2, 4, 4))}
    concepts.update({100 + i: Concept(100 + i, f"random_{i}", None) for i in range(3)})
    result = significance(TCAVScores(raw, concepts=concepts))
    assert result.rows[0]["concept"] == "moving"
    with pytest.raises(ValueError, match="random"):
        significance(raw)  # a plain dict does not say which sets are random


def test_constant_samples() -> None:
    same = _scores({0: [0.5, 0.5]}, [0.5, 0.5], layers=("l",))
    assert significance(same, random_concepts=[100, 101]).row(0, "l")["p_value"] == 1.0
    apart = _scores({0: [1.0, 1.0]}, [0.0, 0.0], layers=("l",))
    assert significance(apart, random_concepts=[100, 101]).is_significant(0, "l")


def test_errors() -> None:
    raw = _scores({0: [1.0]}, [0.4, 0.6])
    with pytest.raises(ValueError, match=">= 2"):
        significance(raw, random_concepts=[100, 101])
    with pytest.raises(ValueError, match="no \\[concept, random\\]"):
        significance(_scores({}, [0.4, 0.6]), random_concepts=[100, 101])
    with pytest.raises(ValueError):
        significance({}, random_concepts=[100])
    with pytest.raises(ValueError):
        significance(raw, alpha=1.5, random_concepts=[100])
    with pytest.raises(ValueError):
        significance(raw, correction="holm", random_concepts=[100])
    with pytest.raises(ValueError, match="metric"):
        significance(
            _scores({0: [1.0, 0.9]}, [0.4, 0.6]), random_concepts=[100, 101], metric="magnitude"
        )

"""The motion/appearance verdict on the demo models: right when the model knows, silent when not."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from captum_video.datasets import MovingShapes
from captum_video.models import C3DSmall, load_demo_model
from captum_video.pipeline import explain_dataset

QUIET = {"progress": False, "highlights": 0, "tensorboard": False, "report": False}


def _verdict(model: torch.nn.Module, variant: str, out: Path) -> dict:
    data = MovingShapes(variant, num_samples=24, seed=4321)
    run = explain_dataset(model, data, ["saliency"], out, batch_size=12, **QUIET)
    return run.summary["verdict"]


@pytest.mark.parametrize(
    ("model_variant", "data_variant", "expected"),
    [("motion", "motion", "motion"), ("appearance", "appearance", "appearance")],
)
def test_trained_demo_models_get_their_verdict(
    model_variant: str, data_variant: str, expected: str, tmp_path: Path
) -> None:
    verdict = _verdict(load_demo_model(model_variant), data_variant, tmp_path)
    assert verdict["verdict"] == expected, verdict
    assert not verdict["near_chance"] and verdict["clips"] == 24
    low, high = verdict["interval"]
    assert low <= verdict["relative_drop"] <= high


def test_random_weights_are_inconclusive(tmp_path: Path) -> None:
    torch.manual_seed(0)
    verdict = _verdict(C3DSmall(num_classes=4).eval(), "motion", tmp_path)
    assert verdict["verdict"] == "inconclusive" and verdict["near_chance"], verdict

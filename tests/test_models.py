"""Reference models and the bundled demo checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from captum_video.datasets import MovingShapes
from captum_video.models import (
    C3DSmall,
    R2Plus1DSmall,
    demo_checkpoint_path,
    evaluate,
    load_demo_model,
    train_demo_model,
)


@pytest.mark.parametrize("arch", [C3DSmall, R2Plus1DSmall])
def test_reference_models_shapes_and_time_axis(arch: type) -> None:
    model = arch(num_classes=5).eval()
    x = torch.rand(2, 3, 16, 32, 32)
    assert model(x).shape == (2, 5)
    seen = {}
    handle = model.layer3.register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    model(x)
    handle.remove()
    assert seen["out"].shape[2] >= 16 // 4  # the last block still resolves time


def test_r2plus1d_has_residuals_and_batchnorm() -> None:
    model = R2Plus1DSmall()
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in model.modules())
    assert model.layer2.downsample is not None


@pytest.mark.parametrize("variant", ["motion", "appearance", "mixed"])
def test_demo_checkpoint_accuracy_on_fresh_split(variant: str) -> None:
    path = demo_checkpoint_path(variant)
    assert path.stat().st_size < 400 * 1024
    model = load_demo_model(variant)
    assert not model.training
    # A split no training run has seen: seeds 0 and 1 train/validate, 777 is new.
    clips, labels, _ = MovingShapes(variant, num_samples=256, seed=777).tensors()
    accuracy = evaluate(model, clips, labels)
    assert accuracy >= 0.95, f"{variant} demo model: {accuracy:.3f} on a fresh split"
    assert model.demo_info["classes"] == list(MovingShapes(variant).classes)


def test_demo_models_depend_on_what_they_were_trained_on() -> None:
    """Freezing time destroys the motion model's decision but not the appearance model's."""
    for variant, should_survive in (("motion", False), ("appearance", True)):
        model = load_demo_model(variant)
        clips, labels, _ = MovingShapes(variant, num_samples=64, seed=99).tensors()
        frozen = clips[:, :, :1].expand_as(clips)
        accuracy = evaluate(model, frozen, labels)
        assert (accuracy > 0.8) == should_survive, f"{variant}: {accuracy:.2f} on frozen clips"


def test_training_script_runs_and_saves(tmp_path: Path) -> None:
    out = tmp_path / "tiny.pt"
    model, acc = train_demo_model(
        "motion", num_train=32, num_val=16, epochs=1, out=out, log=lambda s: None
    )
    assert out.is_file() and 0.0 <= acc <= 1.0
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["arch"] == "c3d_small" and "train_command" in ckpt


def test_missing_demo_variant_explains_how_to_build() -> None:
    with pytest.raises(FileNotFoundError, match="--train"):
        load_demo_model("mixed-up")

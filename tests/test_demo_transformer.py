"""The bundled demo transformer: its checkpoint, registry entry, training and explanations."""

from __future__ import annotations

import pytest
import torch

from captum_video.attr import AttentionRollout, GradCAMTube, GradientWeightedAttention
from captum_video.datasets import MovingShapes
from captum_video.metrics import relevance_mass
from captum_video.models import (
    VideoTransformerSmall,
    demo_checkpoint_path,
    evaluate,
    load_demo_model,
    train_demo_model,
)
from captum_video.registry import default_layer, family_of, input_size_of, load_model
from captum_video.registry.attention import attention_layout
from tests.helpers import assert_model_unchanged, model_snapshot

HELD_OUT_SEED = 2024  # trained on seeds 0 (train) and 1 (validation)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def transformer() -> torch.nn.Module:
    return load_demo_model("transformer")


@pytest.fixture(scope="module")
def held_out() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return MovingShapes("motion", num_samples=16, seed=HELD_OUT_SEED).tensors()


def test_bundled_checkpoint_is_small_half_precision_and_accurate(transformer, held_out):
    path = demo_checkpoint_path("transformer")
    assert path.name == "demo_transformer_motion.pt" and path.stat().st_size < 400 * 1024
    state = torch.load(path, weights_only=True)["state_dict"]
    assert all(v.dtype == torch.float16 for v in state.values())
    assert isinstance(transformer, VideoTransformerSmall) and not transformer.training
    info = transformer.demo_info
    assert info["classes"] == ["right", "left", "down", "up"] and info["variant"] == "motion"
    assert info["val_accuracy"] >= 0.95
    assert "--arch video_transformer_small" in info["train_command"]
    clips, labels, _ = held_out
    assert evaluate(transformer, clips, labels) >= 0.9


def test_registry_knows_the_demo_transformer(transformer):
    assert family_of(transformer).name == "captum-video-demo-transformer"
    assert input_size_of(transformer) == (16, 32, 32)
    assert default_layer(transformer)[0] == "blocks.0"
    layout = attention_layout(transformer, (16, 32, 32))
    assert layout.modules == ["blocks.0.attn", "blocks.1.attn"]
    assert layout.tokens.grid == (4, 8, 8) and layout.tokens.prefix == 1
    loaded = load_model("demo-transformer")
    assert isinstance(loaded, VideoTransformerSmall)
    # the CNN checkpoints keep their names
    assert demo_checkpoint_path("motion").name == "demo_c3d_motion.pt"


@pytest.mark.parametrize("method", [AttentionRollout, GradientWeightedAttention])
def test_attention_maps_put_relevance_on_the_deciding_object(method, transformer, held_out):
    """Relevance mass on the moving square at least 3x that of a uniform map."""
    clips, labels, masks = held_out
    snapshot, original = model_snapshot(transformer), clips.clone()
    maps = method(transformer).attribute(clips, target=labels)
    assert maps.shape == (16, 1, 16, 32, 32) and torch.isfinite(maps).all()
    mass = relevance_mass(maps, masks).mean()
    uniform = relevance_mass(torch.ones_like(maps), masks).mean()
    assert mass >= 3 * uniform, (float(mass), float(uniform))
    assert_model_unchanged(snapshot, transformer)
    assert torch.equal(clips, original)


def test_gradcam_tube_reads_the_demo_transformer_through_the_registry(transformer, held_out):
    clips = held_out[0][:2]
    name, layer = default_layer(transformer)
    maps = GradCAMTube(transformer, layer).attribute(clips, target=[0, 1])
    assert maps.shape == (2, 1, 16, 32, 32) and torch.isfinite(maps).all()


def test_training_the_transformer_saves_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "tiny.pt"
    model, acc = train_demo_model(
        "motion",
        arch="video_transformer_small",
        num_train=16,
        num_val=8,
        epochs=1,
        batch_size=8,
        out=out,
        log=lambda line: None,
    )
    assert isinstance(model, VideoTransformerSmall) and 0.0 <= acc <= 1.0
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["arch"] == "video_transformer_small" and ckpt["config"]["frames"] == 16
    rebuilt = VideoTransformerSmall(**ckpt["config"])
    rebuilt.load_state_dict({k: v.float() for k, v in ckpt["state_dict"].items()})

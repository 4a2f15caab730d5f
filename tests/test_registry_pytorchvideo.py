"""PyTorchVideo in the registry: families, the SlowFast adapter, residual blocks, loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from captum_video.attr import ResidualAddCanonizer, canonized
from captum_video.registry import (
    PathwayAdapter,
    adapt,
    classifier_of,
    default_layer,
    family_of,
    input_size_of,
    load_model,
    min_frames_of,
    model_names,
    normalization_of,
    pack_pathways,
    reshape_for,
    residual_block_forwards,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from threads; on a busy 2-core machine they lose a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_pytorchvideo_models() -> dict[str, tuple[nn.Module, tuple[int, int, int]]]:
    """Tiny random PyTorchVideo classifiers (eval mode) with the clip ``(T, H, W)`` each takes.

    Each head pools its whole last stage, so the pool + linear heads are global.
    """
    pytest.importorskip("pytorchvideo")
    from pytorchvideo.models.csn import create_csn
    from pytorchvideo.models.r2plus1d import create_r2plus1d
    from pytorchvideo.models.resnet import create_resnet
    from pytorchvideo.models.slowfast import create_slowfast
    from pytorchvideo.models.vision_transformers import create_multiscale_vision_transformers
    from pytorchvideo.models.x3d import create_x3d

    torch.manual_seed(0)
    models: dict[str, tuple[nn.Module, tuple[int, int, int]]] = {
        "x3d": (
            create_x3d(
                input_clip_length=4,
                input_crop_size=64,
                model_num_class=5,
                width_factor=1.0,
                depth_factor=0.5,
                head_dim_out=32,
                stem_dim_in=8,
                head_activation=None,
                dropout_rate=0.0,
            ),
            (4, 64, 64),
        ),
        "slowfast": (
            create_slowfast(
                model_num_class=5,
                stem_dim_outs=(8, 2),
                slowfast_channel_reduction_ratio=(4,),
                slowfast_fusion_conv_stride=(4, 1, 1),
                head_pool_kernel_sizes=((2, 2, 2), (8, 2, 2)),
                dropout_rate=0.0,
            ),
            (8, 64, 64),
        ),
        "slow": (
            create_resnet(
                model_num_class=5, stem_dim_out=8, head_pool_kernel_size=(4, 2, 2), dropout_rate=0
            ),
            (4, 64, 64),
        ),
        "csn": (
            create_csn(
                model_num_class=5,
                stem_dim_out=8,
                stage_temporal_stride=(1, 1, 1, 2),
                head_pool_kernel_size=(2, 1, 1),
            ),
            (4, 16, 16),
        ),
        "r2plus1d": (
            create_r2plus1d(
                model_num_class=5,
                stem_dim_out=8,
                head_pool_kernel_size=(2, 2, 2),
                head_activation=None,
            ),
            (8, 64, 64),
        ),
        "mvit": (
            create_multiscale_vision_transformers(
                spatial_size=32,
                temporal_size=4,
                depth=2,
                patch_embed_dim=16,
                num_heads=2,
                head_num_classes=5,
                embed_dim_mul=[[1, 2.0]],
                atten_head_mul=[[1, 2.0]],
                pool_q_stride_size=[[1, 1, 2, 2]],
                pool_kv_stride_adaptive=[1, 4, 4],
                pool_kvq_kernel=[3, 3, 3],
            ),
            (4, 32, 32),
        ),
    }
    return {name: (model.eval(), size) for name, (model, size) in models.items()}


@pytest.fixture(scope="module")
def models() -> dict[str, tuple[nn.Module, tuple[int, int, int]]]:
    return tiny_pytorchvideo_models()


FAMILIES: dict[str, tuple[str, str, str]] = {
    "x3d": ("pytorchvideo-x3d", "blocks.4", "identity"),
    "slowfast": ("pytorchvideo-slowfast", "model.blocks.4", "pathways"),
    "slow": ("pytorchvideo-resnet", "blocks.4", "identity"),
    "csn": ("pytorchvideo-resnet", "blocks.4", "identity"),
    "r2plus1d": ("pytorchvideo-resnet", "blocks.4", "identity"),
    "mvit": ("pytorchvideo-mvit", "blocks.0", "mvit"),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_facts(name: str, models: dict[str, Any]) -> None:
    raw, size = models[name]
    model = adapt(raw)
    family, layer, reshape = FAMILIES[name]
    assert family_of(model).name == family
    assert default_layer(model)[0] == layer
    assert reshape_for(model, default_layer(model)[1]) == reshape
    assert normalization_of(model) == "pytorchvideo"
    assert input_size_of(model) == size and min_frames_of(model) == size[0]
    assert adapt(model) is model  # idempotent
    if name == "slowfast":
        assert isinstance(model, PathwayAdapter) and model.model is raw and model.alpha == 4
        assert family_of(model).layout == "pathways"
    else:
        assert model is raw  # (N, C, T, H, W) -> logits already
    if name in ("slowfast", "slow", "csn", "r2plus1d"):
        assert isinstance(classifier_of(model), nn.Linear)
    else:  # X3D convolves after pooling; MViT reads the class token: no CAM head
        with pytest.raises(ValueError, match="no classifier head"):
            classifier_of(model)


def test_slowfast_adapter_builds_the_pathways_as_packpathway(models):
    raw, size = models["slowfast"]
    model = adapt(raw)
    clip = torch.rand(2, 3, *size)
    # Oracle: PyTorchVideo's PackPathway (on (C, T, H, W) clips), applied clip by clip.
    slow = torch.stack(
        [
            torch.index_select(c, 1, torch.linspace(0, size[0] - 1, size[0] // 4).long())
            for c in clip
        ]
    )
    with torch.no_grad():
        expected = raw([slow, clip])
        torch.testing.assert_close(model(clip), expected)
        torch.testing.assert_close(model(slow, clip), expected)  # pathways given as inputs
    assert [p.shape[2] for p in pack_pathways(clip, 4)] == [2, 8]
    with pytest.raises(ValueError, match="too short"):
        pack_pathways(torch.rand(1, 3, 2, 8, 8), alpha=4)
    with pytest.raises(ValueError, match="one clip or 2 pathway clips"):
        model(clip, clip, clip)


def test_a_model_wrapping_a_slowfast_must_adapt_the_inner_one(models):
    raw, _ = models["slowfast"]
    with pytest.raises(ValueError, match="adapt that module first"):
        adapt(nn.Sequential(nn.Identity(), raw))
    wrapped = nn.Sequential(nn.Identity(), adapt(raw))
    assert adapt(wrapped) is wrapped
    assert default_layer(wrapped)[0] == "1.model.blocks.4"


def _res_blocks(model: nn.Module) -> list[nn.Module]:
    from pytorchvideo.models.resnet import ResBlock

    return [m for m in model.modules() if isinstance(m, ResBlock)]


@pytest.mark.parametrize("name", ["x3d", "slowfast", "slow", "csn", "r2plus1d"])
def test_res_block_forward_equals_the_block(name, models):
    raw, size = models[name]
    from pytorchvideo.models.resnet import ResBlock

    forward = residual_block_forwards()[ResBlock]
    blocks = _res_blocks(raw)
    inputs: dict[nn.Module, torch.Tensor] = {}
    handles = [b.register_forward_pre_hook(lambda m, a: inputs.setdefault(m, a[0])) for b in blocks]
    clip = torch.rand(1, 3, *size)
    try:
        with torch.no_grad():
            reference = adapt(raw)(clip)
    finally:
        for handle in handles:
            handle.remove()
    assert len(inputs) == len(blocks) > 0
    calls = []

    def add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return a + b

    with torch.no_grad():
        for block, x in inputs.items():
            torch.testing.assert_close(forward(block, x, add), block(x), atol=1e-6, rtol=1e-5)
        assert len(calls) == len(blocks)  # every block's sum went through add
        with canonized(raw, [ResidualAddCanonizer()]):
            assert all(hasattr(b, "lrp_residual_add") for b in blocks)
            torch.testing.assert_close(adapt(raw)(clip), reference, atol=1e-6, rtol=1e-5)
    assert not any(hasattr(b, "lrp_residual_add") for b in blocks)


def test_pytorchvideo_names_load_local_weights(tmp_path: Path):
    pytest.importorskip("pytorchvideo")
    assert {"pytorchvideo:x3d_xs", "pytorchvideo:slowfast_r50", "pytorchvideo:slow_r50"} <= set(
        model_names()
    )
    reference = load_model("pytorchvideo:x3d_xs", num_classes=7)
    assert family_of(reference).name == "pytorchvideo-x3d" and not reference.training
    assert input_size_of(reference) == (4, 160, 160)
    path = tmp_path / "x3d_xs.pyth"  # PyTorchVideo's model zoo wraps the state dict
    state = {
        k: torch.randn_like(v) if v.is_floating_point() else v
        for k, v in reference.state_dict().items()
    }
    torch.save({"model_state": state}, path)
    loaded = load_model("pytorchvideo:x3d_xs", weights=path)  # 7 classes read from the file
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key]), key
    del state["blocks.5.proj.weight"]
    torch.save(state, path)
    with pytest.raises(ValueError, match="does not fit pytorchvideo:x3d_xs"):
        load_model("pytorchvideo:x3d_xs", weights=path, num_classes=7)

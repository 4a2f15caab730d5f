"""Canonizers: same function while applied, exact restoration afterwards (also on error)."""

from __future__ import annotations

import pytest
import torch
from captum.attr._utils.custom_modules import Addition_Module
from torch import nn

from captum_video.attr import (
    Canonizer,
    ConstantGateCanonizer,
    MergeBatchNorm,
    NoInplaceReLU,
    ResidualAddCanonizer,
    canonized,
    default_canonizers,
)
from captum_video.models import R2Plus1DSmall
from captum_video.registry import load_model
from tests.helpers import assert_model_unchanged, model_snapshot


def randomize_batch_norm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model.eval()


def _storage(model: nn.Module) -> dict[str, int]:
    return {k: v.data_ptr() for k, v in [*model.named_parameters(), *model.named_buffers()]}


@pytest.mark.parametrize("name", ["r2plus1d_18", "small"])  # r3d_18: test_deep_taylor
def test_canonized_model_computes_the_same_and_is_restored(name: str) -> None:
    if name == "small":
        model = randomize_batch_norm(R2Plus1DSmall())
    else:
        model = randomize_batch_norm(load_model(name, num_classes=4))
    x = torch.rand(1, 3, 4, 24, 24)
    with torch.no_grad():
        expected = model(x)
    before, ptrs = model_snapshot(model), _storage(model)
    with canonized(model) as same:
        assert same is model
        bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        assert bns and all(float(bn.eps) == 0.0 for bn in bns)  # every BN was folded
        adds = [m for m in model.modules() if isinstance(m, Addition_Module)]
        assert len(adds) == (3 if name == "small" else 8)
        with torch.no_grad():
            torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)
    assert_model_unchanged(before, model)
    assert _storage(model) == ptrs  # the very same tensors are back, not copies
    with torch.no_grad():
        assert torch.equal(model(x), expected)


def test_restored_when_the_block_raises() -> None:
    model = randomize_batch_norm(R2Plus1DSmall())
    before = model_snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        with canonized(model):
            raise RuntimeError("boom")
    assert_model_unchanged(before, model)


def test_partial_application_is_undone() -> None:
    class Failing(Canonizer):
        def apply(self, model, undo):
            raise RuntimeError("canonizer failed")

    model = randomize_batch_norm(R2Plus1DSmall())
    before = model_snapshot(model)
    with pytest.raises(RuntimeError, match="canonizer failed"):
        with canonized(model, [*default_canonizers(), Failing()]):
            pass
    assert_model_unchanged(before, model)


def test_training_batch_norm_is_refused_and_model_kept() -> None:
    model = R2Plus1DSmall().train()
    before = model_snapshot(model)
    with pytest.raises(ValueError, match="model.eval"):
        with canonized(model, [MergeBatchNorm()]):
            pass
    assert_model_unchanged(before, model)


def test_bias_free_conv_gets_a_temporary_bias() -> None:
    model = randomize_batch_norm(nn.Sequential(nn.Conv3d(2, 3, 1, bias=False), nn.BatchNorm3d(3)))
    x = torch.rand(1, 2, 2, 3, 3)
    with canonized(model, [MergeBatchNorm()]):
        assert model[0].bias is not None
        torch.testing.assert_close(model(x), model[0](x))
    assert model[0].bias is None and "bias" not in dict(model[0].named_parameters())


def test_residual_canonizer_and_inplace_relu() -> None:
    model = load_model("r3d_18", num_classes=2)
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert any(r.inplace for r in relus)
    with canonized(model, [ResidualAddCanonizer(), NoInplaceReLU()]):
        assert not any(r.inplace for r in relus)
        assert "forward" in vars(model.layer1[0])
    assert any(r.inplace for r in relus)
    assert "forward" not in vars(model.layer1[0])


def test_folded_batch_norm_costs_nothing_while_canonized() -> None:
    model = randomize_batch_norm(nn.Sequential(nn.Conv3d(2, 3, 1), nn.BatchNorm3d(3)))
    with canonized(model, [MergeBatchNorm()]):
        assert "forward" in vars(model[1])
        y = torch.rand(1, 3, 2, 3, 3)
        assert model[1](y) is y  # no arithmetic
    assert "forward" not in vars(model[1])


@pytest.mark.parametrize("kind", ["fvcore", "fvcore-spatial", "torchvision"])
def test_constant_gate_passes_relevance_through_x_only(kind: str) -> None:
    """Squeeze-excitation ``y = x * gate(x)``: while canonized the gate is a constant, so the
    relevance of x (x * gradient) is that of y, nothing flows into the gate; restored after."""
    torch.manual_seed(0)
    if kind == "torchvision":
        from torchvision.ops.misc import SqueezeExcitation

        block = SqueezeExcitation(6, 3)
        x = torch.rand(2, 6, 5, 5)
    else:
        se = pytest.importorskip("fvcore.nn.squeeze_excitation")
        if kind == "fvcore":
            block = se.SqueezeExcitation(6, is_3d=True)
        else:
            block = se.SpatialSqueezeExcitation(6, is_3d=True)
        x = torch.rand(2, 6, 3, 4, 4)
    block.eval()
    before = model_snapshot(block)
    with torch.no_grad():
        expected = block(x)
    leaf = x.clone().requires_grad_(True)
    with canonized(block, [ConstantGateCanonizer()]):
        y = block(leaf)
        torch.testing.assert_close(y, expected)
        (grad,) = torch.autograd.grad(y, leaf, torch.ones_like(y))  # R_y = y
    torch.testing.assert_close(leaf.detach() * grad, y.detach())
    assert_model_unchanged(before, block)
    assert "forward" not in vars(block)


def test_without_the_gate_canonizer_lrp_doubles_the_relevance_of_a_gate() -> None:
    """LRP through ``x * gate(x)`` with the gate in the graph hands the product's relevance to
    both factors; DeepTaylor3D's default canonizers keep the gate constant."""
    import dataclasses

    se = pytest.importorskip("fvcore.nn.squeeze_excitation")
    from captum_video.attr import COMPOSITES, DeepTaylor3D

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv3d(3, 6, 3, bias=False), nn.ReLU(), se.SqueezeExcitation(6, is_3d=True),
        nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(6, 2, bias=False),
    ).eval()  # fmt: skip
    with torch.no_grad():  # logits of order one, far above the stabiliser
        model[0].weight.mul_(4.0)
        model[5].weight.mul_(4.0)
    x = torch.rand(2, 3, 4, 6, 6)
    logits = model(x)[:, 0].detach()
    _, delta = DeepTaylor3D(model, composite="zplus").attribute(
        x, target=0, return_convergence_delta=True
    )
    assert float((delta / logits).abs().max()) < 1e-4
    gate_in_graph = dataclasses.replace(COMPOSITES["zplus"], canonizers=lambda: [])
    rel = DeepTaylor3D(model, composite=gate_in_graph).attribute(x, target=0)
    assert bool((rel.sum((1, 2, 3, 4)) / logits > 1.5).all())


def test_pytorchvideo_res_blocks_and_x3d_canonized_and_restored() -> None:
    pytest.importorskip("pytorchvideo")
    from pytorchvideo.models.resnet import ResBlock
    from pytorchvideo.models.x3d import create_x3d

    torch.manual_seed(0)
    model = randomize_batch_norm(
        create_x3d(
            input_clip_length=4, input_crop_size=32, model_num_class=3, depth_factor=1.0,
            width_factor=1.0, head_dim_out=16, head_activation=None, dropout_rate=0.0,
        )
    )  # fmt: skip
    x = torch.rand(1, 3, 4, 32, 32)
    with torch.no_grad():
        expected = model(x)
    before = model_snapshot(model)
    blocks = [m for m in model.modules() if isinstance(m, ResBlock)]
    with canonized(model):
        adds = [m for m in model.modules() if isinstance(m, Addition_Module)]
        assert blocks and len(adds) == len(blocks)
        gated = [m for m in model.modules() if type(m).__name__ == "SqueezeExcitation"]
        assert gated and all("forward" in vars(m) for m in gated)
        with torch.no_grad():
            torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)
    assert_model_unchanged(before, model)
    with torch.no_grad():
        assert torch.equal(model(x), expected)

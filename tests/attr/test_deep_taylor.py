"""DeepTaylor3D: conservation, equality with Zennit, hygiene towards the caller's model."""

from __future__ import annotations

import pytest
import torch
from captum.attr import NoiseTunnel
from torch import nn

from captum_video.attr import DeepTaylor3D, ZEpsilonRule
from captum_video.models import C3DSmall, R2Plus1DSmall, load_demo_model
from captum_video.registry import bounds_from_normalization, load_model
from tests.attr.test_canonizers import randomize_batch_norm
from tests.helpers import assert_model_unchanged, model_snapshot

zennit_rules = pytest.importorskip("zennit.rules")
zennit_attribution = pytest.importorskip("zennit.attribution")
zennit_composites = pytest.importorskip("zennit.composites")
zennit_types = pytest.importorskip("zennit.types")


def _bias_free_c3d(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = C3DSmall(bias=False).eval()
    with torch.no_grad():  # wider weights than the default init: logits of order one
        for p in model.parameters():
            p.mul_(3.0)
    return model


def _demo_without_biases() -> nn.Module:
    model = load_demo_model("motion")
    with torch.no_grad():
        for m in model.modules():
            if getattr(m, "bias", None) is not None:
                m.bias.zero_()
    return model


def _zennit(model: nn.Module, x: torch.Tensor, target: int, low=0.0, high=1.0) -> torch.Tensor:
    """Zennit with the same rules: z^B first conv, z+ (biases ignored) elsewhere, WTA max
    pooling (the gradient), Norm for average pooling, Pass for ReLU. Zennit starts from
    R = 1 at the target, so its result is scaled by the logit."""
    zplus = zennit_rules.ZPlus(zero_params="bias")
    composite = zennit_composites.SpecialFirstLayerMapComposite(
        layer_map=[
            (zennit_types.Activation, zennit_rules.Pass()),
            (zennit_types.AvgPool, zennit_rules.Norm()),
            (zennit_types.Convolution, zplus),
            (zennit_types.Linear, zplus),
        ],
        first_map=[(zennit_types.Convolution, zennit_rules.ZBox(low, high))],
    )
    with zennit_attribution.Gradient(model=model, composite=composite) as attributor:
        logits, rel = attributor(x.clone(), torch.eye(logits_dim(model, x))[[target] * len(x)])
    return rel * logits[:, target].detach().view(-1, 1, 1, 1, 1)


def logits_dim(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad():
        return int(model(x[:1]).shape[1])


@pytest.mark.parametrize("make", [_bias_free_c3d, _demo_without_biases, lambda: load_demo_model()])
def test_equal_to_zennit(make) -> None:
    model = make()
    x = torch.rand(2, 3, 8, 16, 16)
    ours = DeepTaylor3D(model).attribute(x, target=1)
    theirs = _zennit(model, x, 1)
    rel_err = (ours - theirs).abs().max() / theirs.abs().max()
    assert float(rel_err) < 1e-4


@pytest.mark.parametrize("make", [_bias_free_c3d, _demo_without_biases])
def test_conservation_bias_free(make) -> None:
    model = make()
    x = torch.rand(3, 3, 8, 16, 16)
    rel, delta = DeepTaylor3D(model).attribute(x, target=2, return_convergence_delta=True)
    logits = model(x)[:, 2].detach()
    assert delta.shape == (3,)
    torch.testing.assert_close(delta, logits - rel.sum((1, 2, 3, 4)))
    assert float((delta.abs() / logits.abs()).max()) < 0.01


def test_conservation_r3d_18_with_canonizers() -> None:
    model = randomize_batch_norm(load_model("r3d_18", num_classes=5))
    x = torch.rand(1, 3, 4, 32, 32)  # in [0, 1], inside the Kinetics z^B bounds
    rel, delta = DeepTaylor3D(model).attribute(x, target=3, return_convergence_delta=True)
    logit = model(x)[:, 3].detach()
    assert rel.shape == x.shape
    assert float(delta.abs() / logit.abs()) < 0.01, (delta, logit)
    assert float((rel != 0).float().mean()) > 0.5  # spread over the clip, not degenerate


def test_conservation_small_residual_model_with_negative_bounds() -> None:
    model = randomize_batch_norm(R2Plus1DSmall())
    low, high = bounds_from_normalization([0.45] * 3, [0.225] * 3)
    x = torch.rand(2, 3, 4, 12, 12) * (high - low).view(1, 3, 1, 1, 1) + low.view(1, 3, 1, 1, 1)
    rel, delta = DeepTaylor3D(model, first_layer_bounds=(low, high)).attribute(
        x, target=[0, 1], return_convergence_delta=True
    )
    logits = model(x).detach()[[0, 1], [0, 1]]
    assert float((delta.abs() / logits.abs()).max()) < 0.01


def test_model_inputs_and_hooks_untouched_also_on_error() -> None:
    model = randomize_batch_norm(R2Plus1DSmall())
    before = model_snapshot(model)
    x = torch.rand(1, 3, 4, 16, 16)
    dt = DeepTaylor3D(model)
    dt.attribute(x, target=0)
    assert_model_unchanged(before, model)
    assert not x.requires_grad and x.grad is None
    with pytest.raises(ValueError, match="out of range"):
        dt.attribute(x, target=7)
    with pytest.raises(ValueError, match="outside the z\\^B bounds"):
        dt.attribute(x + 2.0, target=0)
    with pytest.raises(ValueError, match="5"):
        dt.attribute(x[:, :, 0], target=0)
    assert_model_unchanged(before, model)
    assert not x.requires_grad
    assert not any(hasattr(m, "rule") for m in model.modules())


def test_user_rule_overrides_and_captum_rules_are_refused() -> None:
    model = _bias_free_c3d()
    x = torch.rand(1, 3, 4, 16, 16)
    base = DeepTaylor3D(model).attribute(x, target=0)
    model.fc.rule = ZEpsilonRule(1e-6)
    try:
        other = DeepTaylor3D(model).attribute(x, target=0)
    finally:
        del model.fc.rule
    assert not torch.allclose(base, other)
    from captum.attr._utils.lrp_rules import EpsilonRule

    model.fc.rule = EpsilonRule()
    try:
        with pytest.raises(TypeError, match="VideoLRPRule"):
            DeepTaylor3D(model).attribute(x, target=0)
    finally:
        del model.fc.rule


def test_unsupported_layer_errors_but_unused_layers_are_fine() -> None:
    class WithUnused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv3d(3, 4, 3)
            self.unused = nn.LayerNorm(4)  # never runs: must not matter
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.conv(x).relu().mean((2, 3, 4)))

    DeepTaylor3D(WithUnused()).attribute(torch.rand(1, 3, 4, 6, 6), target=0)

    class WithNorm(WithUnused):
        def forward(self, x):
            return self.head(self.unused(self.conv(x).relu().mean((2, 3, 4))))

    model = WithNorm()
    before = model_snapshot(model)
    with pytest.raises(TypeError, match="no rule for LayerNorm"):
        DeepTaylor3D(model).attribute(torch.rand(1, 3, 4, 6, 6), target=0)
    assert_model_unchanged(before, model)


def test_tuple_inputs_noise_tunnel_and_bad_arguments() -> None:
    model = load_demo_model()
    x = torch.rand(1, 3, 8, 16, 16)
    dt = DeepTaylor3D(model)
    out = dt.attribute((x,), target=0)
    assert isinstance(out, tuple) and out[0].shape == x.shape
    smooth = NoiseTunnel(dt).attribute(x, nt_samples=2, stdevs=0.01, target=0)
    assert smooth.shape == x.shape
    with pytest.raises(ValueError, match="unknown composite"):
        DeepTaylor3D(model, composite="nope")
    with pytest.raises(TypeError, match="first_layer_bounds"):
        DeepTaylor3D(model, first_layer_bounds=0.5)

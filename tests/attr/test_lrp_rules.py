"""LRP rules: each rule against its formula or against Zennit, on single 3-D layers."""

from __future__ import annotations

import pytest
import torch
from captum.attr import LRP
from captum.attr._utils.lrp_rules import PropagationRule
from torch import nn

from captum_video.attr import (
    FlatRule,
    GammaRule,
    PassRule,
    ProportionalRule,
    WinnerTakeAllRule,
    ZBRule,
    ZEpsilonRule,
    ZPlusRule,
)
from captum_video.attr._lrp.rules import stabilize
from captum_video.registry import bounds_from_normalization

zennit_rules = pytest.importorskip("zennit.rules")
zennit_attribution = pytest.importorskip("zennit.attribution")
zennit_composites = pytest.importorskip("zennit.composites")


def _rule_relevance(rule, module, x):
    """Relevance at the input of ``module`` for R_out = output, via the modified gradient
    (``c = R_out / y = 1``, so the gradient is seeded with ones); rules with leaves of their
    own (z^B, flat) add ``leaf * gradient``."""
    x = x.clone().requires_grad_(True)
    out = rule.modified_output(module, (x,), module(x))
    leaves = [x, *rule.input_leaves()]
    grads = torch.autograd.grad(out, leaves, torch.ones_like(out), allow_unused=True)
    relevance = sum(
        leaf.detach() * g for leaf, g in zip(leaves, grads, strict=True) if g is not None
    )
    return relevance, out.detach()


def _zennit_relevance(rule, module, x):
    composite = zennit_composites.LayerMapComposite([(type(module), rule)])
    with zennit_attribution.Gradient(model=module, composite=composite) as attributor:
        out, rel = attributor(x.clone(), lambda y: y)  # R_out = y
    return rel, out


def test_stabilize_and_bounds() -> None:
    assert stabilize(torch.tensor([0.0, 2.0, -2.0]), 0.5).tolist() == [0.5, 2.5, -2.5]
    low, high = bounds_from_normalization([0.5, 0.25], [0.5, 0.25])
    assert low.tolist() == [-1.0, -1.0] and high.tolist() == [1.0, 3.0]
    with pytest.raises(ValueError, match="std must be positive"):
        bounds_from_normalization([0.5], [0.0])
    with pytest.raises(ValueError, match="same length"):
        bounds_from_normalization([0.5, 0.5], [1.0])
    with pytest.raises(ValueError, match="low <= high"):
        ZBRule(1.0, 0.0)


@pytest.mark.parametrize("negative", [False, True])
def test_zplus_matches_zennit_and_conserves(negative: bool) -> None:
    conv = nn.Conv3d(3, 5, 3, padding=1, bias=True)
    x = torch.rand(2, 3, 4, 6, 6) - (0.5 if negative else 0.0)
    ours, out = _rule_relevance(ZPlusRule(), conv, x)
    theirs, _ = _zennit_relevance(zennit_rules.ZPlus(zero_params="bias"), conv, x)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    # z+ ignores the bias: relevance is conserved up to the stabiliser at small denominators.
    torch.testing.assert_close(ours.sum(), out.sum(), rtol=1e-3, atol=1e-4)
    # The modified output keeps the layer's value exactly.
    assert torch.equal(ZPlusRule().modified_output(conv, (x,), conv(x)), conv(x))


def test_zb_matches_zennit_per_channel_bounds() -> None:
    low, high = bounds_from_normalization([0.43, 0.39, 0.37], [0.23, 0.22, 0.21])
    conv = nn.Conv3d(3, 4, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2))
    x = torch.rand(1, 3, 4, 10, 10) * (high - low).view(1, 3, 1, 1, 1) + low.view(1, 3, 1, 1, 1)
    ours, out = _rule_relevance(ZBRule(low, high), conv, x)
    theirs, _ = _zennit_relevance(
        zennit_rules.ZBox(low.view(1, 3, 1, 1, 1), high.view(1, 3, 1, 1, 1)), conv, x
    )
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.sum(), out.sum(), rtol=1e-4, atol=1e-4)


def test_epsilon_rule_formula() -> None:
    lin = nn.Linear(6, 3)
    x = torch.randn(4, 6)
    ours, out = _rule_relevance(ZEpsilonRule(0.5), lin, x)
    z = x[:, :, None] * lin.weight.T[None]  # (N, in, out) contributions
    y = z.sum(1) + lin.bias
    expected = (z * (y / stabilize(y, 0.5))[:, None]).sum(2)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)


def test_max_pool_proportional_and_winner_take_all() -> None:
    pool = nn.MaxPool3d(2)
    x = torch.rand(1, 2, 4, 4, 4)
    prop, out = _rule_relevance(ProportionalRule(), pool, x)
    windows = x.reshape(1, 2, 2, 2, 2, 2, 2, 2).permute(0, 1, 2, 4, 6, 3, 5, 7).reshape(1, 2, 8, 8)
    share = windows / windows.sum(-1, keepdim=True) * out.reshape(1, 2, 8, 1)
    expected = (
        share.reshape(1, 2, 2, 2, 2, 2, 2, 2).permute(0, 1, 2, 5, 3, 6, 4, 7).reshape(x.shape)
    )
    torch.testing.assert_close(prop, expected, rtol=1e-5, atol=1e-6)
    wta, _ = _rule_relevance(WinnerTakeAllRule(), pool, x)
    assert int((wta > 0).sum()) == out.numel()  # one winner per window
    torch.testing.assert_close(wta.sum(), out.sum())
    assert not WinnerTakeAllRule().needs_hook(pool) and ProportionalRule().needs_hook(pool)
    assert not ProportionalRule().needs_hook(nn.AdaptiveAvgPool3d(1))


def test_pass_rule_keeps_relevance() -> None:
    act = nn.GELU()
    x = torch.randn(2, 3, 4, 5, 5)
    rel, out = _rule_relevance(PassRule(), act, x)
    mask = x.abs() > 1e-3
    torch.testing.assert_close(rel[mask], out[mask], rtol=1e-4, atol=1e-5)
    assert not PassRule().needs_hook(nn.ReLU())


def test_rules_have_their_own_buffers() -> None:
    a, b = ZPlusRule(), ZPlusRule()
    assert a.relevance_input is not b.relevance_input
    assert a.relevance_input is not PropagationRule.relevance_input


def test_rules_work_inside_captums_lrp() -> None:
    """Rules attached by hand run in Captum's own two-pass LRP and give Zennit's result."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv3d(3, 6, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool3d(2),
        nn.Conv3d(6, 8, 3, padding=1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool3d(1),
        nn.Flatten(), nn.Linear(8, 3, bias=False),
    ).eval()  # fmt: skip
    x = torch.rand(2, 3, 4, 8, 8)
    model[0].rule = ZBRule(0.0, 1.0)
    model[2].rule = ProportionalRule()
    model[3].rule = ZPlusRule()
    model[5].rule = ProportionalRule()
    model[6].rule = ProportionalRule()
    model[7].rule = ZPlusRule()
    captum_rel = LRP(model).attribute(x.clone(), target=1)
    logit = model(x)[:, 1].detach()
    composite = zennit_composites.SpecialFirstLayerMapComposite(
        layer_map=[
            (nn.ReLU, zennit_rules.Pass()),
            (nn.AdaptiveAvgPool3d, zennit_rules.Norm()),
            ((nn.Conv3d, nn.Linear), zennit_rules.ZPlus()),
        ],
        first_map=[(nn.Conv3d, zennit_rules.ZBox(0.0, 1.0))],
    )
    # Zennit has no proportional max pooling: compare the WTA form there and check the
    # proportional one by conservation.
    assert torch.allclose(captum_rel.sum((1, 2, 3, 4)), logit, rtol=1e-3)
    model[2].rule = WinnerTakeAllRule()
    for i, rule in ((0, ZBRule(0.0, 1.0)), (3, ZPlusRule()), (5, ProportionalRule()),
                    (6, ProportionalRule()), (7, ZPlusRule())):  # fmt: skip
        model[i].rule = rule
    captum_wta = LRP(model).attribute(x.clone(), target=1)
    with zennit_attribution.Gradient(model=model, composite=composite) as attributor:
        _, zennit_rel = attributor(x.clone(), torch.eye(3)[[1, 1]])
    zennit_rel = zennit_rel * logit.view(-1, 1, 1, 1, 1)
    scale = zennit_rel.abs().max()
    assert float((captum_wta - zennit_rel).abs().max() / scale) < 1e-4


_LAYERS = {
    "conv3d": (lambda: nn.Conv3d(3, 5, 3, padding=1), (2, 3, 4, 6, 6)),
    "strided": (
        lambda: nn.Conv3d(3, 4, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2)),
        (1, 3, 4, 9, 9),
    ),
    "depthwise": (lambda: nn.Conv3d(4, 4, 3, padding=1, groups=4), (2, 4, 4, 5, 5)),
    "linear": (lambda: nn.Linear(6, 4), (3, 6)),
}


@pytest.mark.parametrize("negative", [False, True])
@pytest.mark.parametrize("layer", list(_LAYERS))
def test_gamma_and_flat_match_zennit(layer: str, negative: bool) -> None:
    torch.manual_seed(0)
    make, shape = _LAYERS[layer]
    module = make()
    x = torch.rand(shape) - (0.5 if negative else 0.0)
    for ours_rule, zennit_rule in (
        (GammaRule(0.25), zennit_rules.Gamma(0.25)),
        (GammaRule(1.0), zennit_rules.Gamma(1.0)),
        (FlatRule(), zennit_rules.Flat()),
    ):
        ours, out = _rule_relevance(ours_rule, module, x)
        theirs, _ = _zennit_relevance(zennit_rule, module, x)
        scale = theirs.abs().max()
        assert float((ours - theirs).abs().max() / scale) < 1e-5, ours_rule
        assert torch.equal(ours_rule.modified_output(module, (x,), module(x)), module(x))
    # Flat ignores weights, inputs and the bias: relevance is conserved exactly.
    flat, out = _rule_relevance(FlatRule(), module, x)
    torch.testing.assert_close(flat.sum(), out.sum(), rtol=1e-5, atol=1e-5)


def test_gamma_conserves_without_bias_and_limits() -> None:
    conv = nn.Conv3d(3, 5, 3, padding=1, bias=False)
    x = torch.rand(2, 3, 4, 6, 6) - 0.3
    rel, out = _rule_relevance(GammaRule(0.25), conv, x)
    torch.testing.assert_close(rel.sum(), out.sum(), rtol=1e-4, atol=1e-4)
    # gamma = 0 is LRP-0 (the epsilon rule with a tiny epsilon).
    lrp0, _ = _rule_relevance(GammaRule(0.0), conv, x)
    eps, _ = _rule_relevance(ZEpsilonRule(1e-6), conv, x)
    torch.testing.assert_close(lrp0, eps, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        GammaRule(-1.0)


def test_gamma_skips_the_layers_own_backward_behind_a_relu() -> None:
    """Behind a ReLU no relevance reaches negative outputs: one transposed convolution, as
    for z+; otherwise the layer's own transposed map runs too (and the result is still
    Zennit's)."""
    conv = nn.Conv3d(3, 4, 3, padding=1)
    x = torch.rand(1, 3, 4, 6, 6, requires_grad=True)
    counts = {}
    for follow in ("relu", "none"):
        out = GammaRule().modified_output(conv, (x,), conv(x))
        out = out.relu() if follow == "relu" else out
        with torch.autograd.profiler.profile() as prof:
            torch.autograd.grad(out, x, torch.ones_like(out))
        counts[follow] = sum(e.name == "aten::convolution_backward" for e in prof.function_events)
    assert counts == {"relu": 1, "none": 2}


def test_gamma_and_flat_inside_captums_lrp() -> None:
    """Attached by hand, the new rules run in Captum's two-pass LRP and give Zennit's result."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv3d(3, 6, 3, padding=1), nn.ReLU(),
        nn.Conv3d(6, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1),
        nn.Flatten(), nn.Linear(8, 3),
    ).eval()  # fmt: skip
    x = torch.rand(2, 3, 4, 6, 6)
    model[0].rule = FlatRule()
    model[2].rule = GammaRule(0.25)
    model[4].rule = ProportionalRule()
    model[5].rule = ProportionalRule()
    model[6].rule = ZEpsilonRule(1e-6)
    captum_rel = LRP(model).attribute(x.clone(), target=1)
    logit = model(x)[:, 1].detach()
    composite = zennit_composites.SpecialFirstLayerMapComposite(
        layer_map=[
            (nn.ReLU, zennit_rules.Pass()),
            (nn.AdaptiveAvgPool3d, zennit_rules.Norm(stabilizer=1e-30)),
            (nn.Conv3d, zennit_rules.Gamma(0.25)),
            (nn.Linear, zennit_rules.Epsilon(1e-6)),
        ],
        first_map=[(nn.Conv3d, zennit_rules.Flat())],
    )
    with zennit_attribution.Gradient(model=model, composite=composite) as attributor:
        _, zennit_rel = attributor(x.clone(), torch.eye(3)[[1, 1]])
    # Zennit starts from R = 1 at the target; Captum's LRP scales by the target output.
    zennit_rel = zennit_rel.detach() * logit.view(-1, 1, 1, 1, 1)
    captum_rel = captum_rel.detach()
    assert float((captum_rel - zennit_rel).abs().max() / zennit_rel.abs().max()) < 1e-4

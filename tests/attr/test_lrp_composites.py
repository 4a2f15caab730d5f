"""LRP composites of DeepTaylor3D: equality with Zennit's composites on torchvision's video
ResNets, conservation on every registered CNN family, and the input layer of multi-pathway
models.

Conservation is checked exactly, not with a loose tolerance. Models have random weights and
BatchNorm statistics measured on random clips, then randomised around them (purely random
statistics make activations vanish or explode with depth, below or far above the
stabiliser). Relevance can only leave the propagation where a rule has nothing to hand it
to, i.e. at a zero denominator. For z+ that is a neuron with no positive contribution (all
``x_i w_ij <= 0``) whose value, made by a bias or by negative contributions, still carries
relevance (e.g. into a residual sum); for the pass rule of a BatchNorm that is not folded
(PyTorchVideo builds its blocks from attributes, so its BatchNorms stay) it is an input that
is exactly 0 whose output is the BatchNorm's shift. Counting twins of the two rules record
that relevance, and ``delta - lost`` must stay below 1e-3 of the relevance mass ``sum |R|``:
what remains is the stabiliser (every denominator ``z`` is shifted by ``eps = 1e-6``, a
relative error ``1e-6 / |z|`` per neuron) and float32 rounding; the worst case measured is
3.3e-4 (X3D with biases), 1.5e-6 on torchvision's models. The narrow PyTorchVideo test
models (8-channel stems) have many such neurons: z+ loses 1-13 % of the logit there, all of
it accounted for, against 1.4e-6 on torchvision's video ResNets and S3D. Without biases (BatchNorm
shift and mean, convolution and linear biases zeroed) the gamma and epsilon composites have
no zero denominator at all and conserve the logit to 1e-4 (measured <= 2.4e-5); with biases
they give each bias its share (documented in :class:`~captum_video.attr.GammaRule`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import Callable

import pytest
import torch
import zennit.attribution as zennit_attribution
import zennit.canonizers as zennit_canonizers
import zennit.composites as zennit_composites
import zennit.layer as zennit_layer
import zennit.rules as zennit_rules
import zennit.types as zennit_types
from torch import Tensor, nn

from captum_video.attr import (
    COMPOSITES,
    Composite,
    DeepTaylor3D,
    FlatRule,
    PassRule,
    ZPlusRule,
)
from captum_video.attr._lrp.rules import _forward_with
from captum_video.models import C3DSmall, R2Plus1DSmall, load_demo_model
from captum_video.registry import load_model
from tests.attr.test_canonizers import randomize_batch_norm

NEW_COMPOSITES = ["epsilon-gamma-box", "epsilon-box", "epsilon-plus", "epsilon-plus-flat"]


# -- Zennit with a canonizer for torchvision's video ResNet blocks ----------------------------


class VideoResNetCanonizer(zennit_canonizers.AttributeCanonizer):
    """Zennit's ``ResNetCanonizer`` for torchvision's *video* ``BasicBlock`` / ``Bottleneck``
    (Zennit's own only knows the 2-D ones): the residual sum through a ``Sum`` module."""

    def __init__(self) -> None:
        super().__init__(self._attribute_map)

    @classmethod
    def _attribute_map(cls, name, module):
        from torchvision.models.video.resnet import BasicBlock, Bottleneck

        if isinstance(module, (BasicBlock, Bottleneck)):
            return {"forward": cls.forward.__get__(module), "canonizer_sum": zennit_layer.Sum()}
        return None

    @staticmethod
    def forward(self, x):
        out = self.conv2(self.conv1(x))
        if hasattr(self, "conv3"):
            out = self.conv3(out)
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.canonizer_sum(torch.stack([identity, out], dim=-1)))


def _zennit_composite(name: str, low: Tensor, high: Tensor):
    """Zennit's composite of the same name. Two conventions are aligned with ours: Zennit's
    ``ZPlus`` keeps the positive bias in its denominator unless told ``zero_params="bias"``
    (deep Taylor's z+ ignores biases), and its ``Norm`` at sums and average pools adds a
    stabiliser where our proportional rule is the plain gradient."""
    canonizers = [zennit_canonizers.SequentialMergeBatchNorm(), VideoResNetCanonizer()]
    norm = zennit_rules.Norm(stabilizer=1e-30)
    layer_map = [(zennit_layer.Sum, norm), (zennit_types.AvgPool, norm)]
    zplus = [(zennit_types.Convolution, zennit_rules.ZPlus(zero_params="bias"))]
    if name == "epsilon-gamma-box":
        return zennit_composites.EpsilonGammaBox(
            low, high, layer_map=layer_map, canonizers=canonizers
        )
    if name == "epsilon-box":
        eps = [(zennit_types.Convolution, zennit_rules.Epsilon())]
        return zennit_composites.EpsilonGammaBox(
            low, high, layer_map=layer_map + eps, canonizers=canonizers
        )
    if name == "epsilon-plus":
        return zennit_composites.EpsilonPlus(layer_map=layer_map + zplus, canonizers=canonizers)
    assert name == "epsilon-plus-flat"
    return zennit_composites.EpsilonPlusFlat(layer_map=layer_map + zplus, canonizers=canonizers)


def _zennit(model: nn.Module, x: Tensor, target: int, composite) -> Tensor:
    """Zennit starts from R = 1 at the target: scale by the logit."""
    with torch.no_grad():
        classes = int(model(x[:1]).shape[1])
    with zennit_attribution.Gradient(model=model, composite=composite) as attributor:
        logits, rel = attributor(x.clone(), torch.eye(classes)[[target] * len(x)])
    return rel * logits[:, target].detach().view(-1, 1, 1, 1, 1)


def _video_resnet(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = randomize_batch_norm(load_model(name, num_classes=5))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.eps = 0.0  # Zennit's MergeBatchNorm leaves eps in place: x / sqrt(1 + eps)
    return model


@pytest.mark.parametrize(
    ("model_name", "composite"),
    [
        ("r3d_18", "epsilon-gamma-box"),
        ("r3d_18", "epsilon-plus-flat"),
        ("mc3_18", "epsilon-box"),
        ("r2plus1d_18", "epsilon-gamma-box"),
        ("r2plus1d_18", "epsilon-plus"),
    ],
)
def test_composites_equal_zennit_on_video_resnets(model_name: str, composite: str) -> None:
    model = _video_resnet(model_name)
    x = torch.rand(1, 3, 4, 16, 16)
    low, high = torch.zeros(1, 3, 1, 1, 1), torch.ones(1, 3, 1, 1, 1)
    ours = DeepTaylor3D(model, composite=composite, first_layer_bounds="none").attribute(
        x, target=1
    )
    theirs = _zennit(model, x, 1, _zennit_composite(composite, low, high))
    rel_err = (ours - theirs).abs().max() / theirs.abs().max()
    assert float(rel_err) < 1e-4, float(rel_err)


@pytest.mark.parametrize(
    ("composite", "zennit_class"),
    [
        ("epsilon-gamma-box", "EpsilonGammaBox"),
        ("epsilon-plus", "EpsilonPlus"),
        ("epsilon-plus-flat", "EpsilonPlusFlat"),
    ],
)
def test_composites_equal_zennit_defaults_on_a_bias_free_cnn(composite, zennit_class) -> None:
    """Without biases Zennit's composites, exactly as Zennit ships them, give our maps."""
    torch.manual_seed(0)
    model = C3DSmall(bias=False).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    x = torch.rand(2, 3, 8, 16, 16)
    cls = getattr(zennit_composites, zennit_class)
    kwargs = {"low": 0.0, "high": 1.0} if composite == "epsilon-gamma-box" else {}
    theirs = _zennit(model, x, 2, cls(**kwargs))
    ours = DeepTaylor3D(model, composite=composite, first_layer_bounds="none").attribute(
        x, target=2
    )
    assert float((ours - theirs).abs().max() / theirs.abs().max()) < 1e-4


# -- conservation on every registered CNN family ------------------------------------------


def _s3d() -> nn.Module:
    model = load_model("s3d", num_classes=5)
    # Its fixed (2, 7, 7) pool needs 16 x 224 x 224 clips; an adaptive one lets a tiny clip
    # through and is the same kind of layer for the rules.
    model.avgpool = nn.AdaptiveAvgPool3d(1)
    return model


def _pytorchvideo(builder: str, **kwargs) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        pytest.importorskip("pytorchvideo")
        import importlib

        from captum_video.registry import adapt

        module, name = builder.rsplit(".", 1)
        return adapt(getattr(importlib.import_module(module), name)(**kwargs))

    return build


_PV = "pytorchvideo.models"
#: family -> (tiny model with random weights, clip (T, H, W)).
FAMILIES: dict[str, tuple[Callable[[], nn.Module], tuple[int, int, int]]] = {
    "r3d_18": (lambda: load_model("r3d_18", num_classes=5), (4, 16, 16)),
    "mc3_18": (lambda: load_model("mc3_18", num_classes=5), (4, 16, 16)),
    "r2plus1d_18": (lambda: load_model("r2plus1d_18", num_classes=5), (4, 16, 16)),
    "s3d": (_s3d, (14, 32, 32)),  # the registry's fewest frames for S3D
    "demo C3DSmall": (lambda: load_demo_model("motion"), (8, 32, 32)),
    "R2Plus1DSmall": (lambda: R2Plus1DSmall(), (4, 16, 16)),
    "x3d": (
        _pytorchvideo(
            f"{_PV}.x3d.create_x3d", input_clip_length=4, input_crop_size=32,
            model_num_class=5, depth_factor=1.0, width_factor=1.0, dropout_rate=0.0,
            head_dim_out=32, head_activation=None,
        ),
        (4, 32, 32),
    ),
    "slow_r50": (
        _pytorchvideo(
            f"{_PV}.resnet.create_resnet", model_num_class=5, stem_dim_out=8,
            head_pool_kernel_size=(4, 1, 1), dropout_rate=0.0,
        ),
        (4, 32, 32),
    ),
    "csn": (
        _pytorchvideo(
            f"{_PV}.csn.create_csn", model_num_class=5, stem_dim_out=8,
            head_pool_kernel_size=(1, 1, 1),
        ),
        (8, 32, 32),
    ),
    "r2plus1d": (
        _pytorchvideo(
            f"{_PV}.r2plus1d.create_r2plus1d", model_num_class=5, stem_dim_out=8,
            head_pool_kernel_size=(2, 1, 1), head_activation=None, dropout_rate=0.0,
        ),
        (8, 32, 32),
    ),
    "slowfast": (
        _pytorchvideo(
            f"{_PV}.slowfast.create_slowfast", model_num_class=5, stem_dim_outs=(16, 2),
            head_pool_kernel_sizes=((2, 1, 1), (8, 1, 1)), dropout_rate=0.0,
        ),
        (8, 32, 32),
    ),
}  # fmt: skip


def _bias_free(model: nn.Module) -> nn.Module:
    """No biases anywhere: BatchNorm becomes a pure per-channel scale."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.bias.zero_()
                m.running_mean.zero_()
            elif isinstance(getattr(m, "bias", None), Tensor):
                m.bias.zero_()
    return model


def _counting(composite: Composite, lost: list[Tensor]) -> Composite:
    """``composite`` with z+ and pass rules that record the relevance reaching a zero
    denominator (per example), which no rule can hand on."""

    def record(out: Tensor, output: Tensor, dead: Tensor) -> None:
        if out.requires_grad:  # (not inside a gate computed without gradient)
            value = output.detach().clone()  # later in-place ops must not change it
            out.register_hook(lambda g: lost.append((value * g * dead).flatten(1).sum(1)))

    class CountingZPlus(ZPlusRule):
        def modified_output(self, module, inputs, output):
            out = super().modified_output(module, inputs, output)
            x, w = inputs[0].detach(), module.weight.detach()
            z = _forward_with(module, x.clamp(min=0), w.clamp(min=0)) + _forward_with(
                module, x.clamp(max=0), w.clamp(max=0)
            )
            record(out, output, z == 0)
            return out

    class CountingPass(PassRule):
        def modified_output(self, module, inputs, output):
            out = super().modified_output(module, inputs, output)
            record(out, output, inputs[0].detach() == 0)
            return out

    swap = {ZPlusRule: CountingZPlus, PassRule: CountingPass}
    table = [(types, swap.get(factory, factory)) for types, factory in composite.layer_rules]
    return dataclasses.replace(composite, layer_rules=table)


def _randomized_statistics(model: nn.Module, x: Tensor) -> nn.Module:
    """BatchNorm statistics measured on random clips, then randomised around them (and
    random affine parameters). Purely random statistics let activations shrink or blow up
    with depth: a bias-free S3D then ends with logits of 1e-7, below the stabiliser."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the calibration batch
    with torch.no_grad():
        model.train()(x)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in norms:
            n = m.num_features
            m.running_mean.add_(torch.randn(n, generator=g) * 0.1 * m.running_var.sqrt())
            m.running_var.mul_(torch.rand(n, generator=g) * 0.45 + 0.8)
            m.weight.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.copy_(torch.randn(n, generator=g) * 0.2)
    return model.eval()


def _family(name: str, bias_free: bool) -> tuple[nn.Module, Tensor]:
    build, size = FAMILIES[name]
    torch.manual_seed(0)
    model = build()
    x = torch.rand(2, 3, *size)
    _randomized_statistics(model, torch.rand(2, 3, *size))
    if bias_free:
        _bias_free(model)
    return model, x


def _check_conservation(model: nn.Module, x: Tensor, composite: str) -> float:
    lost: list[Tensor] = []
    dt = DeepTaylor3D(model, composite=_counting(COMPOSITES[composite], lost))
    rel, delta = dt.attribute(x, target=1, return_convergence_delta=True)
    with torch.no_grad():
        logits = model(x)[:, 1]
    # delta is taken on the canonized model: float32 rounding of the folded BatchNorms.
    atol = 1e-5 * float(logits.abs().max()) + 1e-6
    torch.testing.assert_close(delta, logits - rel.sum((1, 2, 3, 4)), rtol=1e-4, atol=atol)
    unexplained = delta - sum(lost, torch.zeros_like(delta))
    worst = float((unexplained.abs() / rel.abs().sum((1, 2, 3, 4))).max())
    assert worst < 1e-3, (composite, delta.tolist(), worst)
    assert rel.shape == x.shape and bool(torch.isfinite(rel).all())
    return worst


@pytest.mark.parametrize("family", list(FAMILIES))
def test_default_composite_conserves_on_every_family(family: str) -> None:
    """z+ / z^B on random weights with randomised BatchNorm statistics (biases everywhere):
    the input relevance is the target logit minus exactly what reached zero denominators."""
    model, x = _family(family, bias_free=False)
    _check_conservation(model, x, "zplus-zb")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_new_composites_conserve_on_every_bias_free_family(family: str) -> None:
    model, x = _family(family, bias_free=True)
    # No z+ layer and no bias: no zero denominator, the input relevance is the logit.
    rel, delta = DeepTaylor3D(model, composite="epsilon-gamma-box").attribute(
        x, target=1, return_convergence_delta=True
    )
    with torch.no_grad():
        logits = model(x)[:, 1]
    assert float((delta.abs() / logits.abs()).max()) < 1e-4, (delta, logits)
    # Flat input layer, z+ in the convolutions: exactly the zero denominators' share leaves.
    _check_conservation(model, x, "epsilon-plus-flat")


def test_epsilon_box_loses_nothing_without_biases() -> None:
    model, x = _family("r3d_18", bias_free=True)
    rel, delta = DeepTaylor3D(model, composite="epsilon-box").attribute(
        x, target=1, return_convergence_delta=True
    )
    with torch.no_grad():
        logits = model(x)[:, 1]
    assert float((delta.abs() / logits.abs()).max()) < 1e-4


# -- input layers: multi-pathway models, copies of the input, refusals ---------------------


def test_slowfast_both_stems_get_the_input_rule_and_pathways_add_up() -> None:
    """One clip through SlowFast's adapter (the slow pathway selects frames of it): each stem
    gets the input-layer rule, and the clip's relevance is the fast pathway's plus the slow
    pathway's put back on the frames it took."""
    from captum_video.registry import pack_pathways

    model, x = _family("slowfast", bias_free=False)
    slow, fast = pack_pathways(x, alpha=4)
    frames = slow.shape[2]

    class Pathways(nn.Module):
        """The two pathways given as one tensor, frames of the slow one first."""

        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, both: Tensor) -> Tensor:
            return self.net(both[:, :, :frames], both[:, :, frames:])

    index = torch.linspace(0, x.shape[2] - 1, frames).long()
    for composite in ("epsilon-plus-flat", "zplus-zb"):
        dt = DeepTaylor3D(model, composite=composite, first_layer_bounds="none")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            clip_rel = dt.attribute(x, target=1, verbose=True)
        rule = "FlatRule" if composite == "epsilon-plus-flat" else "ZBRule"
        stems = [line for line in out.getvalue().splitlines() if "multipathway_blocks" in line]
        assert sum(f"-> {rule}" in line for line in stems) == 2, stems
        both = DeepTaylor3D(Pathways(), composite=composite, first_layer_bounds="none")
        both_rel = both.attribute(torch.cat([slow, fast], dim=2), target=1)
        expected = both_rel[:, :, frames:].clone()
        expected.index_add_(2, index, both_rel[:, :, :frames])
        torch.testing.assert_close(clip_rel, expected, rtol=1e-4, atol=1e-6)


def test_input_rule_through_frame_selection_equals_direct_input() -> None:
    class Select(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x[:, :, 1::2].permute(0, 1, 2, 4, 3)

    torch.manual_seed(0)
    body = C3DSmall().eval()
    model = nn.Sequential(Select(), body)
    x = torch.rand(1, 3, 8, 16, 16)
    for composite in ("epsilon-gamma-box", "epsilon-plus-flat"):
        rel = DeepTaylor3D(model, composite=composite).attribute(x, target=0)
        direct = DeepTaylor3D(body, composite=composite).attribute(Select()(x), target=0)
        assert float(rel[:, :, 0::2].abs().max()) == 0.0
        torch.testing.assert_close(rel[:, :, 1::2], direct.permute(0, 1, 2, 4, 3))


def test_input_rules_refuse_layers_that_do_not_read_the_input() -> None:
    class Normalize(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return (x - 0.45) / 0.225

    model = nn.Sequential(Normalize(), C3DSmall().eval())
    x = torch.rand(1, 3, 8, 16, 16)
    for composite in ("epsilon-gamma-box", "epsilon-plus-flat"):
        with pytest.raises(ValueError, match="does not take a model input directly"):
            DeepTaylor3D(model, composite=composite).attribute(x, target=0)
    DeepTaylor3D(model, composite="epsilon-plus").attribute(x, target=0)  # no input rule
    body = C3DSmall().eval()
    body.layer2.conv.rule = FlatRule()
    try:
        with pytest.raises(ValueError, match="does not take a model input directly"):
            DeepTaylor3D(body).attribute(x, target=0)
    finally:
        del body.layer2.conv.rule


def test_composite_table_and_names() -> None:
    assert set(NEW_COMPOSITES) < set(COMPOSITES)
    conv, dense = nn.Conv3d(3, 4, 3), nn.Linear(4, 2)
    expected = {
        "epsilon-gamma-box": ("GammaRule", "ZEpsilonRule", True, None),
        "epsilon-box": ("ZEpsilonRule", "ZEpsilonRule", True, None),
        "epsilon-plus": ("ZPlusRule", "ZEpsilonRule", False, None),
        "epsilon-plus-flat": ("ZPlusRule", "ZEpsilonRule", True, FlatRule),
    }
    for name, (conv_rule, dense_rule, has_input_rule, first) in expected.items():
        comp = COMPOSITES[name]
        assert type(comp.rule_for(conv)).__name__ == conv_rule
        assert type(comp.rule_for(dense)).__name__ == dense_rule
        assert comp.has_input_rule is has_input_rule and comp.first_layer_rule is first
    assert COMPOSITES["epsilon-gamma-box"].rule_for(conv).gamma == 0.25

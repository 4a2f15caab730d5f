"""VideoTCAV: the linear-head toy check, parity with Captum's TCAV, pooling, caching, errors."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from captum.attr import LayerGradientXActivation, LayerIntegratedGradients
from captum.concept import TCAV
from torch import nn

from captum_video.concept import (
    TorchLinearClassifier,
    VideoConcept,
    VideoTCAV,
    pool_activations,
    significance,
)
from tests.helpers import assert_model_unchanged, model_snapshot

SHAPE = (3, 4, 6, 6)  # C, T, H, W of the toy clips


class LinearHead(nn.Module):
    """logit = W a + b on the activation a = x of the identity layer ``feat``."""

    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Identity()
        self.head = nn.Linear(3 * 4 * 6 * 6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.feat(x).flatten(1))


class Tiny3D(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv3d(4, 6, 3, padding=1, stride=2), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.conv2(self.conv1(x))).flatten(1))


def _clips(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


def _concepts(seed: int = 0, n: int = 12, n_random: int = 4):
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, SHAPE[1]).view(1, -1, 1, 1)  # brightening over time
    concept = VideoConcept(0, "brightening", clips=torch.rand(n, *SHAPE, generator=g) * 0.5 + ramp)
    randoms = [
        VideoConcept(100 + i, f"random{i}", clips=torch.rand(n, *SHAPE, generator=g), kind="random")
        for i in range(n_random)
    ]
    return concept, randoms


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    torch.manual_seed(0)
    return Tiny3D().eval()


def test_linear_head_toy_check() -> None:
    """The spec's check: TCAV is 1.0 along +u, 0.0 along -u, and random runs are 0 or 1."""
    torch.manual_seed(0)
    model = LinearHead().eval()
    u = model.head.weight[0].detach().view(SHAPE)
    u = u / u.norm()
    g = torch.Generator().manual_seed(0)
    plus = VideoConcept(0, "plus", clips=torch.rand(16, *SHAPE, generator=g) + 3 * u)
    minus = VideoConcept(1, "minus", clips=torch.rand(16, *SHAPE, generator=g) - 3 * u)
    control = VideoConcept(2, "control", clips=torch.rand(16, *SHAPE, generator=g))
    randoms = [
        VideoConcept(
            100 + i, f"random{i}", clips=torch.rand(16, *SHAPE, generator=g), kind="random"
        )
        for i in range(12)
    ]
    tcav = VideoTCAV(model, "feat")
    sets = VideoTCAV.experimental_sets([plus, minus, control], randoms)
    scores = tcav.interpret(torch.rand(10, *SHAPE, generator=g), sets, target=0)
    for r in randoms:
        assert scores[f"0-{r.id}"]["feat"]["sign_count"].tolist() == [1.0, 0.0]
        assert scores[f"1-{r.id}"]["feat"]["sign_count"].tolist() == [0.0, 1.0]
        assert float(scores[f"0-{r.id}"]["feat"]["cav_accuracy"]) == 1.0
    # With a linear head every input has the same gradient: a random CAV scores 0 or 1.
    null = [
        float(scores[f"{a.id}-{b.id}"]["feat"]["sign_count"][0])
        for a, b in [(s[0], s[1]) for s in sets if s[0].id >= 100]
    ]
    assert set(null) <= {0.0, 1.0} and 0 < sum(null) < len(null)
    result = significance(scores)
    assert result.is_significant("plus", "feat") and result.is_significant("minus", "feat")
    assert not result.is_significant("control", "feat")
    assert result.row("control", "feat")["p_value"] > 10 * result.row("plus", "feat")["p_value"]


def test_matches_captum_tcav_and_writes_nothing(tiny, tmp_path, monkeypatch) -> None:
    concept, randoms = _concepts()
    inputs = _clips(6, 7)
    sets = [[concept, randoms[0]], [concept, randoms[1]], [randoms[0], randoms[1]]]
    layers = ["conv1", "conv2"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        captum = TCAV(
            tiny, layers, classifier=TorchLinearClassifier(), save_path=str(tmp_path / "captum")
        )
        expected = captum.interpret(inputs, sets, target=1)
    workdir = tmp_path / "video"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    got = VideoTCAV(tiny, layers).interpret(inputs, sets, target=1)
    assert os.listdir(workdir) == []  # no ./cav/, no activation files
    assert any(files for _, _, files in os.walk(tmp_path / "captum"))  # Captum did write
    for key in expected:
        for layer in layers:
            for metric in ("sign_count", "magnitude"):
                assert torch.allclose(
                    got[key][layer][metric], expected[key][layer][metric], atol=1e-5
                ), (key, layer, metric)
            assert got[key][layer]["act_pool"] == "none"


def _manual_scores(model, layer, inputs, target, cav, pool, log_softmax=False):
    store = {}
    module = dict(model.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    out = model(inputs)
    handle.remove()
    out = torch.log_softmax(out, 1) if log_softmax else out
    (grad,) = torch.autograd.grad(out[:, target].sum(), store["a"])
    return pool_activations(grad, pool) @ cav


@pytest.mark.parametrize("pool", ["none", "spatial", "temporal", "both"])
@pytest.mark.parametrize("output", ["logit", "log_softmax"])
def test_scores_equal_directional_derivatives(tiny, pool, output) -> None:
    concept, randoms = _concepts()
    inputs = _clips(5, 3)
    tcav = VideoTCAV(tiny, ["conv1", "conv2"], act_pool=pool, output=output, batch_size=2)
    scores = tcav.interpret(inputs, [[concept, randoms[0]]], target=2)
    for layer in ("conv1", "conv2"):
        cav = tcav.cavs["0-100"][layer].stats["weights"][0]
        s = _manual_scores(tiny, layer, inputs, 2, cav, pool, output == "log_softmax")
        result = scores["0-100"][layer]
        assert torch.allclose(result["magnitude"][0], s.mean(), rtol=1e-4, atol=1e-7)
        assert torch.equal(result["sign_count"][0], (s > 0).float().mean())
        assert result["act_pool"] == pool and result["output"] == output
        # The two concepts of a set get mirrored scores.
        assert torch.allclose(result["magnitude"][1], -result["magnitude"][0])


def test_pooling_shapes_and_errors() -> None:
    act = torch.rand(2, 4, 3, 5, 6)
    assert pool_activations(act, "none").shape == (2, 360)
    assert pool_activations(act, "spatial").shape == (2, 12)
    assert pool_activations(act, "temporal").shape == (2, 120)
    assert torch.allclose(pool_activations(act, "both"), act.mean((2, 3, 4)))
    with pytest.raises(ValueError, match="time axis"):
        pool_activations(torch.rand(2, 7), "temporal", "fc")
    with pytest.raises(ValueError):
        pool_activations(act, "channel")


def test_layers_by_module_and_custom_layer_method(tiny) -> None:
    concept, randoms = _concepts()
    inputs = _clips(4, 5)
    sets = [[concept, randoms[0]], [concept, randoms[1]]]
    by_name = VideoTCAV(tiny, ["conv2"]).interpret(inputs, sets, target=0)
    by_module = VideoTCAV(tiny, [tiny.conv2]).interpret(inputs, sets, target=0)
    grad_method = LayerGradientXActivation(tiny, tiny.conv2, multiply_by_inputs=False)
    custom = VideoTCAV(tiny, tiny.conv2, layer_attr_method=grad_method)
    by_captum_method = custom.interpret(inputs, sets, target=0)
    for key in by_name:
        assert torch.equal(
            by_name[key]["conv2"]["sign_count"], by_module[key]["conv2"]["sign_count"]
        )
        assert torch.allclose(
            by_name[key]["conv2"]["magnitude"],
            by_captum_method[key]["conv2"]["magnitude"],
            atol=1e-6,
        )
    # Keyword arguments reach a custom method called through attribute.__wrapped__.
    lig = VideoTCAV(tiny, "conv2", layer_attr_method=LayerIntegratedGradients(tiny, tiny.conv2))
    lig_scores = lig.interpret(inputs, sets, target=0, n_steps=4)
    assert lig_scores["0-100"]["conv2"]["sign_count"].shape == (2,)


def test_disk_cache_writes_once_per_concept_and_layer_and_is_reused(tiny, tmp_path) -> None:
    concept, randoms = _concepts()
    concept = VideoConcept(0, "brightening", clips=concept.clips, batch_size=4)  # 3 batches
    inputs = _clips(4, 9)
    sets = [[concept, randoms[0]], [concept, randoms[1]]]
    first = VideoTCAV(
        tiny, ["conv1", "conv2"], cache="disk", save_path=str(tmp_path), act_pool="both"
    )
    scores = first.interpret(inputs, sets, target=0)
    act_files = [
        os.path.join(d, f) for d, _, fs in os.walk(tmp_path) for f in fs if f.endswith(".pt")
    ]
    assert len(act_files) == 3 * 2  # 3 concepts x 2 layers, not one file per batch
    assert len([f for _, _, fs in os.walk(tmp_path) for f in fs if f.endswith(".pkl")]) == 4
    second = VideoTCAV(
        tiny, ["conv1", "conv2"], cache="disk", save_path=str(tmp_path), act_pool="both"
    )
    second.generate_activation = None  # type: ignore[assignment]  # must not be needed
    again = second.interpret(inputs, sets, target=0)
    for key in scores:
        for layer in ("conv1", "conv2"):
            assert torch.equal(scores[key][layer]["sign_count"], again[key][layer]["sign_count"])


def test_model_and_inputs_untouched_and_bad_inputs(tiny) -> None:
    concept, randoms = _concepts()
    inputs = _clips(4, 2)
    before = model_snapshot(tiny)
    tcav = VideoTCAV(tiny, ["conv1", "conv2"])
    tcav.interpret(inputs, [[concept, randoms[0]]], target=1)
    assert_model_unchanged(before, tiny)
    assert not inputs.requires_grad and inputs.grad is None
    assert hasattr(VideoTCAV.interpret, "__wrapped__")  # Captum's log_usage contract
    with pytest.raises(ValueError, match="5-D"):
        tcav.interpret(inputs[:, :, 0], [[concept, randoms[0]]], target=1)
    with pytest.raises(ValueError, match="out of range"):
        tcav.interpret(inputs, [[concept, randoms[0]]], target=7)
    with pytest.raises(ValueError, match="NaN"):
        tcav.interpret(inputs * float("nan"), [[concept, randoms[0]]], target=1)
    with pytest.raises(ValueError):
        tcav.interpret(inputs, [[concept]], target=1)
    with pytest.raises(ValueError, match="share the id"):
        tcav.interpret(inputs, [[concept, VideoConcept(0, "other", clips=inputs)]], target=1)
    assert_model_unchanged(before, tiny)
    with pytest.raises(ValueError, match="no layer"):
        VideoTCAV(tiny, "conv9")
    with pytest.raises(ValueError, match="not a submodule"):
        VideoTCAV(tiny, nn.Conv3d(1, 1, 1))
    with pytest.raises(ValueError):
        VideoTCAV(tiny, "conv1", act_pool="channel")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        VideoTCAV(tiny, "conv1", output="softmax")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="time axis"):
        VideoTCAV(tiny, "fc", act_pool="both").interpret(inputs, [[concept, randoms[0]]], target=1)
    assert_model_unchanged(before, tiny)


def test_cavs_and_activations_are_reused_in_memory(tiny) -> None:
    concept, randoms = _concepts()
    tcav = VideoTCAV(tiny, "conv2")
    inputs = _clips(3, 4)
    first = tcav.interpret(inputs, [[concept, randoms[0]]], target=0)
    calls = []
    original = tcav.classifier.train_and_eval
    tcav.classifier.train_and_eval = lambda *a, **k: calls.append(1) or original(*a, **k)
    second = tcav.interpret(inputs, [[concept, randoms[0]]], target=0)
    assert calls == [] and torch.equal(
        first["0-100"]["conv2"]["magnitude"], second["0-100"]["conv2"]["magnitude"]
    )
    tcav.compute_cavs([[concept, randoms[0]]], force_train=True)
    assert calls == [1]

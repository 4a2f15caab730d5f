"""Two-stream models: the bundled checkpoints, per-stream explanations, stream shares, views.

The claims checked on the bundled two-stream models (an RGB stream of per-frame 2-D
convolutions + a flow stream of 3-D convolutions, logits added):

* each decides its variant on held-out clips, and its RGB stream cannot see frame order;
* every method that takes tuple inputs explains both streams; on the *motion* model the flow
  stream carries most of the relevance, on the *appearance* model the RGB stream does, for
  every method, and so say the ablation shares (independent of any attribution);
* the ablation's Shapley values equal each stream's own logit change (an oracle the late
  fusion gives: the output is the sum of the streams' logits), and a Grad-CAM layer map of
  a stream sums to that stream's logit minus its bias;
* model and tensors are left as they were; bad input gets a clear error.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from captum.attr import (
    Deconvolution,
    DeepLift,
    FeatureAblation,
    GradientShap,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    NoiseTunnel,
    Occlusion,
    Saliency,
    ShapleyValueSampling,
)

from captum_video.attr import (
    DeepTaylor3D,
    GradCAMTube,
    SaliencyTube,
    SelectiveRelevance,
    SpatioTemporalSplit,
    TemporalMask,
    TemporalOcclusion,
)
from captum_video.datasets import MovingShapes
from captum_video.metrics.streams import stream_ablation, stream_relevance_shares
from captum_video.models import (
    TwoStreamSmall,
    demo_checkpoint_path,
    evaluate,
    load_demo_model,
    train_demo_model,
    two_stream_inputs,
)
from captum_video.registry import family_of, min_frames_of
from captum_video.visualization.flow_overlay import flow_relevance_frames, write_flow_overlay
from tests.helpers import assert_model_unchanged, model_snapshot

VARIANTS = ("motion", "appearance")
#: Index of the stream that must carry the decision: 1 = flow (motion), 0 = RGB (appearance).
DECIDING = {"motion": 1, "appearance": 0}


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    return {v: load_demo_model(f"two_stream_{v}") for v in VARIANTS}


@pytest.fixture(scope="module")
def batches() -> dict[str, tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """Four held-out clips per variant (seed 777: no training run saw it) as (rgb, flow)."""
    out = {}
    for v in VARIANTS:
        clips, labels, _ = MovingShapes(v, num_samples=4, seed=777).tensors()
        out[v] = (two_stream_inputs(clips), labels)
    return out


def _per_stream_tubes(method: type, model: torch.nn.Module, x, target, **kw):
    """One layer map per stream: the stream's own last block (and head for SaliencyTube)."""
    maps = []
    for stream in (model.rgb, model.flow):
        args = (stream.layer3, stream.fc) if method is SaliencyTube else (stream.layer3,)
        maps.append(method(model, *args).attribute(x, target=target, interpolate=False, **kw))
    return tuple(maps)


#: name -> (explain(model, inputs, target) -> one attribution per stream, share options).
METHODS = {
    "Saliency": (lambda m, x, t: Saliency(m).attribute(x, target=t), {}),
    "InputXGradient": (lambda m, x, t: InputXGradient(m).attribute(x, target=t), {}),
    "IntegratedGradients": (
        lambda m, x, t: IntegratedGradients(m).attribute(x, target=t, n_steps=8),
        {},
    ),
    "DeepLift": (lambda m, x, t: DeepLift(m).attribute(x, target=t), {}),
    "DeepTaylor3D": (
        lambda m, x, t: DeepTaylor3D(m, first_layer_bounds=(-1.0, 1.0)).attribute(x, target=t),
        {},
    ),
    "DeepTaylor3D epsilon-plus-flat": (
        lambda m, x, t: DeepTaylor3D(m, composite="epsilon-plus-flat").attribute(x, target=t),
        {},
    ),
    "GradCAMTube per stream": (
        lambda m, x, t: _per_stream_tubes(GradCAMTube, m, x, t, relu_attributions=False),
        {"mode": "positive"},
    ),
    "SaliencyTube per stream": (
        lambda m, x, t: _per_stream_tubes(SaliencyTube, m, x, t),
        {"mode": "positive", "reduction": "mean"},
    ),
    "SelectiveRelevance(Saliency)": (
        lambda m, x, t: SelectiveRelevance(Saliency(m)).attribute(x, target=t),
        {},
    ),
    "FeatureAblation (one feature per stream)": (
        lambda m, x, t: FeatureAblation(m).attribute(
            x,
            target=t,
            feature_mask=(
                torch.zeros(1, 1, *x[0].shape[2:], dtype=torch.long),
                torch.ones(1, 1, *x[1].shape[2:], dtype=torch.long),
            ),
        ),
        {"mode": "positive"},
    ),
}


def test_checkpoints_are_small_accurate_and_registered(models) -> None:
    for v in VARIANTS:
        path = demo_checkpoint_path(f"two_stream_{v}")
        assert path.name == f"demo_two_stream_{v}.pt"
        assert path.stat().st_size < 300 * 1024
        clips, labels, _ = MovingShapes(v, num_samples=48, seed=778).tensors()
        accuracy = evaluate(models[v], two_stream_inputs(clips), labels)
        assert accuracy >= 0.9, f"two-stream {v}: {accuracy:.3f} on a fresh split"
        assert models[v].demo_info["val_accuracy"] >= 0.9
        assert models[v].demo_info["classes"] == list(MovingShapes(v).classes)
        assert family_of(models[v]).name == "captum-video-demo-two-stream"
        assert min_frames_of(models[v]) == 4
    # The existing names load what they loaded before.
    assert type(load_demo_model("motion")).__name__ == "C3DSmall"


def test_rgb_stream_is_blind_to_frame_order(models, batches) -> None:
    (rgb, _), _ = batches["motion"]
    stream = models["motion"].rgb
    shuffled = rgb[:, :, torch.randperm(rgb.shape[2])]
    with torch.no_grad():
        torch.testing.assert_close(stream(shuffled), stream(rgb), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", list(METHODS))
def test_the_deciding_stream_carries_most_relevance(name, models, batches) -> None:
    explain, options = METHODS[name]
    for v in VARIANTS:
        x, labels = batches[v]
        before, copies = model_snapshot(models[v]), tuple(t.clone() for t in x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Captum's "required_grads has been set"
            attributions = explain(models[v], x, labels)
        assert isinstance(attributions, tuple) and len(attributions) == 2
        shares = stream_relevance_shares(attributions, **options)
        assert torch.allclose(shares.sum(1), torch.ones(4))
        deciding = float(shares[:, DECIDING[v]].mean())
        assert deciding > 0.5, f"{name} on {v}: deciding stream's share {deciding:.3f}"
        assert_model_unchanged(before, models[v])
        for t, c in zip(x, copies, strict=True):
            assert torch.equal(t, c) and not t.requires_grad


def test_the_other_tuple_methods_return_one_attribution_per_stream(models, batches) -> None:
    """The methods the share table does not score still take ``(rgb, flow)``."""
    model = models["motion"]
    (rgb, flow), labels = batches["motion"]
    x, t = (rgb[:1], flow[:1]), labels[:1]
    stream_masks = (
        torch.zeros(1, 1, *rgb.shape[2:], dtype=torch.long),
        torch.ones(1, 1, *flow.shape[2:], dtype=torch.long),
    )
    calls = {
        "GuidedBackprop": lambda: GuidedBackprop(model).attribute(x, target=t),
        "Deconvolution": lambda: Deconvolution(model).attribute(x, target=t),
        "GradientShap": lambda: GradientShap(model).attribute(
            x, baselines=tuple(torch.zeros_like(v) for v in x), target=t, n_samples=2
        ),
        "NoiseTunnel": lambda: NoiseTunnel(Saliency(model)).attribute(x, target=t, nt_samples=2),
        "Occlusion": lambda: Occlusion(model).attribute(
            x,
            sliding_window_shapes=((3, 8, 16, 16), (2, 8, 16, 16)),
            strides=((3, 8, 16, 16), (2, 8, 16, 16)),
            target=t,
        ),
        "ShapleyValueSampling": lambda: ShapleyValueSampling(model).attribute(
            x, target=t, feature_mask=stream_masks, n_samples=1
        ),
        "TemporalOcclusion": lambda: TemporalOcclusion(model).attribute(x, target=t, window=8),
        "TemporalMask": lambda: TemporalMask(model).attribute(x, target=t, n_iter=2),
        "SpatioTemporalSplit": lambda: (
            SpatioTemporalSplit(Saliency(model)).attribute(x, target=t).joint
        ),
    }
    for name, call in calls.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = call()
        assert isinstance(out, tuple) and len(out) == 2, name
        assert out[0].shape[0] == 1 and out[1].shape[0] == 1, name
        if name == "TemporalMask":  # one (N, T) frame mask, the same for both streams
            assert out[0].shape == out[1].shape == (1, rgb.shape[2]) and torch.equal(*out)
            continue
        assert out[0].shape[2:] == rgb.shape[2:] and out[1].shape[2:] == flow.shape[2:], name
        assert all(torch.isfinite(o).all() for o in out), name


def test_deep_taylor_default_bounds_refuse_the_flow_clearly(models, batches) -> None:
    """The z^B bounds of the registry are the RGB clip's; the flow needs its own."""
    x, labels = batches["motion"]
    with pytest.raises(ValueError, match="channels"):
        DeepTaylor3D(models["motion"]).attribute(x, target=labels)


@pytest.mark.parametrize("replace", ["zero", "mean"])
def test_ablation_shares_and_the_late_fusion_oracle(replace, models, batches) -> None:
    for v in VARIANTS:
        model = models[v]
        x, labels = batches[v]
        result = stream_ablation(model, x, target=labels, replace=replace)
        assert float(result.shapley_share[:, DECIDING[v]].mean()) > 0.5
        assert float(result.drop_share[:, DECIDING[v]].mean()) > 0.5
        # Shapley values split the score change exactly ...
        torch.testing.assert_close(
            result.shapley.sum(1), result.score - result.reference_score, rtol=1e-4, atol=1e-3
        )
        # ... and, the output being a sum of stream logits, each is its stream's own change.
        rows = torch.arange(len(labels))
        refs = tuple(
            torch.zeros_like(t) if replace == "zero" else t.mean((2, 3, 4), True).expand_as(t)
            for t in x
        )
        with torch.no_grad():
            own = model.stream_logits(*x)
            own_ref = model.stream_logits(*refs)
        for i in range(2):
            expected = own[i][rows, labels] - own_ref[i][rows, labels]
            torch.testing.assert_close(result.shapley[:, i], expected, rtol=1e-4, atol=1e-3)
            torch.testing.assert_close(result.drop[:, i], expected, rtol=1e-4, atol=1e-3)


def test_gradcam_layer_map_sums_to_the_streams_logit(models, batches) -> None:
    model = models["motion"]
    x, labels = batches["motion"]
    maps = _per_stream_tubes(GradCAMTube, model, x, labels, relu_attributions=False)
    rows = torch.arange(len(labels))
    with torch.no_grad():
        own = model.stream_logits(*x)
    for i, stream in enumerate((model.rgb, model.flow)):
        expected = own[i][rows, labels] - stream.fc.bias[labels]
        torch.testing.assert_close(maps[i].flatten(1).sum(1), expected, rtol=1e-4, atol=1e-3)


def test_relevance_shares_against_hand_values() -> None:
    rgb = torch.tensor([[1.0, -3.0], [0.0, 0.0]])
    flow = torch.tensor([[4.0, 0.0, 0.0], [-1.0, 2.0, 0.0]])
    absolute = stream_relevance_shares((rgb, flow))
    torch.testing.assert_close(absolute, torch.tensor([[0.5, 0.5], [0.0, 1.0]]))
    positive = stream_relevance_shares((rgb, flow), mode="positive")
    torch.testing.assert_close(positive, torch.tensor([[0.2, 0.8], [0.0, 1.0]]))
    mean = stream_relevance_shares((rgb, flow), reduction="mean")  # rgb 4/2, flow 4/3
    torch.testing.assert_close(mean[0], torch.tensor([0.6, 0.4]))
    with pytest.warns(UserWarning, match="no positive relevance"):
        empty = stream_relevance_shares((-rgb.abs(), -flow.abs()), mode="positive")
    assert torch.isnan(empty).all()


def test_two_stream_inputs_and_model() -> None:
    clip = MovingShapes("motion", num_samples=1, seed=3)[0][0]
    before = clip.clone()
    rgb, flow = two_stream_inputs(clip)
    assert torch.equal(clip, before)
    assert rgb.shape == (1, 3, 16, 32, 32) and flow.shape == (1, 2, 16, 32, 32)
    assert float(flow.abs().max()) <= 1.0 and float(flow.abs().max()) > 0.1
    model = TwoStreamSmall().eval()
    with torch.no_grad():
        y_rgb, y_flow = model.stream_logits(rgb, flow)
        torch.testing.assert_close(model(rgb, flow), y_rgb + y_flow)


def test_bad_input_is_refused_clearly(models, batches) -> None:
    model = models["motion"]
    x, _ = batches["motion"]
    clip = torch.rand(1, 3, 16, 32, 32)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        two_stream_inputs(clip * 2)
    with pytest.raises(TypeError, match="clip"):
        two_stream_inputs((clip * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="channels|clip"):
        two_stream_inputs(torch.rand(1, 2, 16, 32, 32))
    with pytest.raises(ValueError, match="frames"):
        two_stream_inputs(torch.rand(1, 3, 1, 32, 32))
    with pytest.raises(ValueError, match="flow_scale"):
        two_stream_inputs(clip, flow_scale=0)
    with pytest.raises(TypeError, match="one tensor per stream"):
        stream_relevance_shares(x[0])
    with pytest.raises(ValueError, match="examples"):
        stream_relevance_shares((x[0], x[1][:2]))
    with pytest.raises(ValueError, match="NaN"):
        stream_relevance_shares((x[0], torch.full_like(x[1], float("nan"))))
    with pytest.raises(ValueError, match="mode"):
        stream_relevance_shares(x, mode="signed")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="replace"):
        stream_ablation(model, x, replace="noise")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="replace"):
        stream_ablation(model, x, replace=(0.0,))
    with pytest.raises(ValueError, match="target"):
        stream_ablation(model, x, target=7)
    with pytest.raises(TypeError, match="one tensor per stream"):
        stream_ablation(model, x[0])  # type: ignore[arg-type]


def test_ablation_leaves_a_train_mode_model_as_it_was(batches) -> None:
    model = load_demo_model("two_stream_motion").train()
    x, labels = batches["motion"]
    before = model_snapshot(model)
    with pytest.warns(UserWarning, match="eval mode"):
        stream_ablation(model, x, target=labels)
    assert_model_unchanged(before, model)


def test_flow_overlay_shows_direction_and_relevance(tmp_path: Path) -> None:
    flow = torch.zeros(2, 4, 16, 16)
    flow[0, :, 2:6, 2:6] = 1.0  # moving right, relevant
    flow[1, :, 10:14, 10:14] = 1.0  # moving down, not relevant
    relevance = torch.zeros(2, 4, 16, 16)
    relevance[:, :, 2:6, 2:6] = 1.0
    before = (flow.clone(), relevance.clone())
    frames = flow_relevance_frames(flow, relevance, background=0.0)
    assert frames.shape == (4, 16, 16, 3) and frames.dtype == np.uint8
    red = frames[0, 3, 3].astype(int)
    assert red[0] > 200 and red[1] < 30 and red[2] < 30  # hue 0 (right) at full relevance
    assert frames[0, 12, 12].max() == 0  # moving but irrelevant: dark
    assert torch.equal(flow, before[0]) and torch.equal(relevance, before[1])
    arrows = flow_relevance_frames(flow, relevance, style="arrows", scale=4, background=0.0)
    assert arrows.shape == (4, 64, 64, 3)
    plain = flow_relevance_frames(flow, relevance, style="arrows", scale=4, min_relevance=1.0)
    assert (arrows[:, :24, :24] != plain[:, :24, :24]).any()  # an arrow in the relevant cell
    assert (arrows[:, 40:, 40:] == 0).all()  # no arrow where relevance is zero
    png = write_flow_overlay(tmp_path / "f.png", flow, relevance, frames=2, caption="flow")
    gif = write_flow_overlay(tmp_path / "f.gif", flow, relevance, style="arrows")
    assert png.stat().st_size > 0 and gif.stat().st_size > 0
    with pytest.raises(ValueError, match=r"\(2, T, H, W\)"):
        flow_relevance_frames(flow.permute(1, 0, 2, 3), relevance)
    with pytest.raises(ValueError, match="sign"):
        flow_relevance_frames(flow, relevance, sign="all")
    with pytest.raises(ValueError, match="relevance covers"):
        flow_relevance_frames(flow, relevance[:, :2])
    with pytest.raises(ValueError, match="style"):
        flow_relevance_frames(flow, relevance, style="quiver")  # type: ignore[arg-type]


def test_training_command_builds_a_two_stream_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "ts.pt"
    model, acc = train_demo_model(
        "motion",
        "two_stream_small",
        num_train=8,
        num_val=8,
        epochs=1,
        batch_size=8,
        out=out,
        log=lambda s: None,
    )
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["arch"] == "two_stream_small" and "--arch two_stream_small" in ckpt["train_command"]
    assert isinstance(model, TwoStreamSmall) and 0.0 <= acc <= 1.0

"""Tests of GradCAMTube and SaliencyTube: Captum parity, CAM identity, localisation, hosts."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torchvision.models.video as tv
import torchvision.models.video.mvit as tv_mvit
from captum._utils.gradient import compute_layer_gradients_and_eval
from captum.attr import LayerAttribution, LayerGradCam, NoiseTunnel
from torch import nn

from captum_video.attr import GradCAMTube, SaliencyTube
from captum_video.models import C3DSmall, R2Plus1DSmall
from tests.helpers import assert_model_unchanged, model_snapshot


def captum_tube(model, layer, x, target, relu, to_input=False):
    cam = LayerGradCam(model, layer).attribute(
        x, target=target, relu_attributions=relu, attribute_to_layer_input=to_input
    )
    return LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="trilinear")


@pytest.fixture(scope="module")
def r3d():
    torch.manual_seed(0)
    return tv.r3d_18(num_classes=5).eval()


# -- Grad-CAM tubes: parity and definitions ---------------------------------------------------


@pytest.mark.parametrize("relu", [True, False])
def test_clip_weights_equal_captum_layergradcam(demo_model, motion_batch, relu):
    clips, labels, _ = motion_batch
    tube = GradCAMTube(demo_model, demo_model.layer3)
    ours = tube.attribute(clips, target=labels, relu_attributions=relu)
    ref = captum_tube(demo_model, demo_model.layer3, clips, labels, relu)
    assert ours.shape == (8, 1, 16, 32, 32)
    assert ref.abs().max() > 0
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_clip_weights_equal_captum_on_residual_net_and_layer_input():
    model = R2Plus1DSmall().eval()
    x = torch.rand(2, 3, 8, 16, 16)
    tube = GradCAMTube(model, model.layer3)
    for to_input in (False, True):
        ours = tube.attribute(x, target=[1, 2], attribute_to_layer_input=to_input)
        ref = captum_tube(model, model.layer3, x, [1, 2], True, to_input)
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_per_step_weights_follow_definition(demo_model, motion_batch):
    clips, labels, _ = motion_batch
    # layer2, not layer3: right before a GAP + linear head the gradient is constant over
    # (T', H', W'), so per-step and clip weights coincide there.
    layer = demo_model.layer2
    grads, acts = compute_layer_gradients_and_eval(demo_model, layer, (clips,), labels)
    weights = grads[0].mean(dim=(3, 4), keepdim=True)  # one weight per channel and time step
    expected = torch.relu((weights * acts[0]).sum(1, keepdim=True))
    tube = GradCAMTube(demo_model, layer)
    raw = tube.attribute(clips, target=labels, temporal_weights="per_step", interpolate=False)
    torch.testing.assert_close(raw, expected, atol=1e-6, rtol=1e-5)
    clip_raw = tube.attribute(clips, target=labels, interpolate=False)
    assert not torch.allclose(raw, clip_raw), "per-step weights must differ from clip weights"
    up = tube.attribute(clips, target=labels, temporal_weights="per_step")
    ref_up = LayerAttribution.interpolate(expected, (16, 32, 32), interpolate_mode="trilinear")
    last = GradCAMTube(demo_model, demo_model.layer3)
    torch.testing.assert_close(
        last.attribute(clips, target=labels, temporal_weights="per_step"),
        last.attribute(clips, target=labels),
        atol=1e-5,
        rtol=1e-4,
    )
    torch.testing.assert_close(up, ref_up, atol=1e-5, rtol=0)


def test_layer_map_shape_relu_and_class_specificity(demo_model, motion_batch):
    clips, _, _ = motion_batch
    tube = GradCAMTube(demo_model, demo_model.layer3)
    raw = tube.attribute(clips[:2], target=0, interpolate=False)
    assert raw.shape == (2, 1, 4, 4, 4)
    assert (raw >= 0).all()
    other = tube.attribute(clips[:2], target=1, interpolate=False, relu_attributions=False)
    same = tube.attribute(clips[:2], target=0, interpolate=False, relu_attributions=False)
    assert not torch.allclose(other, same)


def test_target_none_explains_predicted_class(demo_model, motion_batch):
    clips, _, _ = motion_batch
    tube = GradCAMTube(demo_model, demo_model.layer3)
    predicted = demo_model(clips).argmax(1)
    torch.testing.assert_close(tube.attribute(clips), tube.attribute(clips, target=predicted))


def test_batch_equals_single_clips(demo_model, motion_batch):
    clips, labels, _ = motion_batch
    tube = GradCAMTube(demo_model, demo_model.layer3)
    batch = tube.attribute(clips[:3], target=labels[:3], temporal_weights="per_step")
    for i in range(3):
        single = tube.attribute(
            clips[i : i + 1], target=int(labels[i]), temporal_weights="per_step"
        )
        torch.testing.assert_close(batch[i : i + 1], single, atol=1e-5, rtol=1e-4)


# -- Saliency Tubes -------------------------------------------------------------------------


def test_saliency_tube_cam_identity_demo_model(demo_model, motion_batch):
    clips, labels, _ = motion_batch
    tube = SaliencyTube(demo_model, demo_model.layer3, demo_model.fc)
    raw = tube.attribute(clips, target=labels, interpolate=False)
    logits = demo_model(clips).detach()
    picked = logits.gather(1, labels[:, None])[:, 0]
    torch.testing.assert_close(
        raw.mean(dim=(1, 2, 3, 4)) + demo_model.fc.bias[labels], picked, atol=1e-5, rtol=1e-5
    )
    # Grad-CAM without ReLU times T'H'W' equals the CAM map for a GAP + linear head.
    gradcam = GradCAMTube(demo_model, demo_model.layer3).attribute(
        clips, target=labels, relu_attributions=False, interpolate=False
    )
    torch.testing.assert_close(gradcam * raw[0, 0].numel(), raw, atol=1e-5, rtol=1e-4)


def test_saliency_tube_cam_identity_r3d_18(r3d):
    x = torch.rand(2, 3, 8, 16, 16)
    tube = SaliencyTube(r3d, r3d.layer4, r3d.fc)
    with pytest.warns(UserWarning, match="'layer3'"):
        raw = tube.attribute(x, target=[3, 1], interpolate=False)
    with torch.no_grad():
        logits = r3d(x)
    expected = logits[[0, 1], [3, 1]]
    torch.testing.assert_close(
        raw.mean(dim=(1, 2, 3, 4)) + r3d.fc.bias[[3, 1]], expected, atol=1e-4, rtol=1e-5
    )
    up = tube.attribute(x, target=[3, 1])
    assert up.shape == (2, 1, 8, 16, 16)
    maps = [tube.attribute(x[:1], target=c, interpolate=False) for c in (0, 1)]
    assert not torch.allclose(*maps), "maps of different classes must differ"


def test_saliency_tube_reads_classifier_at_call_time(demo_model, motion_batch):
    clips, labels, _ = motion_batch
    model = copy.deepcopy(demo_model)
    tube = SaliencyTube(model, model.layer3, model.fc)
    before = tube.attribute(clips[:2], target=labels[:2])
    with torch.no_grad():
        model.fc.weight.copy_(torch.randn_like(model.fc.weight))
    after = tube.attribute(clips[:2], target=labels[:2])
    assert (before - after).abs().max() > 1e-3, "randomised classifier must change the map"


# -- localisation on MovingShapes ---------------------------------------------------------------


@pytest.mark.parametrize("method", ["clip", "per_step", "saliency"])
def test_tube_mass_inside_ground_truth_mask(demo_model, motion_batch, method):
    clips, labels, masks = motion_batch
    if method == "saliency":
        tube = SaliencyTube(demo_model, demo_model.layer3, demo_model.fc)
        attr = tube.attribute(clips, target=labels, relu_attributions=True)
    else:
        tube = GradCAMTube(demo_model, demo_model.layer3)
        attr = tube.attribute(clips, target=labels, temporal_weights=method)
    attr = attr[:, 0].clamp_min(0)
    mass_in = (attr * masks).sum(dim=(1, 2, 3)) / attr.sum(dim=(1, 2, 3))
    uniform = masks.float().mean(dim=(1, 2, 3))  # a uniform map's share inside the mask
    assert (mass_in > uniform).float().mean() >= 0.75
    assert mass_in.mean() > 1.5 * uniform.mean()


# -- hosts: NoiseTunnel, tuple inputs, devices --------------------------------------------------


@pytest.mark.parametrize("kind", ["gradcam", "saliency"])
def test_noise_tunnel(demo_model, motion_batch, kind):
    clips, labels, _ = motion_batch
    if kind == "gradcam":
        tube = GradCAMTube(demo_model, demo_model.layer3)
        kwargs = {"temporal_weights": "per_step"}
    else:
        tube = SaliencyTube(demo_model, demo_model.layer3, demo_model.fc)
        kwargs = {}
    plain = tube.attribute(clips[:2], target=labels[:2], **kwargs)
    nt = NoiseTunnel(tube)
    quiet = nt.attribute(clips[:2], nt_samples=2, stdevs=0.0, target=labels[:2], **kwargs)
    torch.testing.assert_close(quiet, plain, atol=1e-5, rtol=1e-5)
    noisy = nt.attribute(clips[:2], nt_samples=3, stdevs=0.1, target=labels[:2], **kwargs)
    assert noisy.shape == plain.shape and torch.isfinite(noisy).all()
    assert not torch.allclose(noisy, plain)


class TwoStream(nn.Module):
    """RGB and flow streams, fused by adding their logits; plus an optional extra vector."""

    def __init__(self) -> None:
        super().__init__()
        self.rgb = C3DSmall(num_classes=4)
        self.flow = C3DSmall(num_classes=4, in_channels=2)

    def forward(self, rgb, flow, extra=None):
        out = self.rgb(rgb) + self.flow(flow)
        return out if extra is None else out + extra.sum(1, keepdim=True)


def test_tuple_inputs_give_tuple_outputs():
    model = TwoStream().eval()
    rgb, flow = torch.rand(2, 3, 8, 16, 16), torch.rand(2, 2, 8, 16, 16)
    tube = GradCAMTube(model, model.flow.layer2)
    ours = tube.attribute((rgb, flow), target=[0, 3])
    assert isinstance(ours, tuple) and len(ours) == 2
    cam = LayerGradCam(model, model.flow.layer2).attribute(
        (rgb, flow), target=[0, 3], relu_attributions=True
    )
    ref = LayerAttribution.interpolate(cam, (8, 16, 16), interpolate_mode="trilinear")
    for part in ours:
        torch.testing.assert_close(part, ref, atol=1e-5, rtol=0)
    extra = torch.rand(2, 5)
    with_vector = tube.attribute((rgb, flow, extra), target=[0, 3])
    assert len(with_vector) == 3 and with_vector[2].numel() == 0
    torch.testing.assert_close(with_vector[0], ref, atol=1e-5, rtol=0)  # a constant shift
    single = tube.attribute(rgb, target=[0, 3], additional_forward_args=(flow,))
    assert isinstance(single, torch.Tensor)
    torch.testing.assert_close(single, ref, atol=1e-5, rtol=0)


def test_device_and_dtype(demo_model, motion_batch, device):
    clips, labels, _ = motion_batch
    model = copy.deepcopy(demo_model).to(device)
    x, target = clips[:2].to(device), labels[:2].to(device)
    ours = GradCAMTube(model, model.layer3).attribute(x, target=target)
    assert ours.device.type == device.type
    ref = captum_tube(model, model.layer3, x, target, True)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    sal = SaliencyTube(model, model.layer3, model.fc).attribute(x, target=target)
    assert sal.device.type == device.type
    model64, x64 = model.double(), x.double()
    assert GradCAMTube(model64, model64.layer3).attribute(x64, target=0).dtype == torch.float64


def test_runs_under_no_grad_and_leaves_everything_untouched(demo_model, motion_batch):
    clips, labels, _ = motion_batch
    x = clips[:2].clone()
    snapshot = model_snapshot(demo_model)
    tube = GradCAMTube(demo_model, demo_model.layer3)
    with torch.no_grad():
        under = tube.attribute(x, target=labels[:2])
    assert not torch.is_inference_mode_enabled() and torch.is_grad_enabled()
    torch.testing.assert_close(under, tube.attribute(x, target=labels[:2]))
    SaliencyTube(demo_model, demo_model.layer3, demo_model.fc).attribute(x, target=labels[:2])
    assert not x.requires_grad and x.grad is None
    torch.testing.assert_close(x, clips[:2])
    assert_model_unchanged(snapshot, demo_model)
    assert all(p.grad is None for p in demo_model.parameters())


# -- warnings and errors -----------------------------------------------------------------------


def test_warning_names_a_layer_that_keeps_more_time(r3d):
    x = torch.rand(1, 3, 8, 16, 16)
    with pytest.warns(UserWarning, match=r"'layer4' keeps 1 of the input's 8 .*'layer3' \(2 steps"):
        GradCAMTube(r3d, r3d.layer4).attribute(x, target=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GradCAMTube(r3d, r3d.layer3).attribute(x, target=0)


def test_bad_inputs_raise_and_leave_model_untouched(demo_model, motion_batch):
    clips, _, _ = motion_batch
    snapshot = model_snapshot(demo_model)
    tube = GradCAMTube(demo_model, demo_model.layer3)
    x = clips[:1]
    cases = [
        (lambda: tube.attribute(x[:, :, 0], target=0), ValueError, "5-D"),
        (lambda: tube.attribute(x.int(), target=0), TypeError, "floating"),
        (lambda: tube.attribute(x, target=7), ValueError, "out of range"),
        (lambda: tube.attribute(x, target=0, temporal_weights="frame"), ValueError, "per_step"),
        (lambda: tube.attribute(x, target=0, interpolate_mode="cubic"), ValueError, "trilinear"),
        (
            lambda: GradCAMTube(demo_model, demo_model.flatten).attribute(x, target=0),
            ValueError,
            "time axis",
        ),
        (
            lambda: GradCAMTube(demo_model, nn.Conv3d(1, 1, 1)).attribute(x, target=0),
            ValueError,
            "did not run",
        ),
        (lambda: GradCAMTube(demo_model, demo_model.layer3, reshape="vit"), ValueError, "preset"),
        (
            lambda: SaliencyTube(demo_model, demo_model.layer1, demo_model.fc).attribute(
                x, target=0
            ),
            ValueError,
            "channels",
        ),
        (
            lambda: SaliencyTube(demo_model, demo_model.layer3, demo_model.avgpool),
            TypeError,
            "classifier",
        ),
        (lambda: GradCAMTube(demo_model, "layer3"), TypeError, "nn.Module"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()
        assert_model_unchanged(snapshot, demo_model)
    assert not x.requires_grad


def test_layer_called_twice_is_an_error():
    block = nn.Conv3d(3, 3, 3, padding=1)
    model = nn.Sequential(
        block, nn.ReLU(), block, nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(3, 2)
    )
    snapshot = model_snapshot(model)
    with pytest.raises(ValueError, match="more than once"):
        GradCAMTube(model, block).attribute(torch.rand(1, 3, 4, 8, 8), target=0)
    assert_model_unchanged(snapshot, model)


def test_in_place_op_after_layer_is_safe():
    class AddInPlace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv3d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            out = self.conv(x)
            out += 1.0  # an in-place op on the hooked output (residual style)
            return self.fc(torch.relu(out).mean(dim=(2, 3, 4)))

    model = AddInPlace()
    x = torch.rand(2, 3, 4, 8, 8)
    ours = GradCAMTube(model, model.conv).attribute(x, target=1, relu_attributions=False)
    ref = captum_tube(model, model.conv, x, 1, False)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


# -- torchvision video models at reduced size, random weights ----------------------------------


def check_tube(model, layer, x, reshape_grad_ref=None):
    snapshot = model_snapshot(model)
    tube = GradCAMTube(model, layer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the time-resolution warning is tested elsewhere
        raw = tube.attribute(
            x, target=1, relu_attributions=False, interpolate=False, temporal_weights="per_step"
        )
    up = tube.attribute(x, target=1, temporal_weights="per_step") if reshape_grad_ref else None
    assert torch.isfinite(raw).all() and raw.abs().sum() > 0
    assert_model_unchanged(snapshot, model)
    return raw, up


@pytest.mark.slow
@pytest.mark.parametrize("name", ["r3d_18", "mc3_18", "r2plus1d_18"])
def test_torchvision_video_resnets(name):
    model = getattr(tv, name)(num_classes=5).eval()
    x = torch.rand(1, 3, 8, 16, 16)
    check_tube(model, model.layer4, x)
    ours = GradCAMTube(model, model.layer3).attribute(
        x, target=1, relu_attributions=False, interpolate=False
    )
    ref = LayerGradCam(model, model.layer3).attribute(x, target=1)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_torchvision_s3d():
    model = tv.s3d(num_classes=5).eval()
    # s3d pools with a fixed 2x7x7 window, i.e. globally at its native 16x224x224; at reduced
    # size the equivalent global pool keeps the head valid.
    model.avgpool = nn.AdaptiveAvgPool3d(1)
    x = torch.rand(1, 3, 16, 32, 32)
    check_tube(model, model.features[-1], x)
    sal = SaliencyTube(model, model.features[-1], model.classifier)
    raw = sal.attribute(x, target=2, interpolate=False)
    with torch.no_grad():
        logit = model(x)[0, 2]
    torch.testing.assert_close(
        raw.mean() + model.classifier[1].bias[2], logit, atol=1e-4, rtol=1e-5
    )


def grads_by_full_backward(model, layer, x, target):
    """Independent reference: an ordinary forward + backward to the input, retaining the
    layer's gradient (parameters frozen by the caller to keep it cheap)."""
    saved = {}

    def hook(_m, _a, out):
        tensor = out[0] if isinstance(out, tuple) else out
        tensor.retain_grad()
        saved["out"] = out

    handle = layer.register_forward_hook(hook)
    try:
        model(x.clone().requires_grad_())[0, target].backward()
    finally:
        handle.remove()
    return saved["out"]


@pytest.mark.slow
def test_torchvision_swin3d_t_channels_last():
    model = tv.swin3d_t(num_classes=5).eval().requires_grad_(False)  # also: a frozen model
    x = torch.rand(1, 3, 8, 32, 32)
    layer = model.features[-1]
    raw, _ = check_tube(model, layer, x)
    assert raw.shape == (1, 1, 4, 1, 1)  # time from T/2, not from the channel axis
    out = grads_by_full_backward(model, layer, x, 1)
    acts, grads = out.detach().permute(0, 4, 1, 2, 3), out.grad.permute(0, 4, 1, 2, 3)
    expected = (grads.mean(dim=(3, 4), keepdim=True) * acts).sum(1, keepdim=True)
    torch.testing.assert_close(raw, expected, atol=1e-5, rtol=1e-4)
    sal = SaliencyTube(model, model.norm, model.head).attribute(x, target=1, interpolate=False)
    with torch.no_grad():
        logit = model(x)[0, 1]
    torch.testing.assert_close(sal.mean() + model.head.bias[1], logit, atol=1e-4, rtol=1e-5)


@pytest.mark.slow
def test_torchvision_mvit_v2_s_tokens(monkeypatch):
    build = tv_mvit._mvit  # mvit_v2_s fixes 16x224x224; build the same blocks for 8x32x32
    monkeypatch.setattr(
        tv_mvit, "_mvit", lambda **kw: build(**{**kw, "spatial_size": (32, 32), "temporal_size": 8})
    )
    model = tv.mvit_v2_s(num_classes=5).eval().requires_grad_(False)  # also: a frozen model
    x = torch.rand(1, 3, 8, 32, 32)
    layer = model.blocks[-2]
    raw, up = check_tube(model, layer, x, reshape_grad_ref=True)
    assert raw.shape == (1, 1, 4, 1, 1) and up.shape == (1, 1, 8, 32, 32)
    out = grads_by_full_backward(model, layer, x, 1)
    tokens, thw = out
    acts = tokens.detach()[:, 1:].reshape(1, *thw, -1).permute(0, 4, 1, 2, 3)
    grads = tokens.grad[:, 1:].reshape(1, *thw, -1).permute(0, 4, 1, 2, 3)
    expected = (grads.mean(dim=(3, 4), keepdim=True) * acts).sum(1, keepdim=True)
    torch.testing.assert_close(raw, expected, atol=1e-5, rtol=1e-4)
    with pytest.warns(UserWarning, match="zero everywhere"):
        GradCAMTube(model, model.blocks[-1]).attribute(x, target=1)

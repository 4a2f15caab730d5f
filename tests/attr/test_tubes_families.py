"""Tubes on the video models people use: Hugging Face transformers, PyTorchVideo (SlowFast's
pathways included) and torchvision's MViT, through the registry's adapters.

Every map is checked against an independent computation (a full backward with the layer's
gradient retained, re-indexed by hand) or an identity (CAM: the map's mean plus the bias is
the logit), and the model and the clips must come out unchanged.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch import nn
from torchvision.models.video.mvit import MSBlockConfig, MViT

from captum_video.attr import GradCAMTube, SaliencyTube
from captum_video.registry import adapt, classifier_of, default_layer, load_model, pack_pathways
from tests.helpers import assert_model_unchanged, model_snapshot
from tests.test_registry_hf import CLIP, build_tiny_hf
from tests.test_registry_pytorchvideo import tiny_pytorchvideo_models


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from threads; on a busy 2-core machine they lose a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pv_models() -> dict[str, tuple[nn.Module, tuple[int, int, int]]]:
    return {name: (adapt(m), size) for name, (m, size) in tiny_pytorchvideo_models().items()}


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    folders = build_tiny_hf(tmp_path_factory.mktemp("hf-tubes"))
    return {name: load_model(f"hf:{folder}") for name, folder in folders.items()}


def check_maps(model: nn.Module, layer: nn.Module, clip: torch.Tensor, method: type) -> Any:
    """A tube of the clip's shape, finite and not constant; model and clip unchanged.

    Non-constant is checked without the ReLU: random weights may make a class's Grad-CAM
    negative everywhere."""
    snapshot, original = model_snapshot(model), clip.clone()
    tube = method(model, layer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # time-resolution warnings are tested elsewhere
        maps = tube.attribute(clip, target=[1, 2])
        signed = tube.attribute(clip, target=[1, 2], relu_attributions=False)
    assert maps.shape == signed.shape == (clip.shape[0], 1, *clip.shape[2:])
    assert torch.isfinite(maps).all() and torch.isfinite(signed).all()
    for clip_map in signed:
        assert clip_map.max() > clip_map.min(), "a constant map"
    assert_model_unchanged(snapshot, model)
    assert torch.equal(clip, original)
    return maps


# -- PyTorchVideo ---------------------------------------------------------------------------

PV_CAM_HEADS = ["slow", "csn", "r2plus1d", "slowfast"]


@pytest.mark.parametrize("name", ["x3d", "slow", "csn", "r2plus1d", "slowfast", "mvit"])
def test_gradcam_tube_on_pytorchvideo(name, pv_models):
    model, size = pv_models[name]
    check_maps(model, default_layer(model)[1], torch.rand(2, 3, *size), GradCAMTube)


@pytest.mark.parametrize("name", PV_CAM_HEADS)
def test_saliency_tube_cam_identity_on_pytorchvideo(name, pv_models):
    model, size = pv_models[name]
    layer = default_layer(model)[1]
    clip = torch.rand(2, 3, *size)
    check_maps(model, layer, clip, SaliencyTube)
    raw = SaliencyTube(model, layer).attribute(clip, target=[1, 2], interpolate=False)
    raws = raw if isinstance(raw, tuple) else (raw,)  # SlowFast: one layer map per pathway
    with torch.no_grad():
        logits = model(clip)[[0, 1], [1, 2]]
    bias = classifier_of(model).bias[[1, 2]]
    total = sum(r.mean(dim=(1, 2, 3, 4)) for r in raws) + bias
    torch.testing.assert_close(total, logits, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["x3d", "mvit"])
def test_saliency_tube_refuses_heads_that_are_not_pool_and_linear(name, pv_models):
    model, _ = pv_models[name]
    with pytest.raises(ValueError, match="no classifier head known"):
        SaliencyTube(model, default_layer(model)[1])


def test_slowfast_gives_one_tube_per_pathway_and_their_sum(pv_models):
    model, size = pv_models["slowfast"]
    layer = default_layer(model)[1]
    clip = torch.rand(2, 3, *size)
    tube = GradCAMTube(model, layer)
    raw = tube.attribute(clip, target=[1, 2], interpolate=False, relu_attributions=False)
    assert isinstance(raw, tuple) and [r.shape[2] for r in raw] == [2, 8]  # slow, fast

    # Oracle: an ordinary forward + backward with the stage's outputs retained.
    kept: dict[str, Any] = {}

    def keep(_m, _a, out):
        for tensor in out:
            tensor.retain_grad()
        kept["out"] = list(out)

    handle = layer.register_forward_hook(keep)
    try:
        model(clip.clone().requires_grad_())[[0, 1], [1, 2]].sum().backward()
    finally:
        handle.remove()
    model.zero_grad(set_to_none=True)
    for ours, tensor in zip(raw, kept["out"], strict=True):
        weights = tensor.grad.mean(dim=(2, 3, 4), keepdim=True)
        expected = (weights * tensor.detach()).sum(1, keepdim=True)
        torch.testing.assert_close(ours, expected, atol=1e-6, rtol=1e-4)

    combined = tube.attribute(clip, target=[1, 2])
    slow = tube.attribute(clip, target=[1, 2], pathway=0)
    fast = tube.attribute(clip, target=[1, 2], pathway=1)
    assert combined.shape == slow.shape == fast.shape == (2, 1, *size)
    torch.testing.assert_close(combined, slow + fast)
    torch.testing.assert_close(tube.attribute(clip, target=[1, 2], pathway="sum"), combined)
    # Captum's convention: one clip per pathway in, one map per pathway out, each at the
    # resolution of its own input.
    pathways = tuple(pack_pathways(clip, 4))
    per_input = tube.attribute(pathways, target=[1, 2])
    assert isinstance(per_input, tuple)
    assert [m.shape for m in per_input] == [(2, 1, *p.shape[2:]) for p in pathways]
    torch.testing.assert_close(per_input[1], fast)
    with pytest.raises(ValueError, match="pathway must be"):
        tube.attribute(clip, target=1, pathway=2)
    with pytest.raises(ValueError, match="needs interpolate=True"):
        tube.attribute(clip, target=1, pathway="sum", interpolate=False)


# -- Hugging Face ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["videomae", "timesformer", "vivit", "xclip"])
def test_gradcam_tube_on_hf_models(name, hf_models):
    model = hf_models[name]
    check_maps(model, default_layer(model)[1], torch.rand(2, 3, *CLIP), GradCAMTube)
    with pytest.raises(ValueError, match="no classifier head known"):
        SaliencyTube(model, default_layer(model)[1])


def test_timesformer_tube_equals_a_hand_made_grad_cam(hf_models):
    model = hf_models["timesformer"]
    name, layer = default_layer(model)
    clip = torch.rand(1, 3, *CLIP)
    raw = GradCAMTube(model, layer).attribute(
        clip, target=2, interpolate=False, relu_attributions=False
    )
    kept: dict[str, torch.Tensor] = {}

    def keep(_m, _a, out):
        out[0].retain_grad()
        kept["tokens"] = out[0]

    handle = layer.register_forward_hook(keep)
    try:
        model(clip)[0, 2].backward()
    finally:
        handle.remove()
    model.zero_grad(set_to_none=True)
    tokens = kept["tokens"]
    t, h, w = CLIP[0], 2, 2

    # TimeSformer orders patch tokens space-major: token 1 + (i * w + j) * t + k is patch
    # (i, j) of frame k (after the class token).
    def volume(x: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros(1, x.shape[-1], t, h, w)
        for i in range(h):
            for j in range(w):
                for k in range(t):
                    out[0, :, k, i, j] = x[0, 1 + (i * w + j) * t + k]
        return out

    acts, grads = volume(tokens.detach()), volume(tokens.grad)
    expected = (grads.mean(dim=(2, 3, 4), keepdim=True) * acts).sum(1, keepdim=True)
    torch.testing.assert_close(raw, expected, atol=1e-6, rtol=1e-4)


def test_zero_gradient_warning_names_the_default_layer_on_hf(hf_models):
    model = hf_models["vivit"]
    with pytest.warns(UserWarning, match=r"zero everywhere.*'model\.vivit\.layers\.0'"):
        GradCAMTube(model, model.model.vivit.layers[-1]).attribute(torch.rand(1, 3, *CLIP))


# -- torchvision MViT and PyTorchVideo MViT ---------------------------------------------------


def tiny_torchvision_mvit() -> nn.Module:
    blocks = [
        MSBlockConfig(1, 16, 16, [3, 3, 3], [3, 3, 3], [1, 1, 1], [1, 2, 2]),
        MSBlockConfig(1, 16, 32, [3, 3, 3], [3, 3, 3], [1, 2, 2], [1, 1, 1]),
        MSBlockConfig(2, 32, 32, [3, 3, 3], [3, 3, 3], [1, 1, 1], [1, 1, 1]),
    ]
    torch.manual_seed(0)
    return MViT(
        spatial_size=(32, 32),
        temporal_size=8,
        block_setting=blocks,
        residual_pool=True,
        residual_with_cls_embed=False,
        rel_pos_embed=True,
        proj_after_attn=True,
        num_classes=4,
    ).eval()


def test_zero_gradient_warning_names_the_default_layer_on_torchvision_mvit():
    model = tiny_torchvision_mvit()
    assert default_layer(model)[0] == "blocks.1"
    clip = torch.rand(1, 3, 8, 32, 32)
    with pytest.warns(UserWarning, match=r"zero everywhere.*torchvision-mvit.*'blocks\.1'"):
        GradCAMTube(model, model.blocks[-1]).attribute(clip, target=1)
    check_maps(model, model.blocks[1], torch.rand(2, 3, 8, 32, 32), GradCAMTube)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default layer has a gradient: no warning
        GradCAMTube(model, model.blocks[1]).attribute(clip, target=1)


def test_zero_gradient_warning_names_the_default_layer_on_pytorchvideo_mvit(pv_models):
    model, size = pv_models["mvit"]
    with pytest.warns(UserWarning, match=r"zero everywhere.*pytorchvideo-mvit.*'blocks\.0'"):
        GradCAMTube(model, model.blocks[-1]).attribute(torch.rand(1, 3, *size), target=0)

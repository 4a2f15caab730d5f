"""The architecture registry: one entry per family, asked by methods, pipeline and CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision.models.video as tv
from torch import nn

from captum_video.attr import (
    DeepTaylor3D,
    GradCAMTube,
    ResidualAddCanonizer,
    SaliencyTube,
    canonized,
)
from captum_video.models import C3DSmall, R2Plus1DSmall, load_demo_model
from captum_video.registry import (
    GENERIC,
    KINETICS400_CLASSES,
    ModelFamily,
    _family,
    bounds_from_normalization,
    class_names_of,
    classifier_of,
    default_layer,
    families,
    family_of,
    head_layer,
    input_size_of,
    load_model,
    min_frames_of,
    model_names,
    normalization_of,
    register_family,
    reshape_for,
    residual_block_forwards,
)


@pytest.fixture(scope="module")
def swin():
    return tv.swin3d_t(num_classes=3).eval()


@pytest.fixture(scope="module")
def mvit():
    return tv.mvit_v2_s(num_classes=3).eval()


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch):
    """Register families in a copy of the registry, dropped after the test."""
    monkeypatch.setattr(_family, "_FAMILIES", dict(_family._FAMILIES))


def test_torchvision_and_demo_models_are_registered_entries():
    names = {f.name for f in families()}
    assert {
        "torchvision-video-resnet",
        "torchvision-s3d",
        "torchvision-mvit",
        "torchvision-swin3d",
        "captum-video-demo",
        "captum-video-r2plus1d-small",
    } <= names
    assert {"r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v2_s", "swin3d_t", "demo"} <= set(
        model_names()
    )
    assert family_of(tv.r3d_18()).name == "torchvision-video-resnet"
    assert family_of(C3DSmall()).name == "captum-video-demo"
    assert family_of(nn.Linear(2, 2)) is GENERIC


def test_reshape_for_torchvision_models(swin, mvit):
    assert reshape_for(swin, swin.features[-1]) == "swin3d"
    assert reshape_for(swin, swin.features[1]) == "swin3d"  # patch merging
    assert reshape_for(swin, swin.features[0][0]) == "swin3d"  # one block
    assert reshape_for(swin, swin.norm) == "swin3d"
    assert reshape_for(swin, swin.patch_embed) == "swin3d"
    assert reshape_for(mvit, mvit.blocks[-2]) == "mvit"
    assert reshape_for(mvit, mvit.norm) == "identity"
    net = C3DSmall()
    assert reshape_for(net, net.layer3) == "identity"
    # a wrapping function instead of a module: the layer's type decides
    assert reshape_for(lambda x: swin(x), swin.features[-1]) == "swin3d"
    assert reshape_for(lambda x: mvit(x), mvit.blocks[3]) == "mvit"


def test_default_layer(swin, mvit):
    net = C3DSmall()
    assert default_layer(net) == ("layer3", net.layer3)
    assert default_layer(swin)[0] == "features.6"
    assert default_layer(mvit)[0] == "blocks.14"
    r3d = tv.r3d_18(num_classes=3)
    assert default_layer(r3d) == ("layer3", r3d.layer3)  # keeps T/4: no coarse-time warning
    assert head_layer(r3d) == ("layer4", r3d.layer4)  # what the head pools, for SaliencyTube
    assert default_layer(tv.s3d(num_classes=3))[0] == "features.12"
    assert head_layer(tv.s3d(num_classes=3))[0] == "features.15"
    assert head_layer(net) == ("layer3", net.layer3)  # families that do not say: default_layer
    with pytest.raises(ValueError, match="no default layer"):
        default_layer(nn.Linear(2, 2))


def test_a_wrapped_model_is_found_through_its_registered_submodule():
    inner = load_demo_model("motion")
    wrapped = nn.Sequential(nn.Identity(), inner)
    assert default_layer(wrapped) == ("1.layer3", inner.layer3)
    assert classifier_of(wrapped) is inner.fc
    assert normalization_of(wrapped) == "none"
    assert class_names_of(wrapped) == ["right", "left", "down", "up"]
    clip = torch.rand(1, 3, 16, 32, 32)
    tube = SaliencyTube(wrapped, default_layer(wrapped)[1])  # head from the registry
    assert tube.attribute(clip, target=0).shape == (1, 1, 16, 32, 32)


def test_family_facts():
    r3d = tv.r3d_18()
    assert normalization_of(r3d) == "kinetics"
    assert normalization_of(tv.mvit_v2_s()) == "mvit"
    assert normalization_of(C3DSmall()) == "none"
    assert classifier_of(r3d) is r3d.fc
    s3d = tv.s3d(num_classes=5)
    assert classifier_of(s3d) is s3d.classifier
    assert class_names_of(r3d) == KINETICS400_CLASSES
    assert len(KINETICS400_CLASSES) == 400 and KINETICS400_CLASSES[0] == "abseiling"
    assert class_names_of(tv.r3d_18(num_classes=5)) is None  # fine-tuned: names unknown
    assert min_frames_of(C3DSmall()) == 4 and min_frames_of(tv.mvit_v2_s()) == 16
    assert input_size_of(C3DSmall()) == (16, 32, 32)
    assert input_size_of(tv.r2plus1d_18()) == (16, 112, 112)


def test_residual_blocks_come_from_the_registry():
    table = residual_block_forwards()
    from torchvision.models.video.resnet import BasicBlock as TvBasic
    from torchvision.models.video.resnet import Bottleneck

    from captum_video.models import BasicBlock

    assert {BasicBlock, TvBasic, Bottleneck} <= set(table)
    model = R2Plus1DSmall().eval()
    x = torch.rand(1, 3, 8, 16, 16)
    with torch.no_grad(), canonized(model, [ResidualAddCanonizer()]):
        assert hasattr(model.layer1, "lrp_residual_add")
        canonized_out = model(x)
    assert not hasattr(model.layer1, "lrp_residual_add")
    torch.testing.assert_close(canonized_out, model(x))


class _TinyNet(nn.Module):
    """A family of one, registered by the next test."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(self.pool(self.body(x)).flatten(1))


def test_registering_a_family_is_all_a_new_model_needs(scratch_registry, tmp_path: Path):
    family = register_family(
        ModelFamily(
            "tiny-test",
            (_TinyNet,),
            default_layer="body",
            head="out",
            normalization="kinetics",
            class_names=["yes", "no"],
            constructors={"tiny-test-net": lambda num_classes=None: _TinyNet()},
        )
    )
    assert family_of(_TinyNet()) is family
    net = load_model("tiny-test-net")
    name, layer = default_layer(net)
    assert name == "body"
    clip = torch.rand(1, 3, 4, 8, 8)
    assert GradCAMTube(net, layer).attribute(clip).shape == (1, 1, 4, 8, 8)
    assert SaliencyTube(net, layer).attribute(clip, target=1).shape == (1, 1, 4, 8, 8)
    dt = DeepTaylor3D(net)  # first-layer bounds from the family's normalisation
    low, high = bounds_from_normalization("kinetics")
    torch.testing.assert_close(dt.first_layer_bounds[0], low)
    assert class_names_of(net) == ["yes", "no"]
    with pytest.raises(ValueError, match="already registered"):
        register_family(ModelFamily("tiny-test", (_TinyNet,)))
    with pytest.raises(ValueError, match="already belong"):
        register_family(ModelFamily("other", (nn.Identity,), constructors={"r3d_18": tv.r3d_18}))


def test_load_model_reads_local_state_dicts(tmp_path: Path):
    reference = load_model("r3d_18", num_classes=7)
    path = tmp_path / "r3d.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in reference.state_dict().items()}}, path)
    loaded = load_model("r3d_18", path)  # 7 classes read from the file
    x = torch.rand(1, 3, 4, 32, 32)
    assert torch.allclose(loaded(x), reference(x), atol=1e-5)
    torch.save({"bogus": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="does not fit r3d_18"):
        load_model("r3d_18", tmp_path / "bad.pt", num_classes=7)
    with pytest.raises(FileNotFoundError):
        load_model("r3d_18", tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="unknown model 'resnet50'"):
        load_model("resnet50")
    assert load_model("demo-appearance").demo_info["variant"] == "appearance"


def test_weights_of_another_architecture_name_both_shapes(tmp_path: Path):
    path = tmp_path / "mc3.pt"
    torch.save(load_model("mc3_18", num_classes=4).state_dict(), path)
    with pytest.raises(ValueError) as info:
        load_model("r2plus1d_18", path)
    message = str(info.value)
    assert "\n" not in message and "does not fit r2plus1d_18" in message
    assert "another architecture" in message
    path = tmp_path / "r3d400.pt"
    torch.save(load_model("r3d_18").state_dict(), path)
    with pytest.raises(ValueError, match=r"fc.weight expects \(7, 512\), file has \(400, 512\)"):
        load_model("r3d_18", path, num_classes=7)


@pytest.mark.parametrize("name", ["r3d_18", "mc3_18", "r2plus1d_18", "s3d", "demo"])
def test_the_default_layer_never_triggers_the_coarse_time_warning(name: str) -> None:
    import warnings

    model = load_model(name, num_classes=None if name == "demo" else 5)
    frames, height, width = input_size_of(model)
    side = 32 if name == "demo" else 64 if name != "s3d" else 224
    clip = torch.rand(1, 3, frames, side, side)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the tube's "barely resolves time" warning fails here
        GradCAMTube(model, default_layer(model)[1]).attribute(clip, target=0)

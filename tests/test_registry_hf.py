"""Hugging Face video transformers in the registry: loading saved folders, adapters, layouts.

Tiny random configurations are saved with ``save_pretrained`` and loaded back with
``load_model("hf:<folder>")`` as a user would; nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from captum_video import registry
from captum_video.registry import (
    NORMALIZATION_PRESETS,
    FramesAsBatchAdapter,
    HFVideoAdapter,
    TokenReshape,
    adapt,
    class_names_of,
    default_layer,
    family_of,
    input_size_of,
    load_model,
    min_frames_of,
    normalization_of,
    parse_model_name,
    reshape_for,
    tokens_to_volume,
)

#: (T, H, W) of every tiny model below.
CLIP = (4, 32, 32)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from threads; on a busy 2-core machine they lose a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build_tiny_hf(root: Path) -> dict[str, Path]:
    """Save tiny VideoMAE, TimeSformer, ViViT and X-CLIP vision models under ``root``.

    VideoMAE also gets class names and an image processor with its own statistics, ViViT its
    default processor. Returns ``{family: folder}``.
    """
    transformers = pytest.importorskip("transformers")
    common = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    t, h, _ = CLIP
    models: dict[str, Any] = {
        "videomae": transformers.VideoMAEForVideoClassification(
            transformers.VideoMAEConfig(
                image_size=h,
                patch_size=16,
                num_frames=t,
                tubelet_size=2,
                id2label={0: "run", 1: "jump", 2: "swim"},
                label2id={"run": 0, "jump": 1, "swim": 2},
                **common,
            )
        ),
        "timesformer": transformers.TimesformerForVideoClassification(
            transformers.TimesformerConfig(
                image_size=h, patch_size=16, num_frames=t, num_labels=3, **common
            )
        ),
        "vivit": transformers.VivitForVideoClassification(
            transformers.VivitConfig(
                image_size=h, tubelet_size=[2, 16, 16], num_frames=t, num_labels=3, **common
            )
        ),
        "xclip": transformers.XCLIPVisionModel(
            transformers.XCLIPVisionConfig(image_size=h, patch_size=16, num_frames=t, **common)
        ),
    }
    folders = {}
    for name, model in models.items():
        folders[name] = root / name
        model.save_pretrained(folders[name])
    transformers.VideoMAEImageProcessor(
        image_mean=[0.4, 0.5, 0.6], image_std=[0.2, 0.3, 0.4]
    ).save_pretrained(folders["videomae"])
    transformers.VivitImageProcessor().save_pretrained(folders["vivit"])
    return folders


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.manual_seed(0)
    return build_tiny_hf(tmp_path_factory.mktemp("hf"))


@pytest.fixture(scope="module")
def loaded(folders: dict[str, Path]) -> dict[str, nn.Module]:
    return {name: load_model(f"hf:{folder}") for name, folder in folders.items()}


FAMILIES = {
    "videomae": ("hf-videomae", "model.videomae.encoder.layer.1", "thw", False),
    "timesformer": ("hf-timesformer", "model.timesformer.encoder.layer.0", "hwt", False),
    "vivit": ("hf-vivit", "model.vivit.layers.0", "thw", False),
    "xclip": ("hf-xclip-vision", "model.encoder.layers.0", "thw", True),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_saved_folders_load_adapted_with_their_family_facts(name, loaded):
    model = loaded[name]
    family, layer_name, order, frames_in_batch = FAMILIES[name]
    assert isinstance(model, FramesAsBatchAdapter if name == "xclip" else HFVideoAdapter)
    assert not model.training and adapt(model) is model  # idempotent
    assert family_of(model).name == family
    assert family_of(model).layout == ("frames" if name == "xclip" else "NTCHW")
    assert default_layer(model)[0] == layer_name
    assert input_size_of(model) == CLIP and min_frames_of(model) == CLIP[0]
    reshape = reshape_for(model, default_layer(model)[1])
    assert isinstance(reshape, TokenReshape)
    assert (reshape.order, reshape.frames_in_batch) == (order, frames_in_batch)


def test_adapter_equals_the_model_on_its_own_layout(loaded):
    clip = torch.rand(2, 3, *CLIP)
    frames = clip.permute(0, 2, 1, 3, 4)  # what transformers expects: (N, T, C, H, W)
    with torch.no_grad():
        for name in ("videomae", "timesformer", "vivit"):
            model = loaded[name]
            torch.testing.assert_close(model(clip), model.model(pixel_values=frames).logits)
        xclip = loaded["xclip"]
        pooled = xclip.model(pixel_values=frames.reshape(-1, 3, 32, 32)).pooler_output
        torch.testing.assert_close(xclip(clip), pooled.reshape(2, CLIP[0], -1).mean(1))


def test_xclip_takes_a_user_head_and_explains_its_classes(loaded):
    tower = loaded["xclip"].model
    head = nn.Linear(16, 5)
    model = adapt(tower, head=head)
    assert model.head is head and family_of(model).name == "hf-xclip-vision"
    assert model(torch.rand(1, 3, *CLIP)).shape == (1, 5)
    with pytest.raises(ValueError, match="needs no adapter"):
        adapt(nn.Conv3d(3, 3, 1), head=head)


def test_clips_of_another_size_get_a_clear_error(loaded):
    with pytest.raises(ValueError, match=r"exactly 4 frames of 32x32"):
        loaded["videomae"](torch.rand(1, 3, 8, 32, 32))
    with pytest.raises(ValueError, match=r"\(N, C, T, H, W\)"):
        loaded["vivit"](torch.rand(1, 3, 32, 32))


def test_class_names_come_from_id2label(loaded):
    assert class_names_of(loaded["videomae"]) == ["run", "jump", "swim"]
    assert class_names_of(loaded["timesformer"]) is None  # transformers' LABEL_i placeholders


def test_normalisation_from_the_saved_processor_else_the_family(loaded, folders):
    transformers = pytest.importorskip("transformers")
    own = normalization_of(loaded["videomae"])
    assert NORMALIZATION_PRESETS[own] == ((0.4, 0.5, 0.6), (0.2, 0.3, 0.4))
    assert normalization_of(loaded["vivit"]) == "vivit"  # the default processor
    assert normalization_of(loaded["timesformer"]) == "timesformer"  # nothing saved
    assert normalization_of(loaded["xclip"]) == "xclip"
    # Oracle: the processors themselves, on frames in [0, 255].
    video = [np.random.default_rng(i).integers(0, 256, (8, 8, 3), dtype=np.uint8) for i in range(2)]
    x = torch.tensor(np.stack(video)).float().div(255).permute(0, 3, 1, 2)[None]
    for preset, cls in (("vivit", "VivitImageProcessor"), (own, "VideoMAEImageProcessor")):
        processor = getattr(transformers, cls).from_pretrained(
            folders["vivit" if preset == "vivit" else "videomae"], local_files_only=True
        )
        out = processor(video, do_resize=False, do_center_crop=False, return_tensors="pt")
        mean, std = (torch.tensor(v).view(1, 1, 3, 1, 1) for v in NORMALIZATION_PRESETS[preset])
        torch.testing.assert_close(out["pixel_values"], (x - mean) / std, atol=1e-5, rtol=0)


def _embeddings(model: nn.Module, name: str) -> nn.Module:
    path = {"videomae": "videomae.", "timesformer": "timesformer.", "vivit": "vivit."}
    return model.model.get_submodule(path.get(name, "") + "embeddings")


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_token_layout_puts_every_patch_where_it_is_in_the_clip(name, loaded):
    """Oracle: change one 16x16 patch of one frame; the embedding tokens that change must
    land at that patch's (t', h', w') in the volume the registry's reshape builds."""
    model = loaded[name]
    layer = _embeddings(model, name)
    reshape = reshape_for(model, layer)
    tubelet = 2 if name in ("videomae", "vivit") else 1
    clip = torch.rand(1, 3, *CLIP)
    outputs = []
    handle = layer.register_forward_hook(lambda _m, _a, out: outputs.append(out))
    try:
        with torch.no_grad():
            model(clip)
            for t, h, w in [(0, 0, 1), (3, 1, 0), (2, 1, 1)]:
                changed = clip.clone()
                changed[:, :, t, 16 * h : 16 * (h + 1), 16 * w : 16 * (w + 1)] += 1.0
                model(changed)
                moved = (reshape(outputs[-1]) - reshape(outputs[0])).abs().sum(dim=(0, 1)) > 1e-6
                expected = torch.zeros(CLIP[0] // tubelet, 2, 2, dtype=torch.bool)
                expected[t // tubelet, h, w] = True
                assert torch.equal(moved, expected), (name, t, h, w)
    finally:
        handle.remove()


def test_timesformer_other_attention_types_are_refused(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.TimesformerConfig(
        image_size=32,
        patch_size=16,
        num_frames=4,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        attention_type="space_only",
    )
    transformers.TimesformerForVideoClassification(config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="divided_space_time"):
        load_model(f"hf:{tmp_path}")


def test_hf_names_and_errors(tmp_path):
    pytest.importorskip("transformers")
    assert parse_model_name("hf:/some/dir") == ("hf", "/some/dir")
    assert parse_model_name("pytorchvideo:x3d_xs") == ("pytorchvideo", "x3d_xs")
    with pytest.raises(ValueError, match="unknown model scheme"):
        parse_model_name("timm:vit")
    with pytest.raises(ValueError, match="names no folder"):
        parse_model_name("hf:")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(f"hf:{tmp_path / 'missing'}")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="'bert' model"):
        load_model(f"hf:{tmp_path}")


def test_families_register_once_transformers_is_imported():
    pytest.importorskip("transformers")
    assert {"hf-videomae", "hf-timesformer", "hf-vivit", "hf-xclip-vision"} <= {
        f.name for f in registry.families()
    }


def test_families_come_back_when_the_table_is_swapped(loaded, monkeypatch):
    from captum_video.registry import _family

    scratch = {k: v for k, v in _family._FAMILIES.items() if not k.startswith("hf-")}
    monkeypatch.setattr(_family, "_FAMILIES", scratch)  # as test_registry's scratch registry
    assert family_of(loaded["vivit"]).name == "hf-vivit"


def test_token_reshapes_are_pure_reindexing():
    t, h, w, k = 2, 3, 4, 5
    grid = torch.arange(t * h * w * k, dtype=torch.float32).reshape(1, t, h, w, k)
    expected = grid.permute(0, 4, 1, 2, 3)
    cls = torch.full((1, 1, k), -1.0)
    space_major = torch.cat([cls, grid.permute(0, 2, 3, 1, 4).reshape(1, h * w * t, k)], 1)
    torch.testing.assert_close(TokenReshape((t, h, w), "hwt")((space_major,)), expected)
    per_frame = torch.cat([cls.expand(t, 1, k), grid[0].reshape(t, h * w, k)], 1)
    torch.testing.assert_close(
        tokens_to_volume(per_frame, (t, h, w), frames_in_batch=True), expected
    )
    tokens = space_major.clone().requires_grad_()
    seed = torch.rand_like(expected)
    (grad,) = torch.autograd.grad(tokens_to_volume(tokens, (t, h, w), "hwt"), tokens, seed)
    torch.testing.assert_close(tokens_to_volume(grad, (t, h, w), "hwt"), seed)  # gradients too
    assert grad[:, 0].abs().sum() == 0  # the class token gets none
    with pytest.raises(ValueError, match="cannot hold"):
        tokens_to_volume(space_major, (t, h, w + 1), "hwt")
    with pytest.raises(ValueError, match="frames of"):
        tokens_to_volume(per_frame[:1], (t, h, w), frames_in_batch=True)
    with pytest.raises(ValueError, match="order"):
        tokens_to_volume(space_major, (t, h, w), "twh")  # type: ignore[arg-type]

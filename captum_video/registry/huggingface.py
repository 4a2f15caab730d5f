r"""Registry entries for Hugging Face video transformers (``pip install 'captum-video[hf]'``).

* ``VideoMAEForVideoClassification`` (Tong et al. 2022): tubelet tokens ``(N, T'H'W', K)``
  (``T' = T / tubelet_size``), time-major, no class token; the head averages all tokens
  (``fc_norm`` + ``classifier``), so the last encoder layer is the default. With
  ``use_mean_pooling=False`` the head reads the first token only: the layer before the last.
* ``TimesformerForVideoClassification`` (Bertasius et al. 2021, divided space-time
  attention): a class token, then ``H'W'T`` tokens *space-major* (``h, w, t``); the head reads
  the class token, so the last layer's grid gets no gradient: the layer before the last.
* ``VivitForVideoClassification`` (Arnab et al. 2021): a class token, then a time-major
  ``(T/t, H/h, W/w)`` tubelet grid; class-token head: the layer before the last.
* ``XCLIPVisionModel`` (Ni et al. 2022), X-CLIP's vision tower: frames in the batch axis,
  ``(N * T, 1 + H'W', K)``; it has no classifier. Its adapter
  (:class:`~captum_video.registry.adapters.FramesAsBatchAdapter`) explains the mean over frames
  of the pooled class embeddings, or a ``head`` given to :func:`~captum_video.registry.adapt`.

All take ``pixel_values`` ``(N, T, C, H, W)`` of exactly the config's ``num_frames`` and
``image_size`` and return a ``ModelOutput``: :func:`~captum_video.registry.adapt` wraps them
to take ``(N, C, T, H, W)`` clips and return logits. None has a global-average-pool + linear
head, so :class:`~captum_video.attr.SaliencyTube` does not apply (no ``head`` entry); use
:class:`~captum_video.attr.GradCAMTube`. :func:`load_hf_model` loads a local
``save_pretrained`` folder (never the network).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from torch import nn
from transformers import (
    AutoConfig,
    TimesformerForVideoClassification,
    VideoMAEForVideoClassification,
    VivitForVideoClassification,
    XCLIPModel,
    XCLIPVisionModel,
)

from captum_video.registry._family import ModelFamily, family_of, register_family
from captum_video.registry.adapters import (
    FramesAsBatchAdapter,
    HFVideoAdapter,
    VideoAdapter,
    adapt,
)
from captum_video.registry.attention import AttentionLayout, AttentionStep, Tokens
from captum_video.registry.normalization import preset_for_stats
from captum_video.registry.reshape import TokenReshape

__all__ = ["FAMILIES", "load_hf_model", "processor_normalization"]


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, Sequence):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _clip_size(config: Any) -> tuple[int, int, int]:
    h, w = _pair(config.image_size)
    return int(config.num_frames), h, w


def _grid(config: Any, tubelet: Sequence[int]) -> tuple[int, int, int]:
    t, h, w = _clip_size(config)
    return t // int(tubelet[0]), h // int(tubelet[1]), w // int(tubelet[2])


def _backbone_reshape(backbone: str, token_reshape: Any, root: Any, layer: nn.Module) -> Any:
    """Token layout for modules of the backbone (convolutions keep their own volume)."""
    if isinstance(layer, (nn.Conv2d, nn.Conv3d)):
        return "identity"
    trunk = root.get_submodule(backbone) if backbone else root
    if any(m is layer for m in trunk.modules()):
        return token_reshape(root)
    return "identity"


def _id2label(root: Any) -> list[str] | None:
    """``config.id2label``, unless it is transformers' placeholder ``LABEL_i``."""
    labels = getattr(getattr(root, "config", None), "id2label", None) or {}
    names = [str(labels[i]) for i in sorted(labels)]
    if not names or all(n == f"LABEL_{i}" for i, n in enumerate(names)):
        return None
    return names


def _layer_before_last(path: str, root: Any) -> str:
    count = len(root.get_submodule(path))
    return f"{path}.{max(count - 2, 0)}"


def _videomae_layer(root: Any) -> str:
    count = len(root.videomae.encoder.layer)
    # Mean pooling reads every token of the last layer; otherwise only its first token.
    last = count - 1 if getattr(root, "fc_norm", None) is not None else count - 2
    return f"videomae.encoder.layer.{max(last, 0)}"


def _videomae_grid(root: Any) -> TokenReshape:
    c = root.config
    p = _pair(c.patch_size)
    return TokenReshape(_grid(c, (c.tubelet_size, p[0], p[1])), "thw")


def _timesformer_grid(root: Any) -> TokenReshape:
    p = _pair(root.config.patch_size)
    return TokenReshape(_grid(root.config, (1, p[0], p[1])), "hwt")


def _vivit_grid(root: Any) -> TokenReshape:
    return TokenReshape(_grid(root.config, root.config.tubelet_size), "thw")


def _xclip_grid(root: Any) -> TokenReshape:
    p = _pair(root.config.patch_size)
    return TokenReshape(_grid(root.config, (1, p[0], p[1])), "thw", frames_in_batch=True)


def _videomae_attention(root: Any, _clip: tuple[int, int, int]) -> AttentionLayout:
    """Joint attention over the time-major tubelet grid, no class token; probabilities in
    ``attention.attention`` (eager softmax or fused SDPA). The head averages every token
    (``fc_norm``) or reads the first one."""
    grid = _videomae_grid(root).grid
    tokens = Tokens(grid, prefix=0, order="thw")
    steps = tuple(
        AttentionStep(f"videomae.encoder.layer.{i}.attention.attention", "joint", tokens)
        for i in range(len(root.videomae.encoder.layer))
    )
    return AttentionLayout(steps, readout="mean" if root.fc_norm is not None else "first")


def _timesformer_attention(root: Any, _clip: tuple[int, int, int]) -> AttentionLayout:
    """Divided space-time attention (Bertasius et al. 2021): per layer the temporal attention
    ``(N * H'W', T, T)`` over each patch position's frames, then the spatial attention
    ``(N * T, 1 + H'W', 1 + H'W')`` within each frame with the class token repeated per frame
    (its outputs averaged over frames); tokens: class token + space-major ``(h, w, t)`` grid.
    """
    kind = root.config.attention_type
    if kind != "divided_space_time":
        raise ValueError(
            f"attention methods support TimeSformer with divided_space_time attention, not {kind!r}"
        )
    tokens = Tokens(_timesformer_grid(root).grid, prefix=1, order="hwt")
    steps = []
    for i in range(len(root.timesformer.encoder.layer)):
        layer = f"timesformer.encoder.layer.{i}"
        steps.append(AttentionStep(f"{layer}.temporal_attention.attention", "divided_time", tokens))
        steps.append(AttentionStep(f"{layer}.attention.attention", "divided_space", tokens))
    return AttentionLayout(tuple(steps), readout="first")


def _vivit_attention(root: Any, _clip: tuple[int, int, int]) -> AttentionLayout:
    """Joint attention over a class token + the time-major tubelet grid (ViViT model 1)."""
    tokens = Tokens(_vivit_grid(root).grid, prefix=1, order="thw")
    steps = tuple(
        AttentionStep(f"vivit.layers.{i}.attention", "joint", tokens)
        for i in range(len(root.vivit.layers))
    )
    return AttentionLayout(steps, readout="first")


def _xclip_attention(root: Any, _clip: tuple[int, int, int]) -> AttentionLayout:
    """Cross-frame communication (Ni et al. 2022): frames in the batch, each a class token +
    its patches. Per layer the message attention ``(N, T, T)`` over the frames' message
    tokens (each a linear function of its frame's class token), then joint attention within
    each frame over class token, patches and the frame's message token, which is dropped
    after. The adapter explains the mean over frames of the class tokens."""
    grid = _xclip_grid(root).grid
    frames = Tokens(grid, frame_prefix=1)
    with_message = Tokens(grid, frame_prefix=1, frame_suffix=1)
    steps = []
    for i in range(len(root.encoder.layers)):
        layer = f"encoder.layers.{i}"
        steps.append(AttentionStep(f"{layer}.message_attn", "message", frames, with_message))
        steps.append(AttentionStep(f"{layer}.self_attn", "frame_joint", with_message, frames))
    return AttentionLayout(tuple(steps), readout="frame_first")


def _timesformer_adapter(root: Any, **options: Any) -> nn.Module:
    kind = root.config.attention_type
    if kind != "divided_space_time":
        raise ValueError(
            f"TimeSformer with attention_type={kind!r} classifies each frame on its own in "
            "transformers (logits per frame); only 'divided_space_time' is supported"
        )
    return HFVideoAdapter(root, input_size=_clip_size(root.config), **options)


def _hf_adapter(root: Any, **options: Any) -> nn.Module:
    return HFVideoAdapter(root, input_size=_clip_size(root.config), **options)


def _frames_adapter(root: Any, **options: Any) -> nn.Module:
    return FramesAsBatchAdapter(root, input_size=_clip_size(root.config), **options)


def _config_size(root: Any) -> tuple[int, int, int]:
    return _clip_size(root.config)


def _config_frames(root: Any) -> int:
    return int(root.config.num_frames)


_COMMON: dict[str, Any] = {
    "layout": "NTCHW",
    "class_names": _id2label,
    "input_size": _config_size,
    "min_frames": _config_frames,
}

VIDEOMAE = register_family(
    ModelFamily(
        name="hf-videomae",
        model_types=(VideoMAEForVideoClassification,),
        default_layer=_videomae_layer,
        layer_reshape=partial(_backbone_reshape, "videomae", _videomae_grid),
        normalization="videomae",
        adapter=_hf_adapter,
        attention=_videomae_attention,
        **_COMMON,
    )
)

TIMESFORMER = register_family(
    ModelFamily(
        name="hf-timesformer",
        model_types=(TimesformerForVideoClassification,),
        default_layer=partial(_layer_before_last, "timesformer.encoder.layer"),
        layer_reshape=partial(_backbone_reshape, "timesformer", _timesformer_grid),
        normalization="timesformer",
        adapter=_timesformer_adapter,
        attention=_timesformer_attention,
        **_COMMON,
    )
)

VIVIT = register_family(
    ModelFamily(
        name="hf-vivit",
        model_types=(VivitForVideoClassification,),
        default_layer=partial(_layer_before_last, "vivit.layers"),
        layer_reshape=partial(_backbone_reshape, "vivit", _vivit_grid),
        normalization="vivit",
        adapter=_hf_adapter,
        attention=_vivit_attention,
        **_COMMON,
    )
)

XCLIP_VISION = register_family(
    ModelFamily(
        name="hf-xclip-vision",
        model_types=(XCLIPVisionModel,),
        default_layer=partial(_layer_before_last, "encoder.layers"),
        layer_reshape=partial(_backbone_reshape, "", _xclip_grid),
        normalization="xclip",
        adapter=_frames_adapter,
        attention=_xclip_attention,
        **{**_COMMON, "layout": "frames"},
    )
)

#: This module's entries (put back by the registry if its table was swapped).
FAMILIES = (VIDEOMAE, TIMESFORMER, VIVIT, XCLIP_VISION)

_CLASSES: dict[str, Any] = {
    cls.__name__: cls
    for cls in (
        VideoMAEForVideoClassification,
        TimesformerForVideoClassification,
        VivitForVideoClassification,
        XCLIPVisionModel,
        XCLIPModel,
    )
}
_BY_MODEL_TYPE: dict[str, Any] = {
    "videomae": VideoMAEForVideoClassification,
    "timesformer": TimesformerForVideoClassification,
    "vivit": VivitForVideoClassification,
    "xclip_vision_model": XCLIPVisionModel,
    "xclip": XCLIPModel,
}
_PROCESSOR_FILES = ("video_preprocessor_config.json", "preprocessor_config.json")


def processor_normalization(folder: str | os.PathLike) -> tuple[list[float], list[float]] | None:
    """The ``(mean, std)`` on ``[0, 1]`` pixels that a saved image / video processor applies.

    Reads ``video_preprocessor_config.json`` or ``preprocessor_config.json``: the processor
    rescales pixels ``p`` in ``[0, 255]`` to ``v = p * rescale_factor`` (``- 1`` with ViViT's
    ``offset``) and normalises ``(v - image_mean) / image_std``; on ``x = p / 255`` that is
    ``(x - mean) / std`` with ``mean = (image_mean + offset) / (255 * rescale_factor)`` and
    ``std = image_std / (255 * rescale_factor)``.

    Args:
        folder (str or PathLike): a ``save_pretrained`` folder.

    Returns:
        tuple or None: ``(mean, std)`` per channel, or None when no processor was saved.
    """
    for file in _PROCESSOR_FILES:
        path = Path(folder) / file
        if path.is_file():
            config = json.loads(path.read_text())
            break
    else:
        return None
    kind = str(config.get("image_processor_type") or config.get("video_processor_type") or "")
    scale = float(config.get("rescale_factor", 1 / 255)) if config.get("do_rescale", True) else 1
    offset = 1.0 if config.get("offset", kind.startswith("Vivit")) and scale != 1 else 0.0
    if config.get("do_normalize", True) and "image_mean" in config and "image_std" in config:
        mean, std = config["image_mean"], config["image_std"]
    else:
        mean, std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    mean = [mean] * 3 if isinstance(mean, (int, float)) else list(mean)
    std = [std] * 3 if isinstance(std, (int, float)) else list(std)
    unit = 255.0 * scale
    return [(float(m) + offset) / unit for m in mean], [float(s) / unit for s in std]


def load_hf_model(
    folder: str | os.PathLike, num_classes: int | None = None, **options: Any
) -> nn.Module:
    """Load a local ``save_pretrained`` folder of a registered Hugging Face model, adapted.

    Nothing is downloaded (``local_files_only=True``). The class is the folder's
    ``config.architectures`` entry where it is a registered one, else the video classifier of
    its ``model_type``; a saved ``XCLIPModel`` gives its vision tower. The normalisation comes
    from the saved processor (:func:`processor_normalization`), else the family's preset.

    Args:
        folder (str or PathLike): the folder.
        num_classes (int, optional): checked against the config's labels. Default: None
        **options: passed to :func:`~captum_video.registry.adapt` (``head=`` for X-CLIP).

    Returns:
        nn.Module: the adapter (``(N, C, T, H, W)`` -> scores) around the model, in eval mode.

    Raises:
        FileNotFoundError: no such folder.
        ValueError: a model type the registry does not know, or ``num_classes`` differs.
    """
    path = Path(folder)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no Hugging Face model folder (config.json) at {path}")
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    names = [a for a in (getattr(config, "architectures", None) or []) if a in _CLASSES]
    cls = _CLASSES[names[0]] if names else _BY_MODEL_TYPE.get(config.model_type)
    if cls is None:
        raise ValueError(
            f"{path} holds a {config.model_type!r} model; captum-video knows "
            f"{sorted(_BY_MODEL_TYPE)} (VideoMAE, TimeSformer, ViViT, X-CLIP)"
        )
    model = cls.from_pretrained(path, local_files_only=True)
    if isinstance(model, XCLIPModel):
        model = model.vision_model
    labels = getattr(model.config, "num_labels", None)
    if (
        num_classes is not None
        and not isinstance(model, XCLIPVisionModel)
        and num_classes != labels
    ):
        raise ValueError(f"{path} holds a model with {labels} classes, not {num_classes}")
    adapter = adapt(model.eval(), **options)
    stats = processor_normalization(path)
    if stats is not None and isinstance(adapter, VideoAdapter):
        adapter.normalization = preset_for_stats(
            *stats, name=f"hf:{path.resolve()}", prefer=family_of(model).normalization
        )
    return adapter

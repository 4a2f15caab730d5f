"""Registry entries for captum-video's own small models (:mod:`captum_video.models`).

``C3DSmall`` is the architecture of the bundled demo checkpoints (inputs in ``[0, 1]``, two
temporal max-poolings, so at least 4 frames); ``R2Plus1DSmall`` is a residual test model named
like torchvision's ``r2plus1d_18`` (its residual blocks share the
forward of torchvision's ``BasicBlock``). The names ``demo``, ``demo-motion``, ``demo-appearance``
and ``demo-mixed`` load the bundled checkpoints. ``VideoTransformerSmall`` is the bundled demo
transformer (``demo-transformer``, trained on the motion variant): a class token and joint
space-time attention over a time-major tubelet grid. ``TwoStreamSmall`` (the two-stream demo
models, ``load_demo_model("two_stream_motion")``) takes two inputs, ``forward(rgb, flow)``: it
has no name here, because the command line feeds one clip to a model.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from torch import nn

from captum_video.models import (
    C3DSmall,
    R2Plus1DSmall,
    TwoStreamSmall,
    VideoTransformerSmall,
    load_demo_model,
)
from captum_video.models.r2plus1d import BasicBlock
from captum_video.registry._family import ModelFamily, register_family
from captum_video.registry.attention import AttentionLayout, AttentionStep, Tokens
from captum_video.registry.reshape import TokenReshape
from captum_video.registry.torchvision import basic_block_forward

__all__: list[str] = []


def _demo_classes(model: nn.Module) -> list[str] | None:
    info = getattr(model, "demo_info", None)
    return list(info["classes"]) if isinstance(info, dict) and "classes" in info else None


def _bundled(variant: str, num_classes: int | None = None) -> nn.Module:
    if num_classes not in (None, 4):
        raise ValueError(f"the demo models have 4 classes, got num_classes={num_classes}")
    return load_demo_model(variant)


DEMO_C3D = register_family(
    ModelFamily(
        name="captum-video-demo",
        model_types=(C3DSmall,),
        default_layer="layer3",
        head="fc",
        class_names=_demo_classes,
        constructors={
            "demo": partial(_bundled, "motion"),
            "demo-motion": partial(_bundled, "motion"),
            "demo-appearance": partial(_bundled, "appearance"),
            "demo-mixed": partial(_bundled, "mixed"),
        },
        weights_included=True,
        min_frames=4,
        input_size=(16, 32, 32),
    )
)

DEMO_R2PLUS1D = register_family(
    ModelFamily(
        name="captum-video-r2plus1d-small",
        model_types=(R2Plus1DSmall,),
        default_layer="layer3",
        head="fc",
        residual_blocks={BasicBlock: basic_block_forward},
        input_size=(16, 32, 32),
    )
)


def _transformer_attention(root: Any, _clip: tuple[int, int, int]) -> AttentionLayout:
    """Joint attention over a class token + the time-major tubelet grid, probabilities in
    each block's ``attn`` (an explicit softmax); the head reads the class token."""
    tokens = Tokens(tuple(root.grid), prefix=1, order="thw")
    steps = tuple(
        AttentionStep(f"blocks.{i}.attn", "joint", tokens) for i in range(len(root.blocks))
    )
    return AttentionLayout(steps, readout="first")


def _transformer_reshape(root: Any, layer: nn.Module) -> Any:
    """Blocks and their sub-layers carry the class token + the grid."""
    if layer is not root.blocks and any(layer is m for m in root.blocks.modules()):
        return TokenReshape(tuple(root.grid), "thw")
    return "identity"


def _transformer_layer(root: Any) -> str:
    # The head reads only the class token: the last block's grid gets no gradient.
    return f"blocks.{max(len(root.blocks) - 2, 0)}"


def _transformer_size(root: Any) -> tuple[int, int, int]:
    return int(root.frames), int(root.size), int(root.size)


def _transformer_frames(root: Any) -> int:
    return int(root.frames)  # its position embeddings fix the clip length


DEMO_TRANSFORMER = register_family(
    ModelFamily(
        name="captum-video-demo-transformer",
        model_types=(VideoTransformerSmall,),
        default_layer=_transformer_layer,
        layer_reshape=_transformer_reshape,
        class_names=_demo_classes,
        constructors={"demo-transformer": partial(_bundled, "transformer")},
        min_frames=_transformer_frames,
        input_size=_transformer_size,
        attention=_transformer_attention,
    )
)


DEMO_TWO_STREAM = register_family(
    ModelFamily(
        name="captum-video-demo-two-stream",
        model_types=(TwoStreamSmall,),
        # Two inputs, one clip per stream: (rgb (N, 3, T, H, W), flow (N, 2, T, H, W)), each
        # NCTHW, passed as separate arguments like the SlowFast adapter's (slow, fast).
        layout="pathways",
        # The flow stream is the one that keeps fewer frames (4 of 16); its layer is the
        # default because the motion stream is what a two-stream explanation is usually for.
        # Explain the appearance stream with model.rgb.layer3. No single head: each stream has
        # its own (rgb.fc, flow.fc), so SaliencyTube must be given the one of its layer.
        default_layer="flow.layer3",
        class_names=_demo_classes,
        # The flow stream pools time twice (C3DSmall), so at least 4 frames.
        min_frames=4,
        input_size=(16, 32, 32),
    )
)

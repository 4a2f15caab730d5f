"""Registry entries for captum-video's own small models (:mod:`captum_video.models`).

``C3DSmall`` is the architecture of the bundled demo checkpoints (inputs in ``[0, 1]``, two
temporal max-poolings, so at least 4 frames); ``R2Plus1DSmall`` is a residual test model named
like torchvision's ``r2plus1d_18`` (its residual blocks share the
forward of torchvision's ``BasicBlock``). The names ``demo``, ``demo-motion``, ``demo-appearance``
and ``demo-mixed`` load the bundled checkpoints.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from captum_video.models import C3DSmall, R2Plus1DSmall, load_demo_model
from captum_video.models.r2plus1d import BasicBlock
from captum_video.registry._family import ModelFamily, register_family
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

"""Registry entries for torchvision's video classifiers (``torchvision.models.video``).

* video ResNets (``r3d_18``, ``mc3_18``, ``r2plus1d_18``; Tran et al. 2018): 3-D conv stages
  ``layer1..layer4``, a global-average-pool + ``fc`` head, residual ``BasicBlock`` /
  ``Bottleneck`` blocks that add in place (``out += residual``);
* ``s3d`` (Xie et al. 2018): ``features`` stages and a 1x1x1 convolution as the classifier;
* ``mvit_v1_b`` / ``mvit_v2_s`` (Fan et al. 2021; Li et al. 2022): ``MultiscaleBlock`` outputs
  ``(tokens, thw)`` with a class token, and a head that reads only that class token, so the
  last block's grid gets no gradient;
* ``swin3d_t/s/b`` (Liu et al. 2022, Video Swin): channels-last ``(N, T', H', W', K)`` stages.

All take ``(N, 3, T, H, W)`` clips normalised with their preset and were trained on
Kinetics-400, whose class names torchvision ships with the weight enums (no download).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torchvision.models.video as tv_video
from torch import Tensor, nn
from torchvision.models.swin_transformer import PatchMerging, SwinTransformerBlock
from torchvision.models.video.mvit import MultiscaleBlock
from torchvision.models.video.resnet import BasicBlock, Bottleneck
from torchvision.models.video.swin_transformer import PatchEmbed3d

from captum_video.registry._family import ModelFamily, register_family

__all__ = ["KINETICS400_CLASSES", "basic_block_forward"]

#: The 400 Kinetics class names, in the order of torchvision's video classifiers' outputs.
KINETICS400_CLASSES: list[str] = list(tv_video.R3D_18_Weights.KINETICS400_V1.meta["categories"])


def _kinetics_names(model: nn.Module) -> list[str] | None:
    """Kinetics-400 names for a 400-way model (other heads were fine-tuned elsewhere)."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv3d))]
    head = layers[-1] if layers else None
    outputs = getattr(head, "out_features", None) or getattr(head, "out_channels", None)
    return list(KINETICS400_CLASSES) if outputs == len(KINETICS400_CLASSES) else None


def basic_block_forward(block: Any, x: Tensor, add: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """A torchvision ``BasicBlock`` forward with its residual sum as ``add(out, residual)``.

    Args:
        block (nn.Module): a block with ``conv1``, ``conv2``, ``downsample`` and ``relu``.
        x (Tensor): its input.
        add (callable): the residual sum.

    Returns:
        Tensor: the block's output.

    Example::

        >>> from torchvision.models.video.resnet import BasicBlock, Conv3DSimple
        >>> block = BasicBlock(4, 4, Conv3DSimple).eval()
        >>> x = torch.rand(1, 4, 2, 4, 4)
        >>> torch.allclose(basic_block_forward(block, x, torch.add), block(x))
        True
    """
    residual = x if block.downsample is None else block.downsample(x)
    return block.relu(add(block.conv2(block.conv1(x)), residual))


def _bottleneck(block: Any, x: Tensor, add: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """As :func:`basic_block_forward`, for ``Bottleneck`` (three convolutions)."""
    residual = x if block.downsample is None else block.downsample(x)
    return block.relu(add(block.conv3(block.conv2(block.conv1(x))), residual))


def _constructor(name: str) -> Callable[..., nn.Module]:
    return partial(getattr(tv_video, name), weights=None)


def _last_feature_stage(model: Any) -> str:
    return f"features.{len(model.features) - 1}"


def _mvit_layer(model: Any) -> str:
    return f"blocks.{len(model.blocks) - 2}"


def _mvit_reshape(_root: nn.Module, layer: nn.Module) -> str:
    # Sub-layers of a block carry tokens without their grid: identity makes the tube say so.
    return "mvit" if isinstance(layer, MultiscaleBlock) else "identity"


def _swin_reshape(root: Any, layer: nn.Module) -> str:
    channels_last = [root.features, root.norm, root.patch_embed, root.pos_drop]
    if any(layer is m for stage in channels_last for m in stage.modules()):
        return "swin3d"
    return "identity"


VIDEO_RESNET = register_family(
    ModelFamily(
        name="torchvision-video-resnet",
        model_types=(tv_video.VideoResNet,),
        default_layer="layer4",
        normalization="kinetics",
        head="fc",
        residual_blocks={BasicBlock: basic_block_forward, Bottleneck: _bottleneck},
        class_names=_kinetics_names,
        constructors={name: _constructor(name) for name in ("r3d_18", "mc3_18", "r2plus1d_18")},
        input_size=(16, 112, 112),
    )
)

S3D = register_family(
    ModelFamily(
        name="torchvision-s3d",
        model_types=(tv_video.S3D,),
        default_layer=_last_feature_stage,
        normalization="kinetics",
        head="classifier",
        class_names=_kinetics_names,
        constructors={"s3d": _constructor("s3d")},
        min_frames=14,
        input_size=(16, 224, 224),
    )
)

MVIT = register_family(
    ModelFamily(
        name="torchvision-mvit",
        model_types=(tv_video.MViT,),
        default_layer=_mvit_layer,
        layer_reshape=_mvit_reshape,
        reshape_layer_types={MultiscaleBlock: "mvit"},
        normalization="mvit",
        head="head",
        class_names=_kinetics_names,
        constructors={name: _constructor(name) for name in ("mvit_v1_b", "mvit_v2_s")},
        min_frames=16,
        input_size=(16, 224, 224),
    )
)

SWIN3D = register_family(
    ModelFamily(
        name="torchvision-swin3d",
        model_types=(tv_video.SwinTransformer3d,),
        default_layer=_last_feature_stage,
        layer_reshape=_swin_reshape,
        reshape_layer_types={
            SwinTransformerBlock: "swin3d",
            PatchMerging: "swin3d",
            PatchEmbed3d: "swin3d",
        },
        normalization="swin3d",
        head="head",
        class_names=_kinetics_names,
        constructors={name: _constructor(name) for name in ("swin3d_t", "swin3d_s", "swin3d_b")},
        input_size=(16, 224, 224),
    )
)

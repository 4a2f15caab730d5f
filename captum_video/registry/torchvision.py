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
from captum_video.registry.attention import (
    AttentionLayout,
    AttentionStep,
    Footprint,
    Tokens,
    footprint_grid,
)

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


def _mvit_frames(model: Any) -> int:
    # The clip length the model was built for (16 for the released ones): its positional
    # encoding holds T / stride time steps.
    return int(model.pos_encoding.temporal_size) * int(model.conv_proj.stride[0])


def _mvit_reshape(_root: nn.Module, layer: nn.Module) -> str:
    # Sub-layers of a block carry tokens without their grid: identity makes the tube say so.
    return "mvit" if isinstance(layer, MultiscaleBlock) else "identity"


def _swin_reshape(root: Any, layer: nn.Module) -> str:
    channels_last = [root.features, root.norm, root.patch_embed, root.pos_drop]
    if any(layer is m for stage in channels_last for m in stage.modules()):
        return "swin3d"
    return "identity"


def _triple(value: Any) -> tuple[int, int, int]:
    values = tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value),)
    return (values * 3)[:3] if len(values) == 1 else values  # type: ignore[return-value]


def _footprint_of(pool: Any) -> Footprint:
    """The window of a ``Conv3d`` / ``MaxPool3d`` that pools a token grid."""
    return Footprint(_triple(pool.kernel_size), _triple(pool.stride), _triple(pool.padding))


def _mvit_attention(root: Any, _clip: tuple[int, int, int]) -> AttentionLayout:
    """Pooling attention (Fan et al. 2021): in every block the queries are pooled with the
    block's query stride (so is the residual, by ``pool_skip``) and the keys / values by
    ``pool_k`` / ``pool_v``; the class token is never pooled. Grid from the positional
    encoding, time-major; the head reads the class token. MViT-v2's pooled-query residual
    inside the attention (``residual_pool``) is not a separate step: the block's residual
    path (``skip``) stands for both."""
    grid = (int(root.pos_encoding.temporal_size), *map(int, root.pos_encoding.spatial_size))
    steps = []
    for i, block in enumerate(root.blocks):
        attn = block.attn
        tokens_in = Tokens(grid, prefix=1)  # type: ignore[arg-type]
        q_pool = _footprint_of(attn.pool_q.pool) if attn.pool_q is not None else None
        grid_out = footprint_grid(tokens_in.grid, q_pool) if q_pool is not None else grid
        skip = _footprint_of(block.pool_skip.pool) if block.pool_skip is not None else None
        kv = _footprint_of(attn.pool_k.pool) if attn.pool_k is not None else None
        steps.append(
            AttentionStep(
                f"blocks.{i}.attn",
                "pooled",
                tokens_in,
                Tokens(grid_out, prefix=1),  # type: ignore[arg-type]
                kv_pool=kv,
                skip=skip,
            )
        )
        grid = grid_out
    return AttentionLayout(tuple(steps), readout="first")


def _swin_attention(root: Any, clip: tuple[int, int, int]) -> AttentionLayout:
    """Shifted 3-D window attention (Liu et al. 2022): every block attends within windows of
    the channels-last grid (padded to whole windows, rolled by ``-shift``; windows and shifts
    shrink to the grid where it is smaller, as torchvision does at run time); patch merging
    between stages joins 2x2 neighbours; the head averages every token."""
    patch = _triple(root.patch_embed.tuple_patch_size)
    grid = tuple(-(-c // p) for c, p in zip(clip, patch, strict=True))  # padded to patches
    steps: list[AttentionStep] = []
    for i, stage in enumerate(root.features):
        if isinstance(stage, PatchMerging):
            merged = (grid[0], -(-grid[1] // 2), -(-grid[2] // 2))
            step = AttentionStep(
                None,
                "merge",
                Tokens(grid),  # type: ignore[arg-type]
                Tokens(merged),
                skip=Footprint((1, 2, 2), (1, 2, 2)),
            )
            steps.append(step)
            grid = merged
            continue
        for j, block in enumerate(stage):
            window, shift = list(block.attn.window_size), list(block.attn.shift_size)
            for axis in range(3):  # torchvision's _get_window_and_shift_size
                if grid[axis] <= window[axis]:
                    window[axis], shift[axis] = grid[axis], 0
            steps.append(
                AttentionStep(
                    f"features.{i}.{j}.attn",
                    "window",
                    Tokens(grid),  # type: ignore[arg-type]
                    window=_triple(window),
                    shift=_triple(shift),
                )
            )
    return AttentionLayout(tuple(steps), readout="mean", patch=patch)


VIDEO_RESNET = register_family(
    ModelFamily(
        name="torchvision-video-resnet",
        model_types=(tv_video.VideoResNet,),
        # layer3 keeps T/4 of the clip's time steps (layer4 only T/8): the tube resolves time.
        default_layer="layer3",
        head_layer="layer4",
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
        # The last stage before the final temporal pooling keeps 4 of 16 time steps.
        default_layer="features.12",
        head_layer=_last_feature_stage,
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
        attention=_mvit_attention,
        class_names=_kinetics_names,
        constructors={name: _constructor(name) for name in ("mvit_v1_b", "mvit_v2_s")},
        min_frames=_mvit_frames,
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
        attention=_swin_attention,
        class_names=_kinetics_names,
        constructors={name: _constructor(name) for name in ("swin3d_t", "swin3d_s", "swin3d_b")},
        input_size=(16, 224, 224),
    )
)

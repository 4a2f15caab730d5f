r"""Registry entries for PyTorchVideo's video classifiers (extra ``captum-video[pytorchvideo]``).

PyTorchVideo builds its CNNs as a ``Net`` whose ``blocks`` are a stem, residual stages and a
head; the families below tell them apart by their blocks:

* SlowFast (Feichtenhofer et al. 2019, ``create_slowfast``): every stage is a
  ``MultiPathWayWithFuse`` taking and returning ``[slow, fast]``; the head pools each pathway,
  concatenates the channels and applies a linear layer. It takes a list of two clips: its
  adapter (:class:`~captum_video.registry.adapters.PathwayAdapter`) builds them from one clip;
  the tube methods give one map per pathway on the last stage (reshape preset
  ``"pathways"``).
* X3D (Feichtenhofer 2020, ``create_x3d``): its head convolves after pooling
  (``ProjectedPool``), so only :class:`~captum_video.attr.GradCAMTube` applies.
* ResNets (``create_resnet``: Slow, C2D, I3D; ``create_csn``; ``create_r2plus1d``): an
  average-pool + linear head (``ResNetBasicHead``), so the CAM identity of
  :class:`~captum_video.attr.SaliencyTube` holds when the pool covers the whole last stage.
* MViT (Fan et al. 2021, ``create_multiscale_vision_transformers``): blocks return
  ``(tokens, thw)`` with a class token, like torchvision's (preset ``"mvit"``); the head reads
  only the class token, so the default layer is the block before the last.

Every residual stage is made of ``ResBlock`` (shortcut + ``branch2``, fused by a sum):
:func:`res_block_forward` writes that sum as ``add(...)`` for LRP canonizers. The hub builders
(``slow_r50``, ``x3d_xs``, ...) load as ``"pytorchvideo:<builder>"`` with
``pretrained=False`` and ``head_activation=None`` (logits, not the softmax some heads apply;
the activation holds no weights), weights from a local file.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from pytorchvideo.layers.attention import MultiScaleBlock
from pytorchvideo.models.head import ResNetBasicHead
from pytorchvideo.models.net import MultiPathWayWithFuse, Net
from pytorchvideo.models.resnet import ResBlock, _trivial_sum
from pytorchvideo.models.slowfast import FuseFastToSlow, PoolConcatPathway
from pytorchvideo.models.vision_transformers import MultiscaleVisionTransformers
from pytorchvideo.models.x3d import ProjectedPool
from torch import Tensor, nn

from captum_video.registry._family import ModelFamily, register_family
from captum_video.registry._optional import PYTORCHVIDEO_MODELS
from captum_video.registry.adapters import PathwayAdapter

__all__ = ["FAMILIES", "hub_model", "res_block_forward"]


def res_block_forward(block: Any, x: Tensor, add: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """PyTorchVideo's ``ResBlock`` forward with its residual sum written as ``add(out, shortcut)``.

    A block whose ``branch_fusion`` is not a sum keeps its own fusion (there is no residual
    sum to route).

    Args:
        block (nn.Module): a ``ResBlock`` (``branch1_conv``, ``branch1_norm``, ``branch2``,
            ``activation``, ``branch_fusion``).
        x (Tensor): its input.
        add (callable): the residual sum.

    Returns:
        Tensor: the block's output.

    Example::

        >>> from pytorchvideo.models.resnet import create_res_block, create_bottleneck_block
        >>> block = create_res_block(dim_in=4, dim_inner=2, dim_out=8,
        ...                          bottleneck=create_bottleneck_block).eval()
        >>> x = torch.rand(1, 4, 2, 4, 4)
        >>> torch.allclose(res_block_forward(block, x, torch.add), block(x))
        True
    """
    shortcut = x
    if block.branch1_conv is not None:
        shortcut = block.branch1_conv(x)
        if block.branch1_norm is not None:
            shortcut = block.branch1_norm(shortcut)
    out = block.branch2(x)
    fusion = block.branch_fusion
    if _is_sum(fusion):
        out = add(out, shortcut)
    else:
        out = fusion(shortcut, out)
    if block.activation is not None:
        out = block.activation(out)
    return out


#: Fusions of ``ResBlock`` that are the residual sum (PyTorchVideo's default is _trivial_sum).
_SUMS: tuple[Callable[..., Any], ...] = (_trivial_sum, torch.add, operator.add)
#: X3D's blocks fuse with ``lambda x, y: x + y``: a function compiled to the same code is a sum.
_SUM_CODE = (lambda x, y: x + y).__code__


def _is_sum(fusion: Any) -> bool:
    if any(fusion is s for s in _SUMS):
        return True
    code = getattr(fusion, "__code__", None)
    return code is not None and all(
        getattr(code, attr) == getattr(_SUM_CODE, attr)
        for attr in ("co_code", "co_consts", "co_names", "co_argcount")
    )


def _is_slowfast(root: Any) -> bool:
    return any(isinstance(b, MultiPathWayWithFuse) for b in getattr(root, "blocks", ()))


def _is_x3d(root: Any) -> bool:
    head = root.blocks[-1] if len(getattr(root, "blocks", ())) else None
    return isinstance(head, ResNetBasicHead) and isinstance(head.pool, ProjectedPool)


def _last_stage(root: Any) -> str:
    """The block before the head (SlowFast: the last multi-pathway stage)."""
    stages = [i for i, b in enumerate(root.blocks) if isinstance(b, MultiPathWayWithFuse)]
    return f"blocks.{stages[-1] if stages else len(root.blocks) - 2}"


def _linear_head(root: Any) -> nn.Module | None:
    """The ``proj`` of a ``ResNetBasicHead`` that only pools before it (GAP + linear)."""
    head = root.blocks[-1]
    if not isinstance(head, ResNetBasicHead) or isinstance(head.pool, ProjectedPool):
        return None
    return head.proj


def _three(value: Any) -> tuple[int, int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1]), int(value[2])
    return int(value), int(value), int(value)


def _stride(module: nn.Module) -> tuple[int, int, int]:
    """Down-sampling of a chain of modules: convolutions and pools in sequence; a residual
    block strides as its shortcut convolution."""
    if isinstance(module, ResBlock):
        return _stride(module.branch1_conv) if module.branch1_conv is not None else (1, 1, 1)
    if isinstance(module, (nn.Conv3d, nn.MaxPool3d, nn.AvgPool3d)):
        return _three(module.stride)
    total = (1, 1, 1)
    for child in module.children():
        s = _stride(child)
        total = (total[0] * s[0], total[1] * s[1], total[2] * s[2])
    return total


def _net_input_size(root: Any) -> tuple[int, int, int] | None:
    """The clip a fixed average-pool head was built for: pool kernel x network stride (the
    fast pathway for SlowFast)."""
    blocks = list(root.blocks)
    head = blocks[-1]
    if isinstance(blocks[-2], PoolConcatPathway) and blocks[-2].pool is not None:
        pool = blocks[-2].pool[-1]
        path = [b.multipathway_blocks[-1] for b in blocks if isinstance(b, MultiPathWayWithFuse)]
    else:
        pool = getattr(head, "pool", None)
        pool = pool.pool if isinstance(pool, ProjectedPool) else pool
        path = blocks[:-1]
    if not isinstance(pool, nn.AvgPool3d):
        return None
    size = _three(pool.kernel_size)
    for block in path:
        s = _stride(block)
        size = (size[0] * s[0], size[1] * s[1], size[2] * s[2])
    return size


def _net_frames(root: Any) -> int:
    size = _net_input_size(root)
    return size[0] if size else 1


def _alpha(root: Any) -> int:
    """SlowFast's frame-rate ratio: the temporal stride of its fast-to-slow fusion."""
    for module in root.modules():
        if isinstance(module, FuseFastToSlow):
            return int(_three(module.conv_fast_to_slow.stride)[0])
    return 4


def _slowfast_adapter(root: Any, **options: Any) -> nn.Module:
    options.setdefault("alpha", _alpha(root))
    return PathwayAdapter(root, **options)


def _pathway_reshape(_root: Any, layer: nn.Module) -> str:
    return "pathways" if isinstance(layer, MultiPathWayWithFuse) else "identity"


def _mvit_layer(root: Any) -> str:
    pool = getattr(getattr(root, "head", None), "sequence_pool", None)
    reads_cls = getattr(pool, "mode", "cls") == "cls"
    last = len(root.blocks) - (2 if reads_cls else 1)
    return f"blocks.{max(last, 0)}"


def _mvit_reshape(_root: Any, layer: nn.Module) -> str:
    return "mvit" if isinstance(layer, MultiScaleBlock) else "identity"


def _mvit_input_size(root: Any) -> tuple[int, int, int] | None:
    grid = getattr(root.cls_positional_encoding, "patch_embed_shape", None)
    conv = getattr(getattr(root, "patch_embed", None), "patch_model", None)
    if grid is None or not isinstance(conv, nn.Conv3d):
        return None
    s = _three(conv.stride)
    return int(grid[0]) * s[0], int(grid[1]) * s[1], int(grid[2]) * s[2]


def _mvit_frames(root: Any) -> int:
    size = _mvit_input_size(root)
    return size[0] if size else 1


def hub_model(name: str, num_classes: int | None = None) -> nn.Module:
    """A PyTorchVideo hub model with random weights (``pretrained=False``) and logits out.

    Args:
        name (str): a builder of ``pytorchvideo.models.hub`` (``"x3d_xs"``, ``"slow_r50"``,
            ...; see :data:`~captum_video.registry._optional.PYTORCHVIDEO_MODELS`).
        num_classes (int, optional): outputs of the head. Default: 400

    Returns:
        nn.Module: the model (``head_activation=None``).
    """
    from pytorchvideo.models import hub

    kwargs: dict[str, Any] = {"head_activation": None}
    if num_classes:
        kwargs["head_num_classes" if name.startswith("mvit") else "model_num_class"] = num_classes
    return getattr(hub, name)(pretrained=False, **kwargs)


def _names(prefixes: tuple[str, ...]) -> dict[str, Callable[..., nn.Module]]:
    return {
        f"pytorchvideo:{n}": partial(hub_model, n)
        for n in PYTORCHVIDEO_MODELS
        if n.startswith(prefixes)
    }


_NET: dict[str, Any] = {
    "normalization": "pytorchvideo",
    "residual_blocks": {ResBlock: res_block_forward},
    "input_size": _net_input_size,
    "min_frames": _net_frames,
}

SLOWFAST = register_family(
    ModelFamily(
        name="pytorchvideo-slowfast",
        model_types=(Net,),
        matches=_is_slowfast,
        default_layer=_last_stage,
        layer_reshape=_pathway_reshape,
        reshape_layer_types={MultiPathWayWithFuse: "pathways"},
        head=_linear_head,
        layout="pathways",
        adapter=_slowfast_adapter,
        constructors=_names(("slowfast",)),
        **_NET,
    )
)

X3D = register_family(
    ModelFamily(
        name="pytorchvideo-x3d",
        model_types=(Net,),
        matches=_is_x3d,
        default_layer=_last_stage,
        constructors=_names(("x3d",)),
        **_NET,
    )
)

RESNET = register_family(
    ModelFamily(
        name="pytorchvideo-resnet",
        model_types=(Net,),
        default_layer=_last_stage,
        head=_linear_head,
        constructors=_names(("slow_", "c2d", "i3d", "csn", "r2plus1d")),
        **_NET,
    )
)

MVIT = register_family(
    ModelFamily(
        name="pytorchvideo-mvit",
        model_types=(MultiscaleVisionTransformers,),
        default_layer=_mvit_layer,
        layer_reshape=_mvit_reshape,
        reshape_layer_types={MultiScaleBlock: "mvit"},
        normalization="pytorchvideo",
        input_size=_mvit_input_size,
        min_frames=_mvit_frames,
        constructors=_names(("mvit",)),
    )
)

#: This module's entries (put back by the registry if its table was swapped).
FAMILIES = (SLOWFAST, X3D, RESNET, MVIT)

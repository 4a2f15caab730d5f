"""Turn a layer's output into a ``(N, K, T', H', W')`` feature volume for CAM-type methods.

3-D CNNs already return ``(N, K, T', H', W')``. Video transformers do not: torchvision's
``swin3d_*`` stages return channels-last ``(N, T', H', W', K)`` tensors (a peer library reads
their time axis as channels), and ``mvit_v1_b`` / ``mvit_v2_s`` blocks return a tuple
``(tokens, thw)`` whose tokens ``(N, 1 + T'H'W', K)`` start with a class token. A *reshape*
is a pure re-indexing (permute, view, slicing) from the layer output to the volume; since it is
linear and only moves entries, the same function maps the layer's gradient to the gradient of
the volume, which is how :class:`~captum_video.attr.GradCAMTube` uses it.

A reshape function receives the layer's output exactly as the layer returned it (a tensor, or
a tuple whose first element is the explained tensor) and returns the volume.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn

__all__ = [
    "RESHAPE_PRESETS",
    "ReshapeFn",
    "channels_first",
    "channels_last_to_channels_first",
    "mvit_tokens_to_volume",
    "pick_reshape",
    "resolve_reshape",
    "suggest_layer",
    "token_grid_to_volume",
]

#: A reshape: the layer's output (tensor or tuple) -> ``(N, K, T', H', W')``.
ReshapeFn = Callable[[Any], Tensor]


def _first_tensor(output: Any) -> Tensor:
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise TypeError(
        "the layer's output must be a tensor or a tuple whose first element is a tensor, "
        f"got {type(output).__name__}"
    )


def channels_first(output: Any) -> Tensor:
    """The identity preset: the layer already returns ``(N, K, T', H', W')`` (3-D CNNs).

    Args:
        output (Tensor or tuple): the layer's output; for a tuple its first tensor is used.

    Returns:
        Tensor: that tensor, unchanged.

    Example::

        >>> channels_first(torch.rand(1, 8, 4, 7, 7)).shape
        torch.Size([1, 8, 4, 7, 7])
    """
    return _first_tensor(output)


def channels_last_to_channels_first(output: Any) -> Tensor:
    """Preset ``"swin3d"``: ``(N, T', H', W', K)`` channels-last stages to ``(N, K, T', H', W')``.

    torchvision's ``SwinTransformer3d`` keeps channels last from ``patch_embed`` through
    ``features`` and ``norm``; it only permutes before ``avgpool``.

    Args:
        output (Tensor): a 5-D channels-last tensor.

    Returns:
        Tensor: a permuted view ``(N, K, T', H', W')``.

    Example::

        >>> channels_last_to_channels_first(torch.rand(1, 4, 7, 7, 96)).shape
        torch.Size([1, 96, 4, 7, 7])
    """
    x = _first_tensor(output)
    if x.dim() != 5:
        raise ValueError(
            "the 'swin3d' reshape expects a channels-last (N, T', H', W', K) layer output, got "
            f"shape {tuple(x.shape)}; hook a stage of model.features or model.norm"
        )
    return x.permute(0, 4, 1, 2, 3)


def token_grid_to_volume(tokens: Tensor, grid: Sequence[int]) -> Tensor:
    """Reshape tokens ``(N, P + T'H'W', K)`` to ``(N, K, T', H', W')``, dropping ``P`` prefix
    tokens (a class token, register tokens) in front of the grid.

    Args:
        tokens (Tensor): ``(N, L, K)`` token sequence, time-major (``t, h, w`` order), as
            MViT, TimeSformer and ViViT lay them out.
        grid (sequence of int): ``(T', H', W')``.

    Returns:
        Tensor: ``(N, K, T', H', W')``.

    Example::

        >>> token_grid_to_volume(torch.rand(2, 1 + 4 * 7 * 7, 16), (4, 7, 7)).shape
        torch.Size([2, 16, 4, 7, 7])
    """
    if tokens.dim() != 3:
        raise ValueError(f"tokens must be (N, L, K), got shape {tuple(tokens.shape)}")
    t, h, w = (int(s) for s in grid)
    n, length, k = tokens.shape
    prefix = length - t * h * w
    if prefix < 0:
        raise ValueError(
            f"{length} tokens cannot hold a {t}x{h}x{w} grid ({t * h * w} tokens needed)"
        )
    return tokens[:, prefix:].reshape(n, t, h, w, k).permute(0, 4, 1, 2, 3)


def mvit_tokens_to_volume(output: Any) -> Tensor:
    """Preset ``"mvit"``: a torchvision ``MultiscaleBlock`` output ``(tokens, thw)`` to a volume.

    The tokens ``(N, 1 + T'H'W', K)`` start with a class token, which is dropped; ``thw`` gives
    the grid. Note that torchvision's MViT head reads only the class token after the last
    block, so the last block's grid tokens get no gradient: hook ``model.blocks[-2]``.

    Args:
        output (tuple): ``(tokens, thw)`` as a block returns it.

    Returns:
        Tensor: ``(N, K, T', H', W')``.

    Example::

        >>> mvit_tokens_to_volume((torch.rand(1, 1 + 8 * 7 * 7, 768), [8, 7, 7])).shape
        torch.Size([1, 768, 8, 7, 7])
    """
    if not (isinstance(output, (tuple, list)) and len(output) == 2):
        raise ValueError(
            "the 'mvit' reshape expects a MultiscaleBlock output (tokens, thw); hook an "
            "element of model.blocks, e.g. model.blocks[-2]"
        )
    tokens, thw = output
    return token_grid_to_volume(tokens, thw)


#: Presets by name; ``GradCAMTube(..., reshape="swin3d")`` looks names up here.
RESHAPE_PRESETS: dict[str, ReshapeFn] = {
    "identity": channels_first,
    "swin3d": channels_last_to_channels_first,
    "mvit": mvit_tokens_to_volume,
}


def _owners(root: Any, layer: nn.Module) -> list[nn.Module]:
    """Modules of ``root`` (itself included) that contain ``layer``, outermost first."""
    if not isinstance(root, nn.Module):
        return []
    return [m for m in root.modules() if any(c is layer for c in m.modules())]


def pick_reshape(model: Any, layer: nn.Module) -> str:
    """Name the reshape preset that fits ``layer`` of ``model``.

    Recognises torchvision's ``SwinTransformer3d`` (its ``patch_embed``, ``features`` stages,
    blocks, patch merging and final ``norm`` are channels-last: ``"swin3d"``) and ``MViT``
    (its ``MultiscaleBlock`` outputs: ``"mvit"``); everything else is ``"identity"``. When
    ``model`` is not a module (a wrapping function), the layer's own type decides.

    Args:
        model (nn.Module or callable): the model (or forward function) ``layer`` belongs to.
        layer (nn.Module): the explained layer.

    Returns:
        str: a key of :data:`RESHAPE_PRESETS`.

    Example::

        >>> from torchvision.models.video import swin3d_t
        >>> net = swin3d_t()
        >>> pick_reshape(net, net.features[-1])
        'swin3d'
    """
    from torchvision.models.swin_transformer import PatchMerging, SwinTransformerBlock
    from torchvision.models.video.mvit import MultiscaleBlock, MViT
    from torchvision.models.video.swin_transformer import PatchEmbed3d, SwinTransformer3d

    if isinstance(layer, MultiscaleBlock):
        return "mvit"
    owners = _owners(model, layer)
    swin = next((m for m in owners if isinstance(m, SwinTransformer3d)), None)
    if swin is not None:
        if layer is swin.norm or any(layer is m for m in swin.features.modules()):
            return "swin3d"
        if layer is swin.patch_embed or layer is swin.pos_drop:
            return "swin3d"
    if any(isinstance(m, MViT) for m in owners):
        return "identity"  # a sub-layer of MViT: tokens without a grid; resolve_reshape says so
    if isinstance(layer, (SwinTransformerBlock, PatchMerging, PatchEmbed3d)):
        return "swin3d"
    if isinstance(layer, nn.Sequential) and len(layer) > 0:
        if all(isinstance(m, SwinTransformerBlock) for m in layer):
            return "swin3d"
    return "identity"


def resolve_reshape(reshape: str | ReshapeFn | None, model: Any, layer: nn.Module) -> ReshapeFn:
    """Turn the ``reshape`` argument of the tube methods into a function.

    Args:
        reshape (str, callable or None): ``None`` picks a preset with :func:`pick_reshape`;
            a string names a preset of :data:`RESHAPE_PRESETS`; a callable is used as is.
        model (nn.Module or callable): the forward function.
        layer (nn.Module): the explained layer.

    Returns:
        callable: the reshape function.

    Example::

        >>> resolve_reshape("swin3d", None, nn.Identity()) is channels_last_to_channels_first
        True
    """
    if reshape is None:
        return RESHAPE_PRESETS[pick_reshape(model, layer)]
    if isinstance(reshape, str):
        if reshape not in RESHAPE_PRESETS:
            raise ValueError(
                f"unknown reshape preset {reshape!r}; choose one of {sorted(RESHAPE_PRESETS)} "
                "or pass a function (layer output -> (N, K, T', H', W'))"
            )
        return RESHAPE_PRESETS[reshape]
    if callable(reshape):
        return reshape
    raise TypeError(f"reshape must be None, a preset name or a callable, got {type(reshape)}")


def suggest_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """A good default layer for tubes on a known video model, as ``(name, module)``.

    The last stage that still keeps several time steps: ``layer3`` for the demo models,
    ``layer4`` for torchvision's video ResNets (``r3d_18``, ``mc3_18``, ``r2plus1d_18``),
    ``features[-1]`` for ``s3d``, ``features[-1]`` (channels-last) for ``swin3d_*``, and
    ``blocks[-2]`` for MViT (its head reads only the class token of the last block).

    Args:
        model (nn.Module): the classifier.

    Returns:
        tuple: the dotted module name and the module.

    Example::

        >>> from captum_video.models import C3DSmall
        >>> suggest_layer(C3DSmall())[0]
        'layer3'
    """
    from torchvision.models.video.mvit import MViT
    from torchvision.models.video.swin_transformer import SwinTransformer3d

    if isinstance(model, MViT):
        name = f"blocks.{len(model.blocks) - 2}"
    elif isinstance(model, SwinTransformer3d):
        name = f"features.{len(model.features) - 1}"
    elif hasattr(model, "layer4"):
        name = "layer4"
    elif hasattr(model, "layer3"):
        name = "layer3"
    elif hasattr(model, "features") and isinstance(model.features, nn.Sequential):
        name = f"features.{len(model.features) - 1}"
    else:
        raise ValueError(
            f"no default layer known for {type(model).__name__}; pass the last 3-D conv block"
        )
    return name, model.get_submodule(name)

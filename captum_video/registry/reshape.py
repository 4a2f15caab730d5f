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

from captum_video.registry._queries import reshape_for

__all__ = [
    "RESHAPE_PRESETS",
    "ReshapeFn",
    "channels_first",
    "channels_last_to_channels_first",
    "first_tensor",
    "mvit_tokens_to_volume",
    "resolve_reshape",
    "token_grid_to_volume",
]

#: A reshape: the layer's output (tensor or tuple) -> ``(N, K, T', H', W')``.
ReshapeFn = Callable[[Any], Tensor]


def first_tensor(output: Any, where: str = "output") -> Tensor:
    """The tensor a layer returns, or the first element of the tuple it returns.

    Args:
        output (Tensor or tuple): a layer's output (or its input tuple).
        where (str, optional): ``"output"`` or ``"input"``, for the error message.
            Default: ``"output"``

    Returns:
        Tensor: the explained tensor.

    Example::

        >>> first_tensor((torch.ones(2), [4, 7, 7])).shape
        torch.Size([2])
    """
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise TypeError(
        f"the layer's {where} must be a tensor or a tuple whose first element is a tensor, "
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
    return first_tensor(output)


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
    x = first_tensor(output)
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


def resolve_reshape(reshape: str | ReshapeFn | None, model: Any, layer: nn.Module) -> ReshapeFn:
    """Turn the ``reshape`` argument of the tube methods into a function.

    Args:
        reshape (str, callable or None): ``None`` asks the registry which preset fits
            ``layer`` of ``model`` (:func:`~captum_video.registry.reshape_for`); a string
            names a preset of :data:`RESHAPE_PRESETS`; a callable is used as is.
        model (nn.Module or callable): the forward function.
        layer (nn.Module): the explained layer.

    Returns:
        callable: the reshape function.

    Example::

        >>> resolve_reshape("swin3d", None, nn.Identity()) is channels_last_to_channels_first
        True
    """
    if reshape is None:
        return RESHAPE_PRESETS[reshape_for(model, layer)]
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

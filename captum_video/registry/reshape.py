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

Hugging Face video transformers lay their tokens out in four ways, each read by a
:class:`TokenReshape` whose grid the registry takes from the model's config:

* VideoMAE: ``(N, T'H'W', K)`` tubelet tokens, time-major, no class token;
* ViViT: a class token, then ``(T', H', W')`` tubelet tokens, time-major;
* TimeSformer (divided space-time attention): a class token, then the tokens *space-major*
  (``h, w, t`` order: each patch's ``T`` frames are neighbours);
* X-CLIP's vision tower: frames in the batch axis, ``(N * T, 1 + H'W', K)``.

Multi-pathway networks (SlowFast) return a list of clips from each stage; the ``"pathways"``
preset reads one volume per pathway, and the tube methods then give one map per pathway.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor, nn

from captum_video.registry._queries import reshape_for

__all__ = [
    "RESHAPE_PRESETS",
    "ReshapeFn",
    "TokenReshape",
    "channels_first",
    "channels_last_to_channels_first",
    "first_tensor",
    "mvit_tokens_to_volume",
    "pathways_to_volumes",
    "resolve_reshape",
    "token_grid_to_volume",
    "tokens_to_volume",
]

#: A reshape: the layer's output (tensor or tuple) -> ``(N, K, T', H', W')``, or one such
#: volume per pathway for multi-pathway layers (a tuple).
ReshapeFn = Callable[[Any], Any]


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


def tokens_to_volume(
    tokens: Tensor,
    grid: Sequence[int],
    order: Literal["thw", "hwt"] = "thw",
    frames_in_batch: bool = False,
) -> Tensor:
    """Reshape a token sequence to ``(N, K, T', H', W')``, dropping prefix tokens.

    Args:
        tokens (Tensor): ``(N, P + T'H'W', K)`` tokens; with ``frames_in_batch``
            ``(N * T', P + H'W', K)`` (one sequence per frame, frames of a clip adjacent).
        grid (sequence of int): ``(T', H', W')``.
        order (str, optional): ``"thw"`` (time-major: VideoMAE, ViViT, MViT) or ``"hwt"``
            (space-major: TimeSformer). Default: ``"thw"``
        frames_in_batch (bool, optional): the frames are in the batch axis (X-CLIP).
            Default: False

    Returns:
        Tensor: ``(N, K, T', H', W')``, a view of ``tokens`` where possible.

    Example::

        >>> tokens_to_volume(torch.rand(2, 1 + 7 * 7 * 4, 16), (4, 7, 7), order="hwt").shape
        torch.Size([2, 16, 4, 7, 7])
        >>> frames = torch.rand(2 * 4, 1 + 7 * 7, 16)   # X-CLIP: 4 frames per clip
        >>> tokens_to_volume(frames, (4, 7, 7), frames_in_batch=True).shape
        torch.Size([2, 16, 4, 7, 7])
    """
    if order not in ("thw", "hwt"):
        raise ValueError(f"order must be 'thw' or 'hwt', got {order!r}")
    if not isinstance(tokens, Tensor) or tokens.dim() != 3:
        shape = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"tokens must be (N, L, K), got {shape}")
    t, h, w = (int(s) for s in grid)
    if not frames_in_batch:
        if order == "thw":
            return token_grid_to_volume(tokens, (t, h, w))
        n, length, k = tokens.shape
        if length < t * h * w:
            raise ValueError(
                f"{length} tokens cannot hold a {h}x{w}x{t} (space-major) grid "
                f"({t * h * w} tokens needed)"
            )
        grid_tokens = tokens[:, length - t * h * w :].reshape(n, h, w, t, k)
        return grid_tokens.permute(0, 4, 3, 1, 2)
    batch, length, k = tokens.shape
    if batch % t or length < h * w:
        raise ValueError(
            f"tokens of shape {tuple(tokens.shape)} do not hold {t} frames of {h}x{w} patches "
            "per clip in the batch axis"
        )
    per_frame = tokens[:, length - h * w :].reshape(batch // t, t, h, w, k)
    return per_frame.permute(0, 4, 1, 2, 3)


@dataclass(frozen=True)
class TokenReshape:
    """A reshape for token outputs on a fixed grid: :func:`tokens_to_volume` as a preset.

    The registry builds one per model from its config (the grid of a Hugging Face model is
    fixed by ``num_frames``, ``image_size`` and the patch or tubelet size).

    Args:
        grid (tuple of int): ``(T', H', W')``.
        order (str, optional): ``"thw"`` or ``"hwt"``. Default: ``"thw"``
        frames_in_batch (bool, optional): frames in the batch axis. Default: False

    Returns:
        A reshape function (layer output -> volume).

    Example::

        >>> reshape = TokenReshape((4, 2, 2), order="hwt")
        >>> reshape((torch.rand(1, 1 + 16, 8),)).shape   # TimeSformer layers return tuples
        torch.Size([1, 8, 4, 2, 2])
    """

    grid: tuple[int, int, int]
    order: Literal["thw", "hwt"] = "thw"
    frames_in_batch: bool = False

    def __post_init__(self) -> None:
        grid = tuple(self.grid) if isinstance(self.grid, (tuple, list)) else ()
        if len(grid) != 3 or not all(isinstance(s, int) and s >= 1 for s in grid):
            raise ValueError(f"grid must be (T', H', W') of three ints >= 1, got {self.grid!r}")
        if self.order not in ("thw", "hwt"):
            raise ValueError(f"order must be 'thw' or 'hwt', got {self.order!r}")

    def __call__(self, output: Any) -> Tensor:
        return tokens_to_volume(first_tensor(output), self.grid, self.order, self.frames_in_batch)


def pathways_to_volumes(output: Any) -> tuple[Tensor, ...]:
    """Preset ``"pathways"``: a multi-pathway stage's ``[slow, fast]`` output, one volume each.

    Args:
        output (list or tuple of Tensor): ``(N, K_p, T_p, H', W')`` per pathway.

    Returns:
        tuple of Tensor: the volumes, in pathway order.

    Example::

        >>> slow, fast = torch.rand(1, 16, 2, 7, 7), torch.rand(1, 4, 8, 7, 7)
        >>> [v.shape[2] for v in pathways_to_volumes([slow, fast])]
        [2, 8]
    """
    if (
        isinstance(output, (list, tuple))
        and output
        and all(isinstance(v, Tensor) and v.dim() == 5 for v in output)
    ):
        return tuple(output)
    raise ValueError(
        "the 'pathways' reshape expects a list of (N, K, T, H, W) clips, one per pathway (a "
        "SlowFast stage such as model.blocks[-3]), got "
        f"{type(output).__name__}"
    )


#: Presets by name; ``GradCAMTube(..., reshape="swin3d")`` looks names up here.
RESHAPE_PRESETS: dict[str, ReshapeFn] = {
    "identity": channels_first,
    "swin3d": channels_last_to_channels_first,
    "mvit": mvit_tokens_to_volume,
    "pathways": pathways_to_volumes,
}


def resolve_reshape(reshape: str | ReshapeFn | None, model: Any, layer: nn.Module) -> ReshapeFn:
    """Turn the ``reshape`` argument of the tube methods into a function.

    Args:
        reshape (str, callable or None): ``None`` asks the registry which preset fits
            ``layer`` of ``model`` (:func:`~captum_video.registry.reshape_for`: a preset name,
            or a :class:`TokenReshape` built from the model's config); a string
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
        preset = reshape_for(model, layer)
        return preset if callable(preset) else RESHAPE_PRESETS[preset]
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

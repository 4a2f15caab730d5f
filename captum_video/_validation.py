"""Validation of video inputs shared by every captum-video method.

Every public method calls these helpers before it touches the model, so a wrong input fails
early with a message that says what was expected and what came, and the caller's tensors and
model are left as they were.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from captum._utils.common import _format_tensor_into_tuples, _is_tuple
from captum.attr._core.noise_tunnel import NoiseTunnel
from torch import Tensor, nn

from captum_video._model_state import module_of

_F = TypeVar("_F", bound=Callable[..., Any])

__all__ = [
    "format_video_inputs",
    "validate_video",
    "layout_hint",
    "model_input_channels",
    "model_min_frames",
    "register_min_frames_query",
    "validate_finite",
]


#: The registry's answer to "how many frames does this model need at least", registered by
#: :mod:`captum_video.registry` when it is imported: the registry sits above this module
#: (``tests/test_import_layers.py``), so this module may not import it.
_min_frames_query: Callable[[Any], int] | None = None


def register_min_frames_query(query: Callable[[Any], int]) -> None:
    """Let :func:`model_min_frames` ask ``query(model)`` (the registry's ``min_frames_of``).

    Args:
        query (callable): ``model -> int``, the fewest frames the model's family takes.

    Returns:
        None
    """
    global _min_frames_query
    _min_frames_query = query


def model_input_channels(model: Any) -> int | None:
    """The channels the model's first convolution takes, or None when that is unknown.

    The first ``Conv2d`` / ``Conv3d`` in the model's module order reads the pixels of every
    captum-video model family (3-D CNNs, the patch embeddings of video transformers, the
    per-frame 2-D CNNs of a frames-as-batch adapter). Models that start with a ``Linear``
    on flattened pixels, and plain functions, give None (nothing to check).

    Args:
        model (nn.Module or callable): the model or a bound method of it.

    Returns:
        int or None

    Example::

        >>> model_input_channels(nn.Sequential(nn.Conv3d(3, 8, 3), nn.ReLU()))
        3
    """
    module = module_of(model)
    if module is None:
        return None
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            if isinstance(m, nn.modules.lazy.LazyModuleMixin) or m.in_channels < 1:
                return None  # a lazy convolution learns its channels from the first input
            return int(m.in_channels)
        if isinstance(m, (nn.Conv1d, nn.Linear)):
            return None  # audio first, or flattened pixels: no channel axis to compare
    return None


def model_min_frames(model: Any) -> int:
    """The fewest frames ``model`` takes (its family's temporal receptive field, from the
    registry; 1 when the registry does not know the model or is not loaded).

    Args:
        model (nn.Module or callable): the model or a bound method of it.

    Returns:
        int: at least 1.
    """
    module = module_of(model)
    if module is None or _min_frames_query is None:
        return 1
    try:
        return max(1, int(_min_frames_query(module)))
    except (TypeError, ValueError):
        return 1


def layout_hint(shape: Sequence[int], channels: Sequence[int], name: str, batched: bool) -> str:
    """Name a channels-last or time-first layout of a clip with the ``permute`` that fixes it.

    Args:
        shape (sequence of int): the clip's shape.
        channels (sequence of int): channel counts the clip may have.
        name (str): the argument's name.
        batched (bool): whether ``shape`` has a batch dimension.

    Returns:
        str: ``"; inputs looks channels-last ..."`` or ``""`` when the layout is not recognised.

    Example::

        >>> layout_hint((2, 16, 32, 32, 3), (3,), "x", True)[:40]
        '; x looks channels-last (N, T, H, W, C) '
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != (5 if batched else 4):
        return ""
    c, t = (1, 2) if batched else (0, 1)
    if shape[c] in channels:
        return ""
    if shape[-1] in channels:
        layout = "(N, T, H, W, C)" if batched else "(T, H, W, C)"
        order = "0, 4, 1, 2, 3" if batched else "3, 0, 1, 2"
        return f"; {name} looks channels-last {layout} = {shape}: pass {name}.permute({order})"
    if shape[t] in channels:
        layout = "(N, T, C, H, W)" if batched else "(T, C, H, W)"
        order = "0, 2, 1, 3, 4" if batched else "1, 0, 2, 3"
        return f"; {name} looks time-first {layout} = {shape}: pass {name}.permute({order})"
    return ""


#: Channel counts of pixel clips (grey, flow, RGB, RGBA): a clip with more "channels" than
#: these whose last or third axis has 1 or 3 entries is read as channels-last / time-first.
_PIXEL_CHANNELS = (1, 2, 3, 4)


def _noise_tunnel_integer_inputs() -> Tensor | None:
    """The integer clip a running ``NoiseTunnel.attribute`` was given, if any.

    NoiseTunnel adds float noise to its inputs before it calls the wrapped method, so a uint8
    clip reaches captum-video's methods as 0-255 floats. Its own frame (found by its code
    object, a few frames up) still holds the caller's tensors, which is where the dtype shows.
    """
    frame = sys._getframe(2)
    for _ in range(30):
        if frame is None:
            return None
        if frame.f_code is _NOISE_TUNNEL_CODE:
            held = frame.f_locals.get("inputs")
            for tensor in held if isinstance(held, tuple) else (held,):
                if isinstance(tensor, Tensor) and not (
                    tensor.is_floating_point() or tensor.is_complex()
                ):
                    return tensor
            return None
        frame = frame.f_back
    return None


_NOISE_TUNNEL_CODE = getattr(NoiseTunnel.attribute, "__wrapped__", NoiseTunnel.attribute).__code__


def validate_video(
    video: Any,
    *,
    name: str = "inputs",
    channels: int | Sequence[int] | None = None,
    min_frames: int = 1,
    batched: bool = True,
    check_finite: bool = True,
    model: Any = None,
    guess_layout: bool = False,
    model_frames: bool = True,
) -> Tensor:
    """Check that ``video`` is a floating video tensor and return it unchanged.

    Integer clips (``uint8`` 0-255) are refused everywhere in captum-video with the fix
    ``clip.float() / 255``: a model, a metric or a renderer would otherwise read 0-255 values
    as if they were ``[0, 1]`` (or normalised) ones.

    Args:
        video (Tensor): the clip, ``(N, C, T, H, W)`` when ``batched`` else ``(C, T, H, W)``.
        name (str, optional): the argument's name, used in error messages.
            Default: ``"inputs"``
        channels (int or sequence of int, optional): allowed channel counts; ``None`` allows any
            (or the model's, with ``model``). Default: None
        min_frames (int, optional): the fewest frames the caller's method can work with, e.g.
            the model's temporal receptive field. Default: 1
        batched (bool, optional): whether a batch dimension is expected. Default: True
        check_finite (bool, optional): reject NaN and infinite values. Default: True
        model (nn.Module or callable, optional): the model the clip goes to: its first
            convolution gives the channel count (:func:`model_input_channels`) and the
            registry its fewest frames (:func:`model_min_frames`). Default: None
        guess_layout (bool, optional): the tensor is a pixel clip: with unknown ``channels``,
            a channel axis longer than 4 while the last (or time) axis has 1-3 entries is
            refused as channels-last (or time-first). Default: False
        model_frames (bool, optional): with ``model``, ask the registry for the fewest frames;
            off for one stream of several (a SlowFast pathway). Default: True

    Returns:
        Tensor: ``video`` itself (not a copy), so calls can be chained.

    Raises:
        TypeError: ``video`` is not a floating-point tensor.
        ValueError: wrong number of dimensions, wrong channel count (channels-last and
            time-first layouts are named with their fix), too few frames, an empty tensor, or
            NaN/inf values.

    Example::

        >>> clip = torch.rand(2, 3, 16, 112, 112)
        >>> validate_video(clip, channels=3, min_frames=8) is clip
        True
    """
    if not isinstance(video, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor video of shape "
            f"{'(N, C, T, H, W)' if batched else '(C, T, H, W)'}, got {type(video).__name__}"
        )
    layout = "(N, C, T, H, W)" if batched else "(C, T, H, W)"
    ndim = 5 if batched else 4
    if video.dim() != ndim:
        hint = ""
        if batched and video.dim() == 4:
            hint = (
                f"; a single clip (C, T, H, W) needs a batch dimension: {name}.unsqueeze(0), and "
                "an image batch (N, C, H, W) needs a time axis"
            )
        raise ValueError(
            f"{name} must be a {ndim}-D video tensor {layout}, got a {video.dim()}-D tensor of "
            f"shape {tuple(video.shape)}{hint}"
        )
    if not (video.is_floating_point() or video.is_complex()):
        raise TypeError(
            f"{name} must be a floating-point tensor (e.g. float32 in [0, 1] or normalised), "
            f"got dtype {video.dtype}; convert with {name}.float() / 255"
        )
    if video.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(video.shape)}")
    c_dim, t_dim = (1, 2) if batched else (0, 1)
    owner = "the model"
    frames_of_model = 1
    if model is not None:
        if channels is None:
            channels = model_input_channels(model)
        module = module_of(model)
        owner = f"forward_func ({type(module).__name__})" if module is not None else owner
        if model_frames:
            frames_of_model = model_min_frames(model)
    if channels is not None:
        allowed = (channels,) if isinstance(channels, int) else tuple(channels)
        if video.shape[c_dim] not in allowed:
            hint = layout_hint(video.shape, allowed, name, batched) or (
                f"; {owner} takes {' or '.join(map(str, allowed))} channels"
                if model is not None
                else ""
            )
            raise ValueError(
                f"{name} must have {' or '.join(map(str, allowed))} channels in dimension "
                f"{c_dim} of {layout}, got {video.shape[c_dim]} (shape {tuple(video.shape)})"
                f"{hint}"
            )
    elif guess_layout and video.shape[c_dim] not in _PIXEL_CHANNELS:
        hint = layout_hint(video.shape, (1, 3), name, batched)
        if hint:
            raise ValueError(
                f"{name} must be a clip {layout} with its channels in dimension {c_dim}, got "
                f"shape {tuple(video.shape)}{hint}"
            )
    if video.shape[t_dim] < max(min_frames, frames_of_model):
        why = (
            f"{owner} needs at least {frames_of_model} (its temporal receptive field)"
            if frames_of_model > min_frames
            else f"at least {min_frames} are needed"
        )
        raise ValueError(
            f"{name} has {video.shape[t_dim]} frames but {why} (shape {tuple(video.shape)}, "
            f"time is dimension {t_dim} of {layout}); pass a longer clip"
        )
    if check_finite and not bool(torch.isfinite(video).all()):
        n_bad = int((~torch.isfinite(video)).sum())
        raise ValueError(f"{name} contains {n_bad} NaN or infinite values")
    return video


def format_video_inputs(
    inputs: Tensor | tuple[Tensor, ...],
    *,
    channels: int | Sequence[int] | None = None,
    min_frames: int = 1,
    all_videos: bool = False,
    model: Any = None,
) -> tuple[bool, tuple[Tensor, ...]]:
    """Validate Captum-style ``inputs`` holding video tensors and put them in a tuple.

    Only the first tensor of a tuple must be a video; the others (e.g. audio or a second
    stream) must be tensors with the same batch size, or, with ``all_videos``, videos
    ``(N, C', T, H', W')`` with the first one's number of frames (for methods that change
    every input along time).

    Args:
        inputs (Tensor or tuple of Tensor): ``(N, C, T, H, W)`` clips.
        channels (int or sequence of int, optional): allowed channel counts of the first
            tensor. Default: None
        min_frames (int, optional): fewest frames the method can work with. Default: 1
        all_videos (bool, optional): every tensor must be a video with the same ``T``.
            Default: False
        model (nn.Module or callable, optional): the method's ``forward_func``: the first
            tensor must then have the channels of the model's first convolution and at least
            the frames the registry says the model needs (see :func:`validate_video`); a
            channels-last or time-first clip is named with the ``permute`` that fixes it.
            Default: None

    Returns:
        tuple: ``(is_inputs_tuple, inputs_as_tuple)``, as Captum's ``_is_tuple`` and
        ``_format_tensor_into_tuples`` give them.

    Example::

        >>> is_tuple, (clip,) = format_video_inputs(torch.rand(1, 3, 8, 32, 32))
        >>> is_tuple
        False
    """
    if not isinstance(inputs, (Tensor, tuple)):
        raise TypeError(
            "inputs must be a video tensor (N, C, T, H, W) or a tuple of tensors, "
            f"got {type(inputs).__name__}"
        )
    is_tuple = _is_tuple(inputs)
    formatted = _format_tensor_into_tuples(inputs)
    assert formatted is not None
    if len(formatted) == 0:
        raise ValueError("inputs is an empty tuple; expected at least one video tensor")
    integer = _noise_tunnel_integer_inputs()
    if integer is not None:
        raise TypeError(
            f"inputs of NoiseTunnel must be a floating-point clip, got dtype {integer.dtype}: "
            "NoiseTunnel adds its noise to the 0-255 values and the wrapped method would "
            "explain those; pass inputs.float() / 255"
        )
    name = "inputs[0]" if is_tuple else "inputs"
    checked_model = model
    if model is not None and channels is None and len(formatted) > 1:
        # Several inputs: the model's first convolution may read another one of them.
        wanted = model_input_channels(model)
        if wanted is not None and any(
            isinstance(t, Tensor) and t.dim() == 5 and t.shape[1] == wanted for t in formatted[1:]
        ):
            checked_model = None
    validate_video(
        formatted[0],
        name=name,
        channels=channels,
        min_frames=min_frames,
        model=checked_model,
        guess_layout=True,
        # The registry's fewest frames are those of the whole clip; of several inputs, the
        # first may be one pathway of it (SlowFast's slow one).
        model_frames=len(formatted) == 1,
    )
    batch = formatted[0].shape[0]
    for i, extra in enumerate(formatted[1:], start=1):
        if not isinstance(extra, Tensor):
            raise TypeError(f"inputs[{i}] must be a tensor, got {type(extra).__name__}")
        if all_videos and extra.dim() == 5 and not extra.is_floating_point():
            raise TypeError(
                f"inputs[{i}] must be a floating-point video, got dtype {extra.dtype}; "
                f"convert with inputs[{i}].float() / 255"
            )
        if extra.dim() == 0 or extra.shape[0] != batch:
            raise ValueError(
                f"inputs[{i}] must have the batch size {batch} of inputs[0], "
                f"got shape {tuple(extra.shape)}"
            )
        if all_videos and (extra.dim() != 5 or extra.shape[2] != formatted[0].shape[2]):
            raise ValueError(
                f"inputs[{i}] must be a video (N, C, {formatted[0].shape[2]}, H, W) with the "
                f"frames of inputs[0], got shape {tuple(extra.shape)}"
            )
        if extra.is_floating_point() and not bool(torch.isfinite(extra).all()):
            raise ValueError(f"inputs[{i}] contains NaN or infinite values")
    return is_tuple, formatted


def validate_finite(tensor: Any, name: str) -> Tensor:
    """Raise a ValueError naming ``name`` when ``tensor`` holds NaN or infinite values.

    captum-video's one NaN policy for maps and scores handed to metrics and renderers: they
    are refused, never turned into a plausible number.

    Args:
        tensor (Tensor): the values.
        name (str): the argument's name.

    Returns:
        Tensor: ``tensor`` itself.

    Example::

        >>> validate_finite(torch.tensor([float("nan")]), "attributions")
        Traceback (most recent call last):
        ...
        ValueError: attributions contains 1 NaN or infinite values; ...
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(tensor).__name__}")
    if (tensor.is_floating_point() or tensor.is_complex()) and not bool(
        torch.isfinite(tensor).all()
    ):
        n_bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(
            f"{name} contains {n_bad} NaN or infinite values; metrics and renderers refuse "
            "them (check the method that made it)"
        )
    return tensor

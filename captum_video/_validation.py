"""Validation of video inputs shared by every captum-video method.

Every public method calls these helpers before it touches the model, so a wrong input fails
early with a message that says what was expected and what came, and the caller's tensors and
model are left as they were.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from captum._utils.common import _format_tensor_into_tuples, _is_tuple, _run_forward
from captum._utils.gradient import apply_gradient_requirements, undo_gradient_requirements
from torch import Tensor, nn

__all__ = [
    "format_video_inputs",
    "validate_video",
    "validate_target",
    "resolve_target",
    "one_score_per_example",
    "target_or_prediction",
    "preserve_grad_requirements",
    "removing_hooks",
]


def validate_video(
    video: Any,
    *,
    name: str = "inputs",
    channels: int | Sequence[int] | None = None,
    min_frames: int = 1,
    batched: bool = True,
    check_finite: bool = True,
) -> Tensor:
    """Check that ``video`` is a floating video tensor and return it unchanged.

    Args:
        video (Tensor): the clip, ``(N, C, T, H, W)`` when ``batched`` else ``(C, T, H, W)``.
        name (str, optional): the argument's name, used in error messages.
            Default: ``"inputs"``
        channels (int or sequence of int, optional): allowed channel counts; ``None`` allows any.
            Default: None
        min_frames (int, optional): the fewest frames the caller's method can work with, e.g.
            the model's temporal receptive field. Default: 1
        batched (bool, optional): whether a batch dimension is expected. Default: True
        check_finite (bool, optional): reject NaN and infinite values. Default: True

    Returns:
        Tensor: ``video`` itself (not a copy), so calls can be chained.

    Raises:
        TypeError: ``video`` is not a floating-point tensor.
        ValueError: wrong number of dimensions, wrong channel count, too few frames, an empty
            tensor, or NaN/inf values.

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
                "; a single clip (C, T, H, W) needs a batch dimension: video.unsqueeze(0), and "
                "an image batch (N, C, H, W) needs a time axis"
            )
        raise ValueError(
            f"{name} must be a {ndim}-D video tensor {layout}, got a {video.dim()}-D tensor of "
            f"shape {tuple(video.shape)}{hint}"
        )
    if not (video.is_floating_point() or video.is_complex()):
        raise TypeError(
            f"{name} must be a floating-point tensor (e.g. float32 in [0, 1] or normalised), "
            f"got dtype {video.dtype}; convert with video.float() / 255"
        )
    if video.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(video.shape)}")
    c_dim, t_dim = (1, 2) if batched else (0, 1)
    if channels is not None:
        allowed = (channels,) if isinstance(channels, int) else tuple(channels)
        if video.shape[c_dim] not in allowed:
            raise ValueError(
                f"{name} must have {' or '.join(map(str, allowed))} channels in dimension "
                f"{c_dim} of {layout}, got {video.shape[c_dim]} (shape {tuple(video.shape)}); "
                "channels-last clips (N, T, H, W, C) need video.permute(0, 4, 1, 2, 3)"
            )
    if video.shape[t_dim] < min_frames:
        raise ValueError(
            f"{name} has {video.shape[t_dim]} frames but at least {min_frames} are needed "
            f"(shape {tuple(video.shape)}, time is dimension {t_dim} of {layout})"
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
    validate_video(
        formatted[0],
        name="inputs[0]" if is_tuple else "inputs",
        channels=channels,
        min_frames=min_frames,
    )
    batch = formatted[0].shape[0]
    for i, extra in enumerate(formatted[1:], start=1):
        if not isinstance(extra, Tensor):
            raise TypeError(f"inputs[{i}] must be a tensor, got {type(extra).__name__}")
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


def validate_target(target: Any, num_classes: int, batch_size: int) -> None:
    """Check that class targets are inside ``[0, num_classes)``.

    Accepts what Captum accepts for a classification output: ``None``, an int, a list of ints
    or a 1-D integer tensor with one entry per example. Tuple targets (multi-dimensional
    outputs) are passed through unchecked.

    Args:
        target: the Captum ``target`` argument.
        num_classes (int): size of the model's output along dimension 1.
        batch_size (int): number of examples N.

    Returns:
        None

    Example::

        >>> validate_target(3, num_classes=4, batch_size=2)
        >>> validate_target([0, 5], num_classes=4, batch_size=2)
        Traceback (most recent call last):
        ...
        ValueError: target 5 is out of range for a model with 4 outputs (valid: 0..3)
    """
    if target is None or isinstance(target, tuple):
        return
    if isinstance(target, Tensor):
        if target.dim() == 0:
            values = [int(target.item())]
        elif target.dim() == 1 and not target.is_floating_point():
            values = [int(v) for v in target.tolist()]
        else:
            return
    elif isinstance(target, int):
        values = [target]
    elif isinstance(target, list) and all(isinstance(v, int) for v in target):
        values = list(target)
    else:
        return
    if len(values) not in (1, batch_size):
        raise ValueError(
            f"target has {len(values)} entries but the batch has {batch_size} examples"
        )
    for value in values:
        if not 0 <= value < num_classes:
            raise ValueError(
                f"target {value} is out of range for a model with {num_classes} outputs "
                f"(valid: 0..{num_classes - 1})"
            )


def resolve_target(output: Tensor, target: Any) -> Any:
    """Validate a Captum ``target`` against a model output and give ``None`` its one meaning.

    Every captum-video method reads ``target=None`` the same way: each example's predicted
    class, the argmax of the model's output (for a model with one output per example, the
    output itself, as in Captum).

    Args:
        output (Tensor): the model's output on the unperturbed inputs, ``(N, K)`` or ``(N,)``.
        target: the Captum ``target`` argument.

    Returns:
        the target to pass to Captum's ``_select_targets``: a ``(N,)`` tensor of predicted
        classes for ``None`` (or ``None`` for single-output models), a tensor moved to the
        output's device, or ``target`` unchanged.

    Example::

        >>> resolve_target(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), None)
        tensor([1, 0])
    """
    n = output.shape[0]
    if output.dim() >= 2:
        validate_target(target, int(output.shape[1]), n)
    if target is None:
        if output.dim() < 2 or output[0].numel() == 1:
            return None
        return output.detach().reshape(n, -1).argmax(1)
    if isinstance(target, Tensor):
        return target.to(output.device)
    return target


def target_or_prediction(
    forward_func: Callable[..., Any],
    inputs: tuple[Tensor, ...],
    additional_forward_args: Any,
    target: Any,
) -> Any:
    """``target``, or for ``None`` the predicted class of each example, fixed once.

    For methods that run another method several times on changed inputs (motion-removed clips,
    noisy copies): the class explained stays that of the real input.

    Args:
        forward_func (callable): the model.
        inputs (tuple of Tensor): the real inputs.
        additional_forward_args (Any): extra model arguments (Captum-formatted).
        target: the Captum ``target`` argument.

    Returns:
        ``target`` unchanged, or the ``(N,)`` predicted classes (see :func:`resolve_target`).

    Example::

        >>> model = torch.nn.Linear(3, 4)
        >>> target_or_prediction(model, (torch.rand(2, 3),), None, None).shape
        torch.Size([2])
    """
    if target is not None:
        return target
    with torch.no_grad():
        output = _run_forward(forward_func, inputs, None, additional_forward_args)
    if not isinstance(output, Tensor):
        raise TypeError(f"the model must return a tensor of scores, got {type(output).__name__}")
    return resolve_target(output, None)


def one_score_per_example(output: Tensor, batch: int) -> Tensor:
    """The model's selected output as one score per example, ``(batch,)``.

    Args:
        output (Tensor): the output after Captum's target selection.
        batch (int): the number of examples.

    Returns:
        Tensor: ``output`` reshaped to ``(batch,)``.

    Raises:
        ValueError: the output does not hold one value per example.

    Example::

        >>> one_score_per_example(torch.ones(3, 1), 3).shape
        torch.Size([3])
    """
    if output.numel() != batch:
        raise ValueError(
            f"forward_func must give one value per example after target selection ({batch}), "
            f"got output of shape {tuple(output.shape)}; pass a class `target` or wrap the model"
        )
    return output.reshape(batch)


@contextlib.contextmanager
def preserve_grad_requirements(inputs: tuple[Tensor, ...]) -> Iterator[tuple[Tensor, ...]]:
    """Turn on ``requires_grad`` for the duration of a block and restore it afterwards.

    This is Captum's ``apply_gradient_requirements`` / ``undo_gradient_requirements`` pair in
    a ``try/finally``, so a failing attribution does not leave ``requires_grad=True`` on the
    caller's tensors (a known Captum LRP leak).

    Args:
        inputs (tuple of Tensor): the tensors that need gradients.

    Returns:
        A context manager yielding ``inputs``.

    Example::

        >>> x = torch.rand(1, 3, 4, 8, 8)
        >>> with preserve_grad_requirements((x,)):
        ...     x.requires_grad
        True
        >>> x.requires_grad
        False
    """
    grad_required = apply_gradient_requirements(inputs, warn=False)
    try:
        yield inputs
    finally:
        undo_gradient_requirements(inputs, grad_required)


@contextlib.contextmanager
def removing_hooks() -> Iterator[list[torch.utils.hooks.RemovableHandle]]:
    """Collect hook handles in a list and remove all of them when the block ends, also when
    it ends with an error, so a failing method leaves no hook on the caller's model.

    Returns:
        A context manager yielding a list; append every handle you register to it.

    Example::

        >>> layer = nn.ReLU()
        >>> with removing_hooks() as handles:
        ...     handles.append(layer.register_forward_hook(lambda m, i, o: None))
        >>> len(layer._forward_hooks)
        0
    """
    handles: list[torch.utils.hooks.RemovableHandle] = []
    try:
        yield handles
    finally:
        for handle in handles:
            handle.remove()


def model_num_outputs(output: Tensor) -> int:
    """Number of classes of a ``(N, K)`` model output (1 for a ``(N,)`` output)."""
    return 1 if output.dim() < 2 else int(output.shape[1])


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for a stateless module)."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")

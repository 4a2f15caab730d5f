"""Targets: which output each example is explained for, checked before any work is done.

``target=None`` means the predicted class everywhere in captum-video (:func:`resolve_target`);
integers, lists, tuples and tensors of class indices are checked against the model's number of
outputs and the batch, so a wrong target fails with a message instead of an index error deep
inside a method.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import torch
from captum._utils.common import _run_forward
from torch import Tensor

__all__ = [
    "validate_target",
    "resolve_target",
    "target_or_prediction",
    "one_score_per_example",
    "model_num_outputs",
]


def _target_values(target: Any) -> list[int] | None:
    """The class indices in a Captum ``target``; None for ``None`` and tuple targets.

    Raises TypeError for anything but ints, lists of ints and 0-D / 1-D integer tensors.
    """
    if target is None or isinstance(target, tuple):
        return None  # tuples index multi-dimensional outputs: Captum's business
    if isinstance(target, list) and target and all(isinstance(v, tuple) for v in target):
        return None  # one tuple per example, as Captum allows
    fix = "pass class indices: an int, a list of ints or a 1-D integer tensor (one per clip)"
    if isinstance(target, Tensor):
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise TypeError(f"target must be an integer tensor, got dtype {target.dtype}; {fix}")
        if target.dim() > 1:
            raise ValueError(
                f"target must be a 0-D or 1-D tensor, got shape {tuple(target.shape)}; {fix}"
            )
        return [int(v) for v in target.reshape(-1).tolist()]
    if isinstance(target, numbers.Integral) and not isinstance(target, bool):
        return [int(target)]
    if isinstance(target, list):
        bad = [v for v in target if isinstance(v, bool) or not isinstance(v, numbers.Integral)]
        if bad:
            raise TypeError(
                f"target must be a list of ints, got an entry {bad[0]!r} of type "
                f"{type(bad[0]).__name__}; {fix}"
            )
        return [int(v) for v in target]
    raise TypeError(
        f"target must be None or class indices, got {type(target).__name__} {target!r}; {fix}"
    )


def validate_target(
    target: Any, num_classes: int | None = None, batch_size: int | None = None
) -> None:
    """Check the type of class targets and that they are inside ``[0, num_classes)``.

    Accepts what Captum accepts for a classification output: ``None``, an int, a list of ints
    or a 0-D / 1-D integer tensor with one entry per example. Tuple targets (and lists of
    tuples: multi-dimensional outputs) are passed through unchecked. Negative indices are
    refused (Python would read ``-1`` as the last class without saying so).

    Args:
        target: the Captum ``target`` argument.
        num_classes (int, optional): size of the model's output along dimension 1; None
            checks the type and sign only (before the model has run). Default: None
        batch_size (int, optional): number of examples N; None skips the count check.
            Default: None

    Returns:
        None

    Raises:
        TypeError: a float, bool, string or other non-integer target.
        ValueError: a negative or out-of-range index, a count that is neither 1 nor N, or
            an empty target.

    Example::

        >>> validate_target(3, num_classes=4, batch_size=2)
        >>> validate_target([0, 5], num_classes=4, batch_size=2)
        Traceback (most recent call last):
        ...
        ValueError: target 5 is out of range for a model with 4 outputs (valid: 0..3)
    """
    values = _target_values(target)
    if values is None:
        return
    if not values:
        raise ValueError("target is empty; pass one class index per clip (or one for all)")
    if batch_size is not None and len(values) not in (1, batch_size):
        raise ValueError(
            f"target has {len(values)} entries but the batch has {batch_size} examples"
        )
    for value in values:
        if value < 0:
            raise ValueError(
                f"target {value} is out of range: class indices start at 0 (negative indices "
                "are not accepted); pass the class index itself"
            )
        if num_classes is not None and value >= num_classes:
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
    else:
        validate_target(target)
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


def model_num_outputs(output: Tensor) -> int:
    """Number of classes of a ``(N, K)`` model output (1 for a ``(N,)`` output)."""
    return 1 if output.dim() < 2 else int(output.shape[1])

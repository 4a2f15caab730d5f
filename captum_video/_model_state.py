"""Leaving the caller's model and tensors as they were: eval mode, hooks, ``requires_grad``.

Every method that runs a model does it inside these helpers, so that its BatchNorm statistics,
the modules' ``training`` flags, their hooks and the ``requires_grad`` of the caller's tensors
are the same after the call as before, also after an error.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
from captum._utils.gradient import apply_gradient_requirements, undo_gradient_requirements
from torch import Tensor, nn

_F = TypeVar("_F", bound=Callable[..., Any])

__all__ = [
    "preserve_grad_requirements",
    "removing_hooks",
    "evaluating",
    "in_eval_mode",
    "eval_mode_for",
    "module_device",
    "module_of",
]


def module_of(model: Any) -> nn.Module | None:
    """``model`` itself, the module a bound method (``model.forward``) belongs to, or None."""
    if isinstance(model, nn.Module):
        return model
    owner = getattr(model, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


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


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for a stateless module)."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def evaluating(model: Any, method: str = "this method") -> Iterator[None]:
    """Run ``model`` in eval mode for the duration of a block, restoring every module's mode.

    captum-video's one policy for models in train mode: an explanation runs the model in eval
    mode, with a warning that says so. In train mode every forward pass would update the
    BatchNorm running statistics of the caller's model (and dropout would make the explanation
    random); in eval mode the buffers stay exactly as they were. Afterwards, also after an
    error, each module gets back its own ``training`` flag (a model partly in eval mode stays
    so). A model already in eval mode is left alone; a plain stack of ``torch.nn`` layers
    without BatchNorm, InstanceNorm or dropout is switched without a warning (it computes the
    same in both modes).

    Args:
        model (nn.Module or callable): the model, or a bound method of it; anything else (a
            plain function) is left alone.
        method (str, optional): the method's name, for the warning. Default: ``"this method"``

    Returns:
        A context manager.

    Example::

        >>> net = nn.Sequential(nn.Conv3d(3, 2, 1), nn.BatchNorm3d(2)).train()
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     with evaluating(net):
        ...         net.training
        False
        >>> net.training
        True
    """
    module = module_of(model)
    modes = [(m, m.training) for m in module.modules()] if module is not None else []
    if any(training for _, training in modes) and _mode_matters(module):
        warnings.warn(
            f"{method} runs the model in eval mode: it was in train mode, where every forward "
            "pass would update its BatchNorm running statistics (and dropout would make the "
            "explanation random); each module's mode is restored afterwards. Call "
            "model.eval() first to silence this warning",
            UserWarning,
            stacklevel=4,
        )
    if module is not None and any(training for _, training in modes):
        module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


#: torch layers that behave differently in train mode (running statistics, random masks).
_MODE_DEPENDENT = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.modules.dropout._DropoutNd,
)


def _mode_matters(module: nn.Module | None) -> bool:
    """Whether a module in train mode would behave differently in eval mode: it holds
    BatchNorm, InstanceNorm or dropout layers in train mode, or modules defined outside
    ``torch.nn`` (whose forward may read ``self.training``). A plain stack of torch layers
    behaves the same, so switching it needs no warning."""
    if module is None:
        return False
    return any(
        m.training
        and (isinstance(m, _MODE_DEPENDENT) or not type(m).__module__.startswith("torch.nn"))
        for m in module.modules()
    )


def in_eval_mode(function: _F) -> _F:
    """Decorate an ``attribute`` / ``interpret`` method: run it under :func:`evaluating`.

    The model is the instance's ``forward_func`` (or ``model``). Place it below
    ``@log_usage``: NoiseTunnel and TCAV call ``attribute.__wrapped__``, which is then this
    wrapper, so the policy holds for them too.

    Args:
        function (callable): the method.

    Returns:
        callable: the wrapped method.
    """

    @functools.wraps(function)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        model = getattr(self, "forward_func", None)
        if module_of(model) is None:
            model = getattr(self, "model", model)
        with evaluating(model, f"{type(self).__name__}.{function.__name__}"):
            return function(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def eval_mode_for(argument: str) -> Callable[[_F], _F]:
    """Decorate a function that runs a model: run it under :func:`evaluating`.

    Args:
        argument (str): the name of the function's model argument (``"model"``,
            ``"forward_func"``).

    Returns:
        callable: a decorator.

    Example::

        >>> @eval_mode_for("model")
        ... def score(model, x):
        ...     return model(x)
    """

    def decorate(function: _F) -> _F:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind_partial(*args, **kwargs)
            with evaluating(bound.arguments.get(argument), f"{function.__name__}"):
                return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate

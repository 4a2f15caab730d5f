r"""Canonizers: temporary, exactly reversible rewrites that make a model LRP-friendly.

* :class:`MergeBatchNorm` folds every BatchNorm that directly follows a Conv/Linear (inside an
  ``nn.Sequential``, also when the conv is the last layer of a nested ``Sequential`` such as
  torchvision's ``Conv2Plus1D``) into that layer, and turns the BatchNorm into an exact
  identity. BatchNorm's shift then lives in a bias, which z+ / z^B ignore, so relevance is
  conserved.
* :class:`ResidualAddCanonizer` gives the residual ``out += residual`` of every residual
  block the architecture registry knows (torchvision's video ``BasicBlock`` / ``Bottleneck``
  in r3d_18, mc3_18, r2plus1d_18, and :class:`captum_video.models.BasicBlock`) an explicit
  Captum ``Addition_Module``, so hook-based LRP (Captum's, Zennit's) can split relevance at
  the sum instead of copying it to both branches (which doubles relevance at every block).
* :class:`NoInplaceReLU` switches ``inplace`` off on ReLUs (Captum's module backward hooks
  reject in-place outputs).

All changes are made inside :func:`canonized`, which undoes them in reverse order on exit,
also on error. Nothing is written into the caller's tensors: new tensors are swapped in and
the original tensor objects are put back, so parameters and buffers come back bit for bit.
"""

from __future__ import annotations

import contextlib
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import cast

import torch
from captum.attr._utils.custom_modules import Addition_Module
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from captum_video.registry import ResidualForward, residual_block_forwards

__all__ = [
    "Canonizer",
    "MergeBatchNorm",
    "ResidualAddCanonizer",
    "NoInplaceReLU",
    "canonized",
    "default_canonizers",
]

Undo = list[Callable[[], object]]
_FUSABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_ADD_NAME = "lrp_residual_add"


class Canonizer(ABC):
    r"""A reversible model rewrite. :meth:`apply` changes the model and pushes one undo
    callable per change onto ``undo`` *before* moving on, so a failure half-way is undone too.

    Subclasses implement :meth:`apply`; :func:`canonized` applies a list of canonizers and
    runs their undo steps in reverse order when the block ends.

    Returns:
        A canonizer, used through :func:`canonized`.

    Example::

        >>> with canonized(model, [MergeBatchNorm()]):
        ...     pass
    """

    @abstractmethod
    def apply(self, model: nn.Module, undo: Undo) -> None:
        """Rewrite ``model`` in place, recording how to revert each change in ``undo``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _swap_param(module: nn.Module, name: str, value: Tensor, undo: Undo) -> None:
    param = getattr(module, name)
    if param is None:
        setattr(module, name, nn.Parameter(value, requires_grad=False))
        undo.append(lambda: setattr(module, name, None))
        return
    original = param.data
    param.data = value
    undo.append(lambda: setattr(param, "data", original))


def _swap_buffer(module: nn.Module, name: str, value: Tensor, undo: Undo) -> None:
    original = module._buffers[name]
    module._buffers[name] = value
    undo.append(lambda: module._buffers.__setitem__(name, original))


def _last_linear(module: nn.Module) -> nn.Module | None:
    """The layer whose output ``module`` returns, if that is a Conv/Linear."""
    if isinstance(module, _FUSABLE):
        return module
    if isinstance(module, nn.Sequential) and len(module) > 0:
        return _last_linear(module[-1])
    return None


class MergeBatchNorm(Canonizer):
    r"""Fold BatchNorm layers into the Conv/Linear layer they follow.

    ``w' = w * g / sqrt(var + eps)`` and ``b' = (b - mean) * g / sqrt(var + eps) + beta`` per
    output channel; the BatchNorm becomes the identity (mean 0, var 1, eps 0, weight 1,
    bias 0). Only BatchNorms in eval mode with running statistics can be folded; the model's
    output does not change.

    Returns:
        A canonizer.

    Example::

        >>> model = nn.Sequential(nn.Conv3d(3, 4, 3), nn.BatchNorm3d(4)).eval()
        >>> x = torch.rand(1, 3, 4, 8, 8)
        >>> with canonized(model, [MergeBatchNorm()]):
        ...     torch.allclose(model[1](model[0](x)), model[0](x))
        True
    """

    def apply(self, model: nn.Module, undo: Undo) -> None:
        for parent in model.modules():
            if not isinstance(parent, nn.Sequential):
                continue
            children = list(parent.children())
            for prev, bn in zip(children, children[1:], strict=False):
                layer = _last_linear(prev)
                if layer is None or not isinstance(bn, _BatchNorm):
                    continue
                if bn.training or bn.running_mean is None or bn.running_var is None:
                    raise ValueError(
                        f"cannot fold {type(bn).__name__} into {type(layer).__name__}: it uses "
                        "batch statistics (call model.eval() first; BatchNorm needs running "
                        "statistics)"
                    )
                self._fold(layer, bn, undo)

    @staticmethod
    def _fold(layer: nn.Module, bn: _BatchNorm, undo: Undo) -> None:
        assert bn.running_mean is not None and bn.running_var is not None
        weight = cast(Tensor, layer.weight).detach()
        layer_bias = cast(Tensor | None, layer.bias)
        mean, var = bn.running_mean.detach(), bn.running_var.detach()
        scale = torch.rsqrt(var + bn.eps)
        shift = -mean * scale
        if bn.affine:
            scale = scale * bn.weight.detach()
            shift = -mean * scale + bn.bias.detach()
        if layer_bias is not None:
            shift = shift + layer_bias.detach() * scale
        view = [-1] + [1] * (weight.dim() - 1)  # scale each output channel
        _swap_param(layer, "weight", (weight * scale.view(view)).to(weight.dtype), undo)
        _swap_param(layer, "bias", shift.to(weight.dtype), undo)
        # The BatchNorm now computes exactly (x - 0) / sqrt(1 + 0) * 1 + 0 = x.
        _swap_buffer(bn, "running_mean", torch.zeros_like(mean), undo)
        _swap_buffer(bn, "running_var", torch.ones_like(var), undo)
        if bn.affine:
            _swap_param(bn, "weight", torch.ones_like(mean), undo)
            _swap_param(bn, "bias", torch.zeros_like(mean), undo)
        undo.append(functools.partial(setattr, bn, "eps", bn.eps))
        bn.eps = 0.0


class ResidualAddCanonizer(Canonizer):
    r"""Route the residual sum of residual blocks through an explicit ``Addition_Module``.

    The block's ``forward`` is replaced (on the instance, not the class) by the block's
    explicit-sum forward from the architecture registry
    (:func:`~captum_video.registry.residual_block_forwards`), called with
    ``self.lrp_residual_add`` as the sum instead of the in-place ``out += residual``; on exit
    the instance attribute and the module are removed again.

    Args:
        block_types (dict, optional): extra ``{block class: forward(block, x, add)}`` entries
            for residual blocks the registry does not know (register a model family to make
            them permanent). Default: None

    Returns:
        A canonizer.

    Example::

        >>> from captum_video.models import R2Plus1DSmall
        >>> model = R2Plus1DSmall().eval()
        >>> with canonized(model, [ResidualAddCanonizer()]):
        ...     hasattr(model.layer1, "lrp_residual_add")
        True
        >>> hasattr(model.layer1, "lrp_residual_add")
        False
    """

    def __init__(self, block_types: Mapping[type, ResidualForward] | None = None) -> None:
        self.block_types = dict(block_types or {})

    def apply(self, model: nn.Module, undo: Undo) -> None:
        table = {**residual_block_forwards(), **self.block_types}
        for module in list(model.modules()):
            forward = table.get(type(module))
            if forward is None or _ADD_NAME in module._modules:
                continue
            add = Addition_Module()
            module.add_module(_ADD_NAME, add)
            undo.append(functools.partial(module._modules.pop, _ADD_NAME))
            explicit = functools.partial(forward, module, add=add)
            object.__setattr__(module, "forward", explicit)
            undo.append(functools.partial(object.__delattr__, module, "forward"))


class NoInplaceReLU(Canonizer):
    r"""Set ``inplace=False`` on every ``nn.ReLU`` while canonized: Captum's module backward
    hooks reject modules that overwrite their input.

    Returns:
        A canonizer.

    Example::

        >>> relu = nn.Sequential(nn.ReLU(inplace=True))
        >>> with canonized(relu, [NoInplaceReLU()]):
        ...     relu[0].inplace
        False
    """

    def apply(self, model: nn.Module, undo: Undo) -> None:
        for module in model.modules():
            if isinstance(module, nn.ReLU) and module.inplace:
                module.inplace = False
                undo.append(functools.partial(setattr, module, "inplace", True))


def default_canonizers() -> list[Canonizer]:
    """The canonizers :class:`DeepTaylor3D` applies by default: BatchNorm folding and explicit
    residual sums.

    Returns:
        list of Canonizer: ``[MergeBatchNorm(), ResidualAddCanonizer()]``.

    Example::

        >>> [type(c).__name__ for c in default_canonizers()]
        ['MergeBatchNorm', 'ResidualAddCanonizer']
    """
    return [MergeBatchNorm(), ResidualAddCanonizer()]


@contextlib.contextmanager
def canonized(
    model: nn.Module, canonizers: Sequence[Canonizer] | None = None
) -> Iterator[nn.Module]:
    r"""Apply ``canonizers`` to ``model`` for the duration of a block, then restore it exactly.

    Args:
        model (nn.Module): the model to rewrite (in place, temporarily).
        canonizers (sequence of Canonizer, optional): what to apply, in order.
            Default: :func:`default_canonizers`

    Returns:
        A context manager yielding ``model``.

    Example::

        >>> from captum_video.models import load_torchvision_model
        >>> model = load_torchvision_model("r3d_18", num_classes=4)
        >>> with canonized(model):
        ...     logits = model(torch.rand(1, 3, 4, 32, 32))
    """
    undo: Undo = []
    try:
        with torch.no_grad():
            for canonizer in default_canonizers() if canonizers is None else canonizers:
                canonizer.apply(model, undo)
        yield model
    finally:
        with torch.no_grad():
            for step in reversed(undo):
                step()

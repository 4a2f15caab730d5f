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
* :class:`ConstantGateCanonizer` computes the gate of squeeze-excitation blocks (X3D's
  ``SqueezeExcitation`` from fvcore, torchvision's ``SqueezeExcitation``: ``x * gate(x)``)
  without gradient, so the gate is a constant multiplier and all relevance flows through ``x``.
  A product passes its full relevance to *each* factor, so a gate left in the graph would
  double it; treating the gate as constant is the standard LRP treatment of multiplicative
  gates (Arras et al. 2017, "Explaining Recurrent Neural Network Predictions in Sentiment
  Analysis", for LSTM gates).
* :class:`NoInplaceReLU` switches ``inplace`` off on ReLUs (Captum's module backward hooks
  reject in-place outputs).

All changes are made inside :func:`canonized`, which undoes them in reverse order on exit,
also on error. Nothing is written into the caller's tensors: new tensors are swapped in and
the original tensor objects are put back, so parameters and buffers come back bit for bit.
"""

from __future__ import annotations

import contextlib
import functools
import sys
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
    "ConstantGateCanonizer",
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


def _identity(x: Tensor) -> Tensor:
    return x


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
    bias 0), and while canonized its forward returns its input, so it costs nothing.
    Only BatchNorms in eval mode with running statistics can be folded; the model's output
    does not change.

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
        if "forward" not in vars(bn):
            # It computes the identity now: skip its arithmetic (forward and backward). The
            # input itself, not a view: an in-place ReLU on a view would make autograd copy.
            object.__setattr__(bn, "forward", _identity)
            undo.append(functools.partial(object.__delattr__, bn, "forward"))


def _explicit_sum(
    forward: ResidualForward, block: nn.Module, add: nn.Module
) -> Callable[..., Tensor]:
    def explicit(x: Tensor) -> Tensor:
        return forward(block, x, add)

    return explicit


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
        if block_types is not None and not isinstance(block_types, Mapping):
            raise TypeError(f"block_types must be a mapping or None, got {block_types!r}")
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
            object.__setattr__(module, "forward", _explicit_sum(forward, module, add))
            undo.append(functools.partial(object.__delattr__, module, "forward"))


GateForward = Callable[[nn.Module, Tensor], Tensor]


def _fvcore_channel_gate(block: nn.Module, x: Tensor) -> Tensor:
    # fvcore.nn.SqueezeExcitation: x * block(mean of x over space (and time)).
    dims = [2, 3, 4] if block.is_3d else [2, 3]
    with torch.no_grad():
        gate = cast(nn.Module, block.block)(x.mean(dim=dims, keepdim=True))
    return x * gate


def _fvcore_spatial_gate(block: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        gate = cast(nn.Module, block.block)(x)
    return x * gate


def _torchvision_gate(block: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        gate = cast(Callable[[Tensor], Tensor], block._scale)(x)
    return gate * x


#: ``(module, class) -> forward(block, x)`` with the gate computed without gradient. Looked up
#: in ``sys.modules`` only: a model holding such a block has imported its package.
GATE_FORWARDS: dict[tuple[str, str], GateForward] = {
    ("fvcore.nn.squeeze_excitation", "SqueezeExcitation"): _fvcore_channel_gate,
    ("fvcore.nn.squeeze_excitation", "SpatialSqueezeExcitation"): _fvcore_spatial_gate,
    ("torchvision.ops.misc", "SqueezeExcitation"): _torchvision_gate,
}


class ConstantGateCanonizer(Canonizer):
    r"""Treat the gate of squeeze-excitation blocks as a constant: ``y = x * g`` with ``g``
    computed without gradient, so relevance flows through ``x`` only (``R_x = R_y``) and none
    into the gating branch.

    A product's gradient reaches both factors, so in the modified-gradient picture each factor
    would get the product's whole relevance and the block would double it. Treating the gate
    as a constant multiplier is the usual choice for multiplicative gates in LRP (Arras et al.
    2017 for LSTM gates); the gate still scales the value that flows on, so the explanation
    sees its effect. Blocks: fvcore's ``SqueezeExcitation`` (PyTorchVideo's X3D) and
    ``SpatialSqueezeExcitation``, torchvision's ``ops.misc.SqueezeExcitation``.

    Args:
        block_types (dict, optional): extra ``{block class: forward(block, x)}`` entries.
            Default: None

    Returns:
        A canonizer.

    Example::

        >>> from fvcore.nn.squeeze_excitation import SqueezeExcitation
        >>> se = SqueezeExcitation(8, is_3d=True)
        >>> x = torch.rand(1, 8, 2, 3, 3, requires_grad=True)
        >>> with canonized(se, [ConstantGateCanonizer()]):
        ...     y = se(x)
        >>> torch.allclose((x * torch.autograd.grad(y.sum(), x)[0]).sum(), y.sum())
        True
    """

    def __init__(self, block_types: Mapping[type, GateForward] | None = None) -> None:
        if block_types is not None and not isinstance(block_types, Mapping):
            raise TypeError(f"block_types must be a mapping or None, got {block_types!r}")
        self.block_types = dict(block_types or {})

    def _table(self) -> dict[type, GateForward]:
        table: dict[type, GateForward] = {}
        for (module_name, class_name), forward in GATE_FORWARDS.items():
            found = getattr(sys.modules.get(module_name), class_name, None)
            if isinstance(found, type):
                table[found] = forward
        return {**table, **self.block_types}

    def apply(self, model: nn.Module, undo: Undo) -> None:
        table = self._table()
        if not table:
            return
        for module in list(model.modules()):
            forward = table.get(type(module))
            if forward is None or "forward" in vars(module):
                continue
            object.__setattr__(module, "forward", functools.partial(forward, module))
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
    """The canonizers :class:`DeepTaylor3D` applies by default: BatchNorm folding, explicit
    residual sums and constant squeeze-excitation gates.

    Returns:
        list of Canonizer: ``[MergeBatchNorm(), ResidualAddCanonizer(),
        ConstantGateCanonizer()]``.

    Example::

        >>> [type(c).__name__ for c in default_canonizers()]
        ['MergeBatchNorm', 'ResidualAddCanonizer', 'ConstantGateCanonizer']
    """
    return [MergeBatchNorm(), ResidualAddCanonizer(), ConstantGateCanonizer()]


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
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    chosen = default_canonizers() if canonizers is None else list(canonizers)
    bad = [c for c in chosen if not isinstance(c, Canonizer)]
    if bad:
        raise TypeError(f"canonizers must be Canonizer instances, got {bad[0]!r}")
    undo: Undo = []
    try:
        with torch.no_grad():
            for canonizer in chosen:
                canonizer.apply(model, undo)
        yield model
    finally:
        with torch.no_grad():
            for step in reversed(undo):
                step()

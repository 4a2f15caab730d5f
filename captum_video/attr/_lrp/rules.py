r"""LRP / deep-Taylor propagation rules for 3-D (and 1-D/2-D) layers.

Every rule here is a Captum :class:`~captum.attr._utils.lrp_rules.PropagationRule`, so it can
be attached by hand (``module.rule = ZPlusRule()``) and used by Captum's own
:class:`~captum.attr.LRP`. Each rule also knows how to express itself as a *modified gradient*:
:meth:`VideoLRPRule.modified_output` returns a tensor with the layer's output value whose
gradient implements the rule. :class:`~captum_video.attr.DeepTaylor3D` uses that to run LRP as
one forward and one backward pass.

The modified-gradient form works in the "gradient x input" picture of LRP: what flows
backwards is ``c = R / a`` (relevance over activation), and the relevance of any activation is
``a * c``. A z-rule with modified pre-activations ``z'`` (``R_i = x_i sum_j w'_ij R_j / z'_j``)
then is the gradient of ``z'(x) * (y / z').detach()``, whose value is the layer's output ``y``.
ReLU, average pooling, residual additions and max pooling (winner-take-all) need no change at
all in this picture: their plain gradient already is the LRP rule, which is why they cost
nothing in :class:`DeepTaylor3D`.

Denominators are stabilised as in Zennit: ``z + eps * sign(z)`` with ``sign(0) = 1``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from captum._utils.common import _format_tensor_into_tuples
from captum.attr._utils.lrp_rules import PropagationRule
from torch import Tensor, nn

__all__ = [
    "VideoLRPRule",
    "ZPlusRule",
    "ZBRule",
    "ZEpsilonRule",
    "stabilize",
]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_WEIGHTED = (*_CONV, nn.Linear)
_MAX_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
_ADAPTIVE_MAX_POOLS = (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)


def stabilize(z: Tensor, epsilon: float = 1e-6) -> Tensor:
    """Shift ``z`` away from zero by ``epsilon`` in the direction of its sign (0 counts as +).

    Args:
        z (Tensor): denominators.
        epsilon (float, optional): the shift. Default: 1e-6

    Returns:
        Tensor: ``z + epsilon * sign(z)`` with ``sign(0) = 1`` (as Zennit's ``stabilize``).

    Example::

        >>> stabilize(torch.tensor([0.0, -2.0]), 0.5)
        tensor([ 0.5000, -2.5000])
    """
    return torch.where(z < 0, z - epsilon, z + epsilon)


class _SwapGradient(torch.autograd.Function):
    """Returns ``y`` itself (no copy) while the gradient flows to ``z``, scaled by ``ratio``."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, y: Tensor, ratio: Tensor) -> Tensor:
        ctx.save_for_backward(ratio)
        ctx.mark_dirty(y)  # hand y out as a fresh output, so later in-place ops are allowed
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (ratio,) = ctx.saved_tensors
        return grad * ratio, None, None


def _rescaled(z: Tensor, y: Tensor, epsilon: float, nonnegative: bool = False) -> Tensor:
    """A tensor with exactly the value of ``y`` whose gradient is that of ``z`` scaled by
    ``y / z``: the modified-gradient form of a z-rule with pre-activations ``z``.
    ``nonnegative`` says ``z >= 0`` is known, which makes the stabiliser a plain ``+ eps``."""
    zd = z.detach()
    ratio = y.detach() / (zd + epsilon if nonnegative else stabilize(zd, epsilon))
    return cast(Tensor, _SwapGradient.apply(z, y.detach(), ratio))


def _forward_with(module: nn.Module, x: Tensor, weight: Tensor) -> Tensor:
    """The module's linear map with another weight and no bias."""
    if isinstance(module, _CONV):
        return module._conv_forward(x, weight, None)  # handles padding modes
    if isinstance(module, nn.Linear):
        return F.linear(x, weight)
    raise TypeError(f"rule needs a Conv1d/2d/3d or Linear module, got {type(module).__name__}")


def _without_bias(module: nn.Module, y: Tensor) -> Tensor:
    bias = getattr(module, "bias", None)
    if bias is None:
        return y
    if isinstance(module, nn.Linear):
        return y - bias.detach()
    return y - bias.detach().view(1, -1, *([1] * (y.dim() - 2)))


def _channel_dim(module: nn.Module) -> int:
    return -1 if isinstance(module, nn.Linear) else 1


class VideoLRPRule(PropagationRule):
    r"""Base class of the rules in this module: a Captum ``PropagationRule`` that can also act
    as a modified gradient.

    Subclasses implement :meth:`modified_output`; :meth:`needs_hook` says whether the rule
    differs from the plain gradient for a module (when it does not, no hook is needed).
    Relevance buffers are per instance (Captum's are class-level dicts shared by all rules).

    Args:
        stabilizer (float, optional): ``eps`` of the denominators. Default: 1e-6

    Returns:
        A rule; attach it with ``module.rule = rule`` for Captum's ``LRP``.

    Example::

        >>> rule = ZPlusRule()
        >>> conv = nn.Conv3d(3, 4, 3)
        >>> rule.needs_hook(conv)
        True
    """

    #: Whether the rule adds relevance through :meth:`input_leaves` (z^B, flat), so that
    #: :class:`~captum_video.attr.DeepTaylor3D` needs its layer to read a model input.
    reads_model_input: bool = False

    def __init__(self, stabilizer: float = 1e-6) -> None:
        if (
            isinstance(stabilizer, bool)
            or not isinstance(stabilizer, (int, float))
            or not math.isfinite(stabilizer)
            or stabilizer < 0
        ):
            raise ValueError(f"stabilizer must be a finite number >= 0, got {stabilizer!r}")
        self.stabilizer = float(stabilizer)
        # Captum's class-level dicts would be shared across all rules and calls.
        self.relevance_input: dict[Any, Any] = {}
        self.relevance_output: dict[Any, Any] = {}

    def needs_hook(self, module: nn.Module) -> bool:
        """Whether the rule differs from the plain gradient on ``module``."""
        return True

    def input_leaves(self) -> tuple[Tensor, ...]:
        """Extra leaf tensors, shaped like the layer's input, made by the last
        :meth:`modified_output` call: the relevance of the input is ``x * dx`` plus
        ``leaf * d leaf`` summed over them. Empty for rules whose relevance is ``x * dx``."""
        return ()

    def modified_output(
        self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor
    ) -> Tensor:
        """A tensor equal to ``output`` whose gradient w.r.t. ``inputs`` implements the rule.

        Args:
            module (nn.Module): the layer.
            inputs (tuple of Tensor): its inputs, as a forward hook receives them.
            output (Tensor): its output.

        Returns:
            Tensor: the replacement output.
        """
        return output

    # -- Captum's two-pass machinery ---------------------------------------------------------
    def forward_hook(self, module: nn.Module, inputs: Any, outputs: Tensor) -> Tensor:
        """Captum's second-pass forward hook, with the layer's rule as its gradient."""
        inputs = cast(tuple[Tensor, ...], _format_tensor_into_tuples(inputs))
        return super().forward_hook(module, inputs, self.modified_output(module, inputs, outputs))

    def _manipulate_weights(self, module: nn.Module, inputs: Any, outputs: Any) -> None:
        # Weights are never changed in place: the modified output carries the rule.
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(stabilizer={self.stabilizer:g})"


class ZPlusRule(VideoLRPRule):
    r"""The z+ rule of deep Taylor decomposition for Conv1d/2d/3d and Linear layers.

    ``R_i = sum_j x_i w+_ij / sum_i' x_i' w+_i'j * R_j``, biases ignored, so relevance is
    conserved exactly (up to neurons whose denominator is zero). Inputs that can be negative
    are handled as Zennit's ``ZPlus`` / alpha=1, beta=0 does: the negative parts of inputs pair
    with the negative weights. With non-negative inputs this is Captum's ``Alpha1_Beta0_Rule``
    with ``set_bias_to_zero=True``.

    Args:
        stabilizer (float, optional): ``eps`` of the denominators. Default: 1e-6

    Returns:
        A rule for Conv and Linear layers.

    Example::

        >>> from captum.attr import LRP
        >>> model = nn.Sequential(nn.Conv3d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
        >>> for m in (model[0], model[3]):
        ...     m.rule = ZPlusRule()
        >>> model[2].rule = ProportionalRule()
        >>> LRP(model).attribute(torch.rand(1, 3, 3, 3, 3), target=0).shape
        torch.Size([1, 3, 3, 3, 3])
    """

    def modified_output(
        self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor
    ) -> Tensor:
        x = inputs[0]
        weight = cast(Tensor, module.weight).detach()
        if bool(x.detach().min() < 0):
            z = _forward_with(module, x.clamp(min=0), weight.clamp(min=0)) + _forward_with(
                module, x.clamp(max=0), weight.clamp(max=0)
            )
            return _rescaled(z, output, self.stabilizer)
        # The common case after a ReLU: one extra linear map, and z >= 0.
        z = _forward_with(module, x, weight.clamp(min=0))
        return _rescaled(z, output, self.stabilizer, nonnegative=True)


class ZEpsilonRule(VideoLRPRule):
    r"""The epsilon rule ``R_i = sum_j x_i w_ij / (z_j + eps sign z_j) * R_j`` (bias in ``z``).

    Unlike Captum's ``EpsilonRule`` it also works as a modified gradient (for
    :class:`DeepTaylor3D`) and costs no extra forward there.

    Args:
        stabilizer (float, optional): ``eps``. Default: 1e-6

    Returns:
        A rule for Conv and Linear layers.

    Example::

        >>> lin = nn.Linear(4, 2)
        >>> out = ZEpsilonRule(0.1).modified_output(lin, (torch.rand(1, 4),), lin(torch.rand(1, 4)))
        >>> out.shape
        torch.Size([1, 2])
    """

    def modified_output(
        self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor
    ) -> Tensor:
        return _rescaled(output, output, self.stabilizer)


class ZBRule(VideoLRPRule):
    r"""The z^B (bounded-input) rule of deep Taylor decomposition, for the first layer.

    ``z_j = sum_i x_i w_ij - l_i w+_ij - h_i w-_ij`` and
    ``R_i = x_i (W s)_i - l_i (W+ s)_i - h_i (W- s)_i`` with ``s = R / z``, for inputs known to
    lie in ``[l, h]`` (per channel). Biases are ignored, so relevance is conserved. Use
    :func:`~captum_video.registry.bounds_from_normalization` for normalised inputs.

    As a modified gradient the ``l`` and ``h`` terms come out as the gradients of two extra leaf
    tensors (:attr:`bound_leaves`, set by the last :meth:`modified_output` call); the relevance
    of the input is ``x * dx + l * dl + h * dh``. Under Captum's ``LRP`` the input hook adds
    those terms itself.

    Args:
        low (float, sequence or Tensor): lowest input value, scalar or per channel.
        high (float, sequence or Tensor): highest input value, scalar or per channel.
        stabilizer (float, optional): ``eps`` of the denominators. Default: 1e-6

    Returns:
        A rule for Conv and Linear layers.

    Example::

        >>> from captum_video.registry import bounds_from_normalization
        >>> rule = ZBRule(*bounds_from_normalization([0.45] * 3, [0.225] * 3))
        >>> rule.low.shape
        torch.Size([3])
    """

    reads_model_input = True

    def __init__(
        self,
        low: float | Sequence[float] | Tensor = 0.0,
        high: float | Sequence[float] | Tensor = 1.0,
        stabilizer: float = 1e-6,
    ) -> None:
        super().__init__(stabilizer)
        self.low = torch.as_tensor(low, dtype=torch.float32).detach().flatten()
        self.high = torch.as_tensor(high, dtype=torch.float32).detach().flatten()
        if self.low.shape != self.high.shape:
            raise ValueError(
                f"low and high need the same number of channels, got {self.low.numel()} "
                f"and {self.high.numel()}"
            )
        if bool((self.low > self.high).any()):
            raise ValueError(
                f"need low <= high, got low={self.low.tolist()}, high={self.high.tolist()}"
            )
        self.bound_leaves: tuple[Tensor, Tensor] | None = None
        self._captum_state: dict[str, Any] = {}

    def input_leaves(self) -> tuple[Tensor, ...]:
        """The bound leaves ``(l, h)`` of the last :meth:`modified_output` call."""
        return () if self.bound_leaves is None else self.bound_leaves

    def bound_tensors(self, module: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
        """``l`` and ``h`` broadcast to the shape of ``x`` (per channel along its channel axis)."""
        dim = _channel_dim(module) % x.dim()
        channels = x.shape[dim]
        if self.low.numel() not in (1, channels):
            raise ValueError(
                f"z^B bounds have {self.low.numel()} channels but the first layer's input has "
                f"{channels} (shape {tuple(x.shape)})"
            )
        shape = [1] * x.dim()
        shape[dim] = -1 if self.low.numel() > 1 else 1
        low = self.low.to(x).view(shape).expand_as(x).contiguous()
        high = self.high.to(x).view(shape).expand_as(x).contiguous()
        return low, high

    def _bound_term(self, module: nn.Module, low: Tensor, high: Tensor) -> Tensor:
        # One linear map over [l, h] stacked on channels: W+ l + W- h.
        weight = cast(Tensor, module.weight).detach()
        dim = _channel_dim(module)
        stacked_w = torch.cat([weight.clamp(min=0), weight.clamp(max=0)], dim=1)
        return _forward_with(module, torch.cat([low, high], dim=dim), stacked_w)

    def modified_output(
        self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor
    ) -> Tensor:
        low, high = self.bound_tensors(module, inputs[0])
        low.requires_grad_(True)
        high.requires_grad_(True)
        self.bound_leaves = (low, high)
        z = _without_bias(module, output) - self._bound_term(module, low, high)
        return _rescaled(z, output, self.stabilizer)

    # -- Captum's two-pass machinery: add the l and h terms in the input hook ------------------
    def forward_hook(self, module: nn.Module, inputs: Any, outputs: Tensor) -> Tensor:
        inputs = cast(tuple[Tensor, ...], _format_tensor_into_tuples(inputs))
        low, high = self.bound_tensors(module, inputs[0])
        z = _without_bias(module, outputs) - self._bound_term(module, low, high)
        z.register_hook(lambda grad: self._captum_state.__setitem__("s", grad))
        self._captum_state.update(module=module, low=low, high=high)
        return PropagationRule.forward_hook(
            self, module, inputs, _rescaled(z, outputs, self.stabilizer)
        )

    def _create_backward_hook_input(self, inputs: Tensor) -> Any:
        def _backward_hook_input(grad: Tensor) -> Tensor:
            state = self._captum_state
            low, high = (t.detach().requires_grad_(True) for t in (state["low"], state["high"]))
            with torch.enable_grad():
                term = self._bound_term(state["module"], low, high)
                d_low, d_high = torch.autograd.grad(term, (low, high), state["s"])
            relevance = grad * inputs - low.detach() * d_low - high.detach() * d_high
            self.relevance_input[grad.device] = relevance.data
            grad.replace_out = relevance  # type: ignore[attr-defined]  # read by Captum's ReLU hook
            return relevance

        return _backward_hook_input

    def __repr__(self) -> str:
        return f"ZBRule(low={self.low.tolist()}, high={self.high.tolist()})"

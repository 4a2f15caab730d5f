r"""The rules LRP composites add to z+ / z^B: gamma (convolutions) and flat (the input layer).

Both follow Montavon et al. 2019, "Layer-Wise Relevance Propagation: An Overview" (gamma, and
the layer-dependent choice of rules), and Kohlbrenner et al. 2020, "Towards Best Practice in
Explaining Neural Network Decisions with LRP" (flat on the input layer), in the form Zennit
implements them (``zennit.rules.Gamma``, ``zennit.rules.Flat``), and are modified gradients like
the rules of :mod:`captum_video.attr._lrp.rules`: :meth:`~VideoLRPRule.modified_output` returns a
tensor with the layer's output value whose gradient implements the rule.

Cost. The gamma rule needs the positive contributions ``P = x+ * w+ + x- * w-`` of every output
(one extra linear map, two where inputs can be negative): with them, the pre-activations of
positive outputs are ``z+ = y + gamma (P + b+)`` and those of negative outputs
``z- = y + gamma (N + b-)`` with ``N = y - b - P``. Its gradient needs the transposed map of
``w + gamma w+`` for positive outputs and of ``w + gamma w-`` for negative ones; a custom
autograd step skips the second whenever no relevance reaches negative outputs (every conv
followed by a ReLU), so such layers cost what a z+ layer costs: one extra forward and one
transposed map. Flat needs a convolution of ones with ones, which only the input layer pays.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from captum._utils.common import _format_tensor_into_tuples
from captum.attr._utils.lrp_rules import PropagationRule
from torch import Tensor, nn

from captum_video.attr._lrp.rules import (
    VideoLRPRule,
    _forward_with,
    _rescaled,
    _without_bias,
)

__all__ = ["GammaRule", "FlatRule"]


class _GammaGradient(torch.autograd.Function):
    """Returns ``y`` (no copy). The gradient ``g`` goes to ``a`` as ``g * ratio`` and, at
    negative outputs, to ``y`` (the layer's own map) as ``-(2 + gamma) g * ratio``; where that
    is all zero autograd gets ``None``, which skips the layer's own transposed map."""

    @staticmethod
    def forward(
        ctx: Any,
        a: Tensor,
        y_graph: Tensor,
        y: Tensor,
        ratio: Tensor,
        positive: Tensor,
        factor: float,
    ) -> Tensor:
        ctx.save_for_backward(ratio, positive)
        ctx.factor = factor
        ctx.mark_dirty(y)  # hand y out as a fresh output, so later in-place ops are allowed
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        ratio, positive = ctx.saved_tensors
        grad_a = grad * ratio
        grad_y = grad_a.masked_fill(positive, 0.0)
        # max/min: far cheaper than any() on float tensors on the CPU.
        if bool(grad_y.max() != 0) or bool(grad_y.min() != 0):
            return grad_a, grad_y.mul_(ctx.factor), None, None, None, None
        return grad_a, None, None, None, None, None


def _channel_constant(module: nn.Module, value: Tensor, like: Tensor) -> Tensor:
    return value if isinstance(module, nn.Linear) else value.view(1, -1, *([1] * (like.dim() - 2)))


class GammaRule(VideoLRPRule):
    r"""The (generalised) LRP-gamma rule for Conv1d/2d/3d and Linear layers.

    Positive contributions are favoured by ``gamma``: for an output ``y_j > 0``,
    ``R_i = sum_j x_i (w_ij + gamma w+_ij) / z+_j * R_j`` with
    ``z+_j = sum_i x_i (w_ij + gamma w+_ij) + b_j + gamma b+_j`` (for inputs ``x_i < 0`` the
    weight is ``w_ij + gamma w-_ij``, so it is always the *positive* contributions that grow),
    and for ``y_j < 0`` the negative contributions grow instead (Montavon et al. 2019,
    "Layer-Wise Relevance Propagation: An Overview"; generalised to inputs of both signs as
    Zennit's ``Gamma`` is). ``gamma = 0`` is LRP-0 and
    ``gamma -> inf`` tends to z+; the bias takes its share ``(b_j + gamma b+-_j) / z_j`` of
    ``R_j``, so relevance is conserved in bias-free layers.

    Args:
        gamma (float, optional): weight of the positive (negative) contributions. Default: 0.25
            (Zennit's default; Montavon et al. use values of this order for middle layers)
        stabilizer (float, optional): ``eps`` of the denominators. Default: 1e-6

    Returns:
        A rule for Conv and Linear layers, usable by :class:`~captum_video.attr.DeepTaylor3D`
        and (attached as ``module.rule``) by Captum's ``LRP``.

    Example::

        >>> conv = nn.Conv3d(3, 4, 3)
        >>> x = torch.rand(1, 3, 4, 6, 6, requires_grad=True)
        >>> out = GammaRule(0.25).modified_output(conv, (x,), conv(x))
        >>> torch.equal(out, conv(x))
        True
    """

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-6) -> None:
        super().__init__(stabilizer)
        if not gamma >= 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)

    def modified_output(
        self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor
    ) -> Tensor:
        x, g, eps = inputs[0], self.gamma, self.stabilizer
        weight = cast(Tensor, module.weight).detach()
        up = weight + g * weight.clamp(min=0)
        # a = sum_i x_i w'_ij with the weights of positive outputs: w + g w+ for x >= 0 and
        # w + g w- for x < 0 (the positive contributions grow).
        if bool(x.detach().min() < 0):
            down = weight + g * weight.clamp(max=0)
            a = _forward_with(module, x.clamp(min=0), up) + _forward_with(
                module, x.clamp(max=0), down
            )
        else:
            a = _forward_with(module, x, up)
        # Negative outputs use w + g w- = (2 + g) w - (w + g w+) on x >= 0 (and the mirror on
        # x < 0): their pre-activation is (2 + g) (y - b) - a. Biases and the stabiliser are
        # per-channel constants (z+ >= y >= 0 and z- <= y < 0, so sign(z) = sign(y)):
        # z+ = a + b + g b+ + eps, z- = (2 + g) y - a - (1 + g) b + g b- - eps.
        bias = getattr(module, "bias", None)
        b = torch.zeros(weight.shape[0]) if bias is None else bias.detach()
        b = b.to(output)
        c_pos = _channel_constant(module, b + g * b.clamp(min=0) + eps, output)
        c_neg = _channel_constant(module, g * b.clamp(max=0) - (1 + g) * b - eps, output)
        with torch.no_grad():
            y = output.detach()
            positive = y >= 0
            # ratio = y / z signed so that a's gradient is g * ratio everywhere: the
            # denominator is z+ at positive outputs and a - (2 + g) y - c_neg = -z- elsewhere.
            denominator = torch.where(positive, a + c_pos, a - torch.add(c_neg, y, alpha=2 + g))
            ratio = y / denominator
        return cast(Tensor, _GammaGradient.apply(a, output, y, ratio, positive, -(2 + g)))

    def __repr__(self) -> str:
        return f"GammaRule(gamma={self.gamma:g}, stabilizer={self.stabilizer:g})"


class FlatRule(VideoLRPRule):
    r"""The flat rule: each output's relevance spreads uniformly over its receptive field,
    ``R_i = sum_j 1 / n_j * R_j`` with ``n_j`` the number of inputs (padding excluded) that
    output ``j`` reads, whatever the weights and inputs (Lapuschkin et al. 2019, "Unmasking
    Clever Hans predictors"; the input-layer rule of Zennit's ``EpsilonPlusFlat`` and of
    Kohlbrenner et al. 2020). Biases are ignored, so relevance is conserved.

    The relevance of the input does not scale with the input, so it cannot be written as
    ``x * gradient``: as a modified gradient the rule routes it through an extra leaf of ones
    (:attr:`ones_leaf`, set by the last :meth:`modified_output` call), and the relevance of the
    layer's input is ``ones * d ones``. :class:`~captum_video.attr.DeepTaylor3D` therefore
    accepts it only on layers that read a model input (the first layer). Under Captum's ``LRP``
    the input hook returns that relevance itself, so there it works on any layer.

    Args:
        stabilizer (float, optional): ``eps`` of the denominators. Default: 1e-6

    Returns:
        A rule for Conv and Linear layers.

    Example::

        >>> conv = nn.Conv3d(3, 4, 3, padding=1)
        >>> x = torch.rand(1, 3, 4, 6, 6)
        >>> rule = FlatRule()
        >>> out = rule.modified_output(conv, (x,), conv(x))
        >>> rule.input_leaves()[0].shape
        torch.Size([1, 3, 4, 6, 6])
    """

    reads_model_input = True

    def __init__(self, stabilizer: float = 1e-6) -> None:
        super().__init__(stabilizer)
        self.ones_leaf: Tensor | None = None
        self._captum_state: dict[str, Any] = {}

    def input_leaves(self) -> tuple[Tensor, ...]:
        """The leaf of ones whose ``leaf * gradient`` is the relevance of the layer's input."""
        return () if self.ones_leaf is None else (self.ones_leaf,)

    @staticmethod
    def _counts(module: nn.Module, ones: Tensor) -> Tensor:
        weight = cast(Tensor, module.weight)
        return _forward_with(module, ones, torch.ones_like(weight, dtype=ones.dtype))

    def modified_output(
        self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor
    ) -> Tensor:
        ones = torch.ones_like(inputs[0].detach()).requires_grad_(True)
        self.ones_leaf = ones
        return _rescaled(self._counts(module, ones), output, self.stabilizer, nonnegative=True)

    # -- Captum's two-pass machinery: the input hook returns the flat relevance ----------------
    def forward_hook(self, module: nn.Module, inputs: Any, outputs: Tensor) -> Tensor:
        inputs = cast(tuple[Tensor, ...], _format_tensor_into_tuples(inputs))
        counts = self._counts(module, torch.ones_like(inputs[0].detach()))
        # The layer's own map carries the gradient to the input (so its hook fires); the
        # value of s = R / n is caught on the way.
        z = counts + 0 * _without_bias(module, outputs)
        z.register_hook(lambda grad: self._captum_state.__setitem__("s", grad))
        self._captum_state["module"] = module
        return PropagationRule.forward_hook(
            self, module, inputs, _rescaled(z, outputs, self.stabilizer, nonnegative=True)
        )

    def _create_backward_hook_input(self, inputs: Tensor) -> Any:
        def _backward_hook_input(grad: Tensor) -> Tensor:
            state = self._captum_state
            ones = torch.ones_like(inputs).requires_grad_(True)
            with torch.enable_grad():
                (relevance,) = torch.autograd.grad(
                    self._counts(state["module"], ones), ones, state["s"]
                )
            self.relevance_input[grad.device] = relevance.data
            grad.replace_out = relevance  # type: ignore[attr-defined]  # read by Captum's ReLU hook
            return relevance

        return _backward_hook_input

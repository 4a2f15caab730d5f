r"""Deep Taylor decomposition for 3-D CNNs as one forward and one backward pass.

:class:`DeepTaylor3D` is a Captum :class:`~captum.attr.LRP` subclass. Instead of Captum's
two forward passes, in-place weight changes and per-tensor hooks, it runs the (canonized) model
once with temporary forward hooks that swap each layer's output for a *modified-gradient* twin
(:meth:`~captum_video.attr.VideoLRPRule.modified_output`: same value, gradient = the LRP rule),
then takes one gradient to the input. Nothing is stored on the caller's modules, the caller's
tensors never get ``requires_grad``, and hooks and canonizers are removed in ``finally``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from captum._utils.common import (
    _format_additional_forward_args,
    _format_output,
    _run_forward,
    _select_targets,
)
from captum._utils.typing import TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr import LRP
from captum.attr._utils.custom_modules import Addition_Module
from captum.log import log_usage
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from captum_video._validation import format_video_inputs, removing_hooks, resolve_target
from captum_video.attr._lrp.canonizers import Canonizer, canonized, default_canonizers
from captum_video.attr._lrp.pass_rules import PassRule, ProportionalRule, WinnerTakeAllRule
from captum_video.attr._lrp.rules import (
    _ADAPTIVE_MAX_POOLS,
    _MAX_POOLS,
    _WEIGHTED,
    VideoLRPRule,
    ZBRule,
    ZPlusRule,
)
from captum_video.registry import bounds_from_normalization, normalization_of

__all__ = ["DeepTaylor3D", "Composite", "COMPOSITES"]

_ALL_MAX_POOLS = (*_MAX_POOLS, *_ADAPTIVE_MAX_POOLS)
_SUMS = (
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, Addition_Module,
)  # fmt: skip
_ELEMENTWISE = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Mish,
    nn.Softplus, nn.Tanh, nn.Sigmoid, nn.Hardtanh, _BatchNorm,
)  # fmt: skip

RuleMap = Sequence[tuple[tuple[type, ...], Callable[[], VideoLRPRule]]]


@dataclass(frozen=True)
class Composite:
    r"""Which rule each layer type gets, whether the first Conv/Linear gets z^B, and which
    canonizers run first. Types match with ``isinstance`` (subclasses included); the first
    entry that matches wins. Leaves with no parameters and no entry propagate the plain
    gradient (LRP-0 for linear operations such as flatten or dropout in eval mode).

    Args:
        layer_rules (sequence of (types, rule factory)): the rule table.
        first_layer_zb (bool, optional): give the first Conv/Linear that runs the z^B rule.
            Default: True
        canonizers (callable, optional): returns the canonizers to apply.
            Default: :func:`default_canonizers`

    Returns:
        A composite, for ``DeepTaylor3D(model, composite=...)``.

    Example::

        >>> comp = Composite(layer_rules=[((nn.Conv3d, nn.Linear), ZPlusRule)])
        >>> comp.first_layer_zb
        True
    """

    layer_rules: RuleMap
    first_layer_zb: bool = True
    canonizers: Callable[[], list[Canonizer]] = field(default=default_canonizers)

    def rule_for(self, module: nn.Module) -> VideoLRPRule | None:
        """A fresh rule for ``module`` from the table, or None."""
        for types, factory in self.layer_rules:
            if isinstance(module, types):
                return factory()
        return None


def _table(max_pool: Callable[[], VideoLRPRule]) -> RuleMap:
    return [
        (_WEIGHTED, ZPlusRule),
        (_ALL_MAX_POOLS, max_pool),
        (_SUMS, ProportionalRule),
        (_ELEMENTWISE, PassRule),
    ]


#: Named composites: z^B first layer, z+ elsewhere, max pooling winner-take-all (the April
#: 2019 torchexplain form) or proportional (2020+); "zplus" has no z^B layer (for models that
#: normalise inside, or unbounded inputs).
COMPOSITES: dict[str, Composite] = {
    "zplus-zb": Composite(_table(WinnerTakeAllRule)),
    "zplus-zb-proportional": Composite(_table(ProportionalRule)),
    "zplus": Composite(_table(WinnerTakeAllRule), first_layer_zb=False),
}


class _Call:
    """Per-call bookkeeping: which rule each module got, the z^B leaves and their input."""

    def __init__(
        self, composite: Composite, bounds: tuple[Tensor, Tensor], leaves: tuple[Tensor, ...]
    ):
        self.composite = composite
        self.bounds = bounds
        self.leaves = leaves
        self.rules: dict[nn.Module, VideoLRPRule | None] = {}
        self.first_seen = not composite.first_layer_zb
        self.zb: ZBRule | None = None
        self.zb_input = -1

    def rule_for(self, module: nn.Module) -> VideoLRPRule | None:
        if module in self.rules:
            return self.rules[module]
        user_rule = getattr(module, "rule", None)
        rule: VideoLRPRule | None
        if user_rule is not None and not isinstance(user_rule, VideoLRPRule):
            raise TypeError(
                f"{type(module).__name__} carries a Captum rule {type(user_rule).__name__}; "
                "DeepTaylor3D needs a captum_video VideoLRPRule (e.g. ZPlusRule, ZEpsilonRule)"
            )
        if isinstance(module, _WEIGHTED) and not self.first_seen:
            self.first_seen = True
            if user_rule is None:
                self.zb = ZBRule(*self.bounds)
                user_rule = self.zb
        rule = user_rule if user_rule is not None else self.composite.rule_for(module)
        self.rules[module] = rule
        return rule


class DeepTaylor3D(LRP):
    r"""Deep Taylor decomposition (z+ / z^B LRP) for 3-D CNNs, as a Captum ``LRP`` subclass.

    Relevance starts at the target logit and is propagated with the z^B rule in the first
    Conv/Linear layer (bounds from the model's input normalisation), z+ in all other Conv and
    Linear layers, relevance proportional to inputs at average pooling and residual sums,
    winner-take-all (or proportional) max pooling, and pass-through at ReLU. BatchNorm is
    folded into the preceding convolution and residual sums of torchvision's video ResNets are
    made explicit (:mod:`~captum_video.attr._lrp.canonizers`), so input relevance sums to the
    target logit (z+ and z^B ignore biases; the convergence delta reports what is lost at
    zero denominators). Models with biases are fine: a bias's share of a neuron's value is
    redistributed to the neuron's inputs.

    The whole computation is one forward and one backward pass (each rule is a modified
    gradient, see :class:`~captum_video.attr.VideoLRPRule`); rules set by hand as
    ``module.rule = <VideoLRPRule>`` override the composite for that module.

    Args:
        model (nn.Module): a classifier taking ``(N, C, T, H, W)`` clips; use it in eval mode.
        first_layer_bounds (optional): input bounds for the z^B rule: ``None`` derives them
            from the normalisation the architecture registry knows for the model
            (torchvision video ResNets/S3D: Kinetics; MViT, Swin3D: their presets; unknown
            models: ``[0, 1]``), a preset name of
            :data:`captum_video.registry.NORMALIZATION_PRESETS` (``"kinetics"``, ``"none"``), or
            ``(low, high)`` with floats or per-channel sequences/tensors
            (see :func:`bounds_from_normalization`). Default: None
        composite (str or Composite, optional): ``"zplus-zb"`` (winner-take-all max pooling),
            ``"zplus-zb-proportional"`` (proportional max pooling), ``"zplus"`` (no z^B), or a
            :class:`Composite`. Default: ``"zplus-zb"``

    Returns:
        An attribution object; :meth:`attribute` gives relevance shaped like the input.

    Example::

        >>> from captum_video.models import load_demo_model
        >>> model = load_demo_model("motion")
        >>> dt = DeepTaylor3D(model)
        >>> clip = torch.rand(2, 3, 16, 32, 32)
        >>> relevance, delta = dt.attribute(clip, target=0, return_convergence_delta=True)
        >>> relevance.shape
        torch.Size([2, 3, 16, 32, 32])
    """

    def __init__(
        self,
        model: nn.Module,
        first_layer_bounds: Any = None,
        composite: str | Composite = "zplus-zb",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        super().__init__(model)
        if isinstance(composite, str):
            if composite not in COMPOSITES:
                raise ValueError(
                    f"unknown composite {composite!r}; choose one of {sorted(COMPOSITES)}"
                )
            composite = COMPOSITES[composite]
        if not isinstance(composite, Composite):
            raise TypeError(
                f"composite must be a name or a Composite, got {type(composite).__name__}"
            )
        self.composite = composite
        self.first_layer_bounds = self._resolve_bounds(model, first_layer_bounds)

    @staticmethod
    def _resolve_bounds(model: nn.Module, bounds: Any) -> tuple[Tensor, Tensor]:
        if bounds is None or isinstance(bounds, str):
            return bounds_from_normalization(normalization_of(model) if bounds is None else bounds)
        if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
            raise TypeError(
                "first_layer_bounds must be None, a preset name or a (low, high) pair, got "
                f"{bounds!r}"
            )
        rule = ZBRule(bounds[0], bounds[1])  # validates shapes and low <= high
        return rule.low, rule.high

    def _hook(self, call: _Call, name: str, verbose: bool) -> Callable[..., Tensor | None]:
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor | None:
            new = module not in call.rules
            rule = call.rule_for(module)
            if verbose and new:
                print(f"DeepTaylor3D: {name or type(module).__name__} -> {rule or 'gradient'}")
            if rule is None:
                if any(True for _ in module.parameters(recurse=False)):
                    raise TypeError(
                        f"DeepTaylor3D has no rule for {type(module).__name__} ({name!r}); "
                        "attach one with module.rule = <VideoLRPRule> or pass a Composite "
                        "that covers it"
                    )
                return None
            active: VideoLRPRule = rule
            if active is call.zb:
                self._check_first_layer(call, module, inputs[0])
            if not active.needs_hook(module):
                return None
            return active.modified_output(module, inputs, output)

        return hook

    @staticmethod
    def _check_first_layer(call: _Call, module: nn.Module, x: Tensor) -> None:
        if call.zb_input >= 0:
            raise ValueError("the z^B first layer runs more than once; use composite='zplus'")
        index = next((i for i, leaf in enumerate(call.leaves) if leaf is x), -1)
        if index < 0:
            raise ValueError(
                f"the first layer ({type(module).__name__}) does not take a model input "
                "directly (does the model normalise inside?); z^B needs the raw input: use "
                "composite='zplus' or apply the normalisation outside the model"
            )
        call.zb_input = index
        assert call.zb is not None
        x = x.detach()
        low, high = call.zb.bound_tensors(module, x)
        # Slight excursions (noise from NoiseTunnel, codec overshoot) are harmless: z^B stays
        # conservative. Far outside means the bounds do not match the input normalisation.
        tol = 0.25 * (high - low)
        if bool(((x < low - tol) | (x > high + tol)).any()):
            raise ValueError(
                f"inputs lie outside the z^B bounds low={call.zb.low.tolist()}, "
                f"high={call.zb.high.tolist()} (input range [{float(x.min()):.3g}, "
                f"{float(x.max()):.3g}]); pass first_layer_bounds matching the model's "
                "input normalisation (a preset such as 'kinetics' or 'none', or (low, high))"
            )

    @log_usage(part_of_slo=True)
    def attribute(  # type: ignore[override]
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
        verbose: bool = False,
    ) -> TensorOrTupleOfTensorsGeneric | tuple[TensorOrTupleOfTensorsGeneric, Tensor]:
        r"""Deep Taylor relevance of every input voxel for ``target``.

        Args:
            inputs (Tensor or tuple of Tensor): clips ``(N, C, T, H, W)`` (a tuple for models
                with several inputs; the first must be a clip).
            target (int, tuple, Tensor or list, optional): output indices, as in Captum;
                ``None`` explains each clip's predicted class (the argmax of the model's
                output). Default: None
            additional_forward_args (Any, optional): extra model arguments, not attributed.
                Default: None
            return_convergence_delta (bool, optional): also return ``target logit - sum of
                relevance`` per example. Default: False
            verbose (bool, optional): print the rule each layer gets. Default: False

        Returns:
            *Tensor* or *tuple of Tensor* of **attributions** (input-shaped; unlike Captum's
            ``LRP`` they sum to the target logit, not to 1), and the **delta** ``(N,)`` when
            ``return_convergence_delta`` is set.

        Example::

            >>> dt = DeepTaylor3D(load_demo_model("motion"))
            >>> relevance = dt.attribute(torch.rand(1, 3, 16, 32, 32), target=2)
        """
        is_tuple, formatted = format_video_inputs(inputs)
        for i, tensor in enumerate(formatted):
            if not tensor.is_floating_point():
                raise TypeError(f"inputs[{i}] must be a floating-point tensor, got {tensor.dtype}")
        # Fresh leaves: the caller's tensors never get requires_grad or hooks.
        leaves = tuple(t.detach().requires_grad_(True) for t in formatted)
        additional = _format_additional_forward_args(additional_forward_args)
        call = _Call(self.composite, self.first_layer_bounds, leaves)
        with canonized(self.model, self.composite.canonizers()), removing_hooks() as handles:
            for name, module in self.model.named_modules():
                if next(module.children(), None) is None:
                    handles.append(module.register_forward_hook(self._hook(call, name, verbose)))
            with torch.enable_grad():
                output = _run_forward(self.model, leaves, None, additional)
                if not isinstance(output, Tensor):
                    raise TypeError(f"the model must return a tensor, got {type(output).__name__}")
                selected = _select_targets(output, resolve_target(output, target))
                extra = list(call.zb.bound_leaves) if call.zb and call.zb.bound_leaves else []
                grads = torch.autograd.grad(
                    selected, [*leaves, *extra], torch.ones_like(selected), allow_unused=True
                )
        relevance = [
            leaf.detach() * g if g is not None else torch.zeros_like(leaf)
            for leaf, g in zip(leaves, grads, strict=False)
        ]
        if extra:
            d_low, d_high = grads[len(leaves) :]
            low, high = (t.detach() for t in extra)
            bound_term = torch.zeros_like(low)
            for bound, g in ((low, d_low), (high, d_high)):
                if g is not None:
                    bound_term = bound_term + bound * g
            relevance[call.zb_input] = relevance[call.zb_input] + bound_term
        result = cast(TensorOrTupleOfTensorsGeneric, _format_output(is_tuple, tuple(relevance)))
        if not return_convergence_delta:
            return result
        logits = selected.detach().reshape(len(leaves[0]), -1).sum(1)
        return result, self.compute_convergence_delta(tuple(relevance), logits)

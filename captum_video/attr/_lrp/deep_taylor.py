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
from captum.log import log_usage
from torch import Tensor, nn

from captum_video._model_state import in_eval_mode, removing_hooks
from captum_video._targets import resolve_target
from captum_video._validation import format_video_inputs
from captum_video.attr._lrp.canonizers import canonized
from captum_video.attr._lrp.composites import COMPOSITES, Composite
from captum_video.attr._lrp.rules import _WEIGHTED, VideoLRPRule, ZBRule
from captum_video.registry import bounds_from_normalization, normalization_of

__all__ = ["DeepTaylor3D", "Composite", "COMPOSITES"]


#: Autograd nodes of operations that only copy, select or rearrange elements: relevance maps
#: through them with their transpose (each element of the result is one element of the input).
_COPY_NODES = frozenset(
    {
        "AliasBackward0", "CatBackward0", "CloneBackward0", "ExpandBackward0",
        "FlipBackward0", "IndexBackward0", "IndexSelectBackward0", "NarrowBackward0",
        "PermuteBackward0", "RepeatBackward0", "ReshapeAliasBackward0", "SelectBackward0",
        "SliceBackward0", "SplitBackward0", "SplitWithSizesBackward0", "SqueezeBackward0",
        "SqueezeBackward1", "SqueezeBackward2", "StackBackward0", "TBackward0",
        "TransposeBackward0", "UnbindBackward0", "UnsafeViewBackward0", "UnsqueezeBackward0",
        "ViewBackward0",
    }
)  # fmt: skip


class _Call:
    """Per-call bookkeeping: which rule each module got, and the rules of input layers
    (z^B, flat) with the model inputs each reads."""

    def __init__(
        self, composite: Composite, bounds: tuple[Tensor, Tensor], leaves: tuple[Tensor, ...]
    ):
        self.composite = composite
        self.bounds = bounds
        self.leaves = leaves
        self.rules: dict[nn.Module, VideoLRPRule | None] = {}
        self.first_seen = False
        #: (indices of the model inputs, rule, tensor it reads) of every input-layer rule.
        self.reading: list[tuple[tuple[int, ...], VideoLRPRule, Tensor]] = []

    def sources(self, x: Tensor) -> tuple[int, ...]:
        """Indices of the model inputs ``x`` is, or copies through selections, views and
        concatenations (SlowFast's frame selection, an adapter's permutation); () otherwise."""
        direct = next((i for i, leaf in enumerate(self.leaves) if leaf is x), -1)
        if direct >= 0:
            return (direct,)
        found: set[int] = set()
        stack, seen = [x.grad_fn], set()
        while stack:
            node = stack.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            if type(node).__name__ == "AccumulateGrad":
                variable = getattr(node, "variable", None)
                index = next((i for i, leaf in enumerate(self.leaves) if leaf is variable), -1)
                if index < 0:
                    return ()
                found.add(index)
            elif type(node).__name__ in _COPY_NODES:
                stack.extend(child for child, _ in node.next_functions)
            else:
                return ()
        return tuple(sorted(found))

    def _is_input_layer(self, module: nn.Module, x: Tensor) -> bool:
        if not isinstance(module, _WEIGHTED) or not self.composite.has_input_rule:
            return False
        if not self.first_seen:
            self.first_seen = True
            return True
        # Another clip read directly (a second pathway's stem) is an input layer too.
        if x.dim() != 5 or any(t is x for _, _, t in self.reading):
            return False
        return bool(self.sources(x))

    def _input_rule(self) -> VideoLRPRule:
        factory = self.composite.first_layer_rule
        return factory() if factory is not None else ZBRule(*self.bounds)

    def rule_for(self, module: nn.Module, x: Tensor) -> VideoLRPRule | None:
        if module in self.rules:
            return self.rules[module]
        user_rule = getattr(module, "rule", None)
        if user_rule is not None and not isinstance(user_rule, VideoLRPRule):
            raise TypeError(
                f"{type(module).__name__} carries a Captum rule {type(user_rule).__name__}; "
                "DeepTaylor3D needs a captum_video VideoLRPRule (e.g. ZPlusRule, ZEpsilonRule)"
            )
        rule: VideoLRPRule | None = user_rule
        if self._is_input_layer(module, x) and rule is None:
            rule = self._input_rule()
        if rule is None:
            rule = self.composite.rule_for(module)
        self.rules[module] = rule
        return rule


class DeepTaylor3D(LRP):
    r"""Deep Taylor decomposition and LRP composites for 3-D CNNs, as a Captum ``LRP`` subclass.

    Relevance starts at the target logit and is propagated layer by layer with the rules of a
    *composite* (:data:`~captum_video.attr.COMPOSITES`). The default, ``"zplus-zb"``, is deep
    Taylor decomposition as in the 2019 video paper: the z^B rule in the first Conv/Linear
    layer (bounds from the model's input normalisation), z+ in all other Conv and Linear
    layers. The ``"epsilon-*"`` composites are current LRP practice (Montavon et al. 2019,
    "Layer-Wise Relevance Propagation: An Overview"; Kohlbrenner et al. 2020, "Towards Best
    Practice in Explaining Neural Network Decisions with LRP"; Zennit's composites of the same
    names): epsilon on dense layers, gamma or z+ on convolutions, a box (z^B) or flat rule on
    the input layer. Everywhere relevance is proportional to inputs at average pooling and
    residual sums, winner-take-all (or proportional) at max pooling, and passes through
    element-wise layers (ReLU, Swish/SiLU, BatchNorm that cannot be folded).
    BatchNorm is folded into the preceding convolution, residual sums are made explicit and
    squeeze-excitation gates (X3D) act as constants (:mod:`~captum_video.attr._lrp.canonizers`).
    With z+ and z^B (which ignore biases) input relevance sums to the target logit up to
    what reaches zero denominators (neurons with no positive contribution, which the
    convergence delta reports); gamma and epsilon give each bias its share.

    Which composite. From ``benchmarks/results/quality.md`` on the motion demo model: share
    of positive relevance inside the object (mass), fade-deletion AUC (lower is better) and
    the randomisation check (Spearman correlation of the absolute map with that after randomising
    the classifier / every layer; lower is better, a model-blind map scores 1):

    =====================  ======  ========  ======  =======
    composite              mass    del fade  rho fc  rho all
    =====================  ======  ========  ======  =======
    ``zplus-zb``           0.53    0.50      0.98    0.85
    ``epsilon-gamma-box``  0.73    0.23      0.77    0.62
    ``epsilon-box``        0.62    0.20      0.78    0.45
    ``epsilon-plus``       0.79    0.53      0.76    0.67
    ``epsilon-plus-flat``  0.58    0.50      0.77    0.69
    =====================  ======  ========  ======  =======

    z+ maps barely depend on the weights (Sixt et al. 2020, "When Explanations Lie: Why Many
    Modified BP Attributions Fail"): keep ``"zplus-zb"`` to reproduce the deep Taylor video
    papers, not to audit a model. To check what a model uses, take ``"epsilon-box"``: the
    only composite below 0.5 after randomising every layer (0.45; on the appearance model
    0.73 against 0.83 for z+), and the best deletion score; above the input layer it is
    gradient x input, so its maps are less smooth (pointing 0.89). ``"epsilon-plus"`` gives
    the most object-focused maps (mass 0.79 / 0.80 / 0.92 on the three demo models) and
    ``"epsilon-gamma-box"`` sits between the two; both still keep about two thirds of their
    rank order when every weight is random, because gamma and z+ favour positive
    contributions, which ties the map to the input's structure.

    The whole computation is one forward and one backward pass (each rule is a modified
    gradient, see :class:`~captum_video.attr.VideoLRPRule`); rules set by hand as
    ``module.rule = <VideoLRPRule>`` override the composite for that module.
    Multi-pathway models (SlowFast) get the input-layer rule on every stem that reads the
    clip, also through a frame selection (copies hand their relevance back to the frames).

    Args:
        model (nn.Module): a classifier taking ``(N, C, T, H, W)`` clips; use it in eval mode.
        first_layer_bounds (optional): input bounds for the z^B rule: ``None`` derives them
            from the normalisation the architecture registry knows for the model
            (torchvision video ResNets/S3D: Kinetics; MViT, Swin3D: their presets; unknown
            models: ``[0, 1]``), a preset name of
            :data:`captum_video.registry.NORMALIZATION_PRESETS` (``"kinetics"``, ``"none"``), or
            ``(low, high)`` with floats or per-channel sequences/tensors
            (see :func:`~captum_video.registry.bounds_from_normalization`). Default: None
        composite (str or Composite, optional): ``"zplus-zb"`` (winner-take-all max pooling),
            ``"zplus-zb-proportional"`` (proportional max pooling), ``"zplus"`` (no z^B),
            ``"epsilon-gamma-box"``, ``"epsilon-box"``, ``"epsilon-plus"``,
            ``"epsilon-plus-flat"`` (see :mod:`~captum_video.attr._lrp.composites` for the
            table), or a :class:`Composite`. Default: ``"zplus-zb"``

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
            rule = call.rule_for(module, inputs[0])
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
            if active.reads_model_input:
                self._check_input_layer(call, module, active, inputs[0])
            if not active.needs_hook(module):
                return None
            return active.modified_output(module, inputs, output)

        return hook

    @staticmethod
    def _check_input_layer(call: _Call, module: nn.Module, rule: VideoLRPRule, x: Tensor) -> None:
        label = "z^B" if isinstance(rule, ZBRule) else type(rule).__name__
        if any(r is rule for _, r, _ in call.reading):
            raise ValueError(
                f"the {label} input layer ({type(module).__name__}) runs more than once; use "
                "composite='zplus' (or a composite without an input-layer rule)"
            )
        sources = call.sources(x)
        if not sources:
            raise ValueError(
                f"the first layer ({type(module).__name__}) does not take a model input "
                f"directly (does the model normalise inside?); the {label} rule needs the raw "
                "input: use composite='zplus' or apply the normalisation outside the model"
            )
        call.reading.append((sources, rule, x))
        if not isinstance(rule, ZBRule):
            return
        x = x.detach()
        low, high = rule.bound_tensors(module, x)
        # Slight excursions (noise from NoiseTunnel, codec overshoot) are harmless: z^B stays
        # conservative. Far outside means the bounds do not match the input normalisation.
        tol = 0.25 * (high - low)
        if bool(((x < low - tol) | (x > high + tol)).any()):
            raise ValueError(
                f"inputs lie outside the z^B bounds low={rule.low.tolist()}, "
                f"high={rule.high.tolist()} (input range [{float(x.min()):.3g}, "
                f"{float(x.max()):.3g}]); pass first_layer_bounds matching the model's "
                "input normalisation (a preset such as 'kinetics' or 'none', or (low, high))"
            )

    @staticmethod
    def _add_input_layer_relevance(
        call: _Call, relevance: list[Tensor], grads: Sequence[Tensor | None]
    ) -> None:
        """Input-layer rules (z^B, flat) add relevance through leaves of their own, in the
        space of the tensor they read; a copy of a model input hands it back through the
        copy's transpose (each copy of an element returns its share to the element)."""
        position = 0
        for sources, rule, x in call.reading:
            extra = torch.zeros_like(x.detach())
            for leaf in rule.input_leaves():
                g = grads[position]
                position += 1
                if g is not None:
                    extra = extra + leaf.detach() * g
            if len(sources) == 1 and x is call.leaves[sources[0]]:
                relevance[sources[0]] = relevance[sources[0]] + extra
                continue
            targets = [call.leaves[i] for i in sources]
            back = torch.autograd.grad(x, targets, extra, retain_graph=True, allow_unused=True)
            for i, g in zip(sources, back, strict=True):
                if g is not None:
                    relevance[i] = relevance[i] + g

    @log_usage(part_of_slo=True)
    @in_eval_mode
    def attribute(  # type: ignore[override]
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
        verbose: bool = False,
    ) -> TensorOrTupleOfTensorsGeneric | tuple[TensorOrTupleOfTensorsGeneric, Tensor]:
        r"""Deep Taylor relevance of every input voxel for ``target``.

        A model in train mode runs in eval mode for the call (with a warning; each module's
        mode is restored afterwards), so its BatchNorm statistics never change.

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
        is_tuple, formatted = format_video_inputs(inputs, model=self.model)
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
                extra = [leaf for _, rule, _ in call.reading for leaf in rule.input_leaves()]
                copied = any(len(src) > 1 or x is not leaves[src[0]] for src, _, x in call.reading)
                grads = torch.autograd.grad(
                    selected,
                    [*leaves, *extra],
                    torch.ones_like(selected),
                    allow_unused=True,
                    retain_graph=copied,
                )
                relevance = [
                    leaf.detach() * g if g is not None else torch.zeros_like(leaf)
                    for leaf, g in zip(leaves, grads, strict=False)
                ]
                self._add_input_layer_relevance(call, relevance, grads[len(leaves) :])
        result = cast(TensorOrTupleOfTensorsGeneric, _format_output(is_tuple, tuple(relevance)))
        if not return_convergence_delta:
            return result
        logits = selected.detach().reshape(len(leaves[0]), -1).sum(1)
        return result, self.compute_convergence_delta(tuple(relevance), logits)

r"""LRP composites: which rule each layer of a 3-D CNN gets.

A :class:`Composite` maps layer types to rule factories, names the rule of the input layer and
the canonizers to apply first. :data:`COMPOSITES` holds the named ones
:class:`~captum_video.attr.DeepTaylor3D` accepts:

=========================  ===========  ==================  ==================  ============
name                       input layer  Conv1d/2d/3d        Linear              max pooling
=========================  ===========  ==================  ==================  ============
``zplus-zb`` (default)     z^B          z+                  z+                  WTA
``zplus-zb-proportional``  z^B          z+                  z+                  proportional
``zplus``                  z+           z+                  z+                  WTA
``epsilon-gamma-box``      z^B          gamma (0.25)        epsilon (1e-6)      WTA
``epsilon-box``            z^B          epsilon (1e-6)      epsilon (1e-6)      WTA
``epsilon-plus``           z+           z+                  epsilon (1e-6)      WTA
``epsilon-plus-flat``      flat         z+                  epsilon (1e-6)      WTA
=========================  ===========  ==================  ==================  ============

Everywhere: relevance proportional to the inputs at average pooling and residual sums,
pass-through at element-wise layers (ReLU, Swish/SiLU, GELU, ..., BatchNorm that was not folded).
The ``epsilon-*`` composites are the layer-dependent practice of Montavon et al. 2019,
"Layer-Wise Relevance Propagation: An Overview" (epsilon at the top, gamma in the middle, a box
rule at the input) and Kohlbrenner et al. 2020, "Towards Best Practice in Explaining Neural
Network Decisions with LRP" (epsilon + z+, flat at the input), with Zennit's names
(``EpsilonGammaBox``, ``EpsilonPlus``, ``EpsilonPlusFlat``) and defaults. z+ in every layer is
deep Taylor decomposition as in the 2019 video paper; it is known to hardly depend on the
weights of deep layers (Sixt et al. 2020, "When Explanations Lie: Why Many Modified BP
Attributions Fail"), which the randomisation check of the quality benchmark shows.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from captum.attr._utils.custom_modules import Addition_Module
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from captum_video.attr._lrp.canonizers import Canonizer, default_canonizers
from captum_video.attr._lrp.composite_rules import FlatRule, GammaRule
from captum_video.attr._lrp.pass_rules import PassRule, ProportionalRule, WinnerTakeAllRule
from captum_video.attr._lrp.rules import (
    _ADAPTIVE_MAX_POOLS,
    _CONV,
    _MAX_POOLS,
    _WEIGHTED,
    VideoLRPRule,
    ZEpsilonRule,
    ZPlusRule,
)

__all__ = ["Composite", "COMPOSITES", "RuleMap"]

RuleMap = Sequence[tuple[tuple[type, ...], Callable[[], VideoLRPRule]]]


class _LoadedClasses(type):
    """``isinstance(m, C)`` is true for instances of the classes in ``C.paths`` whose modules
    are already imported. Optional packages are never imported here: a model holding one of
    their layers has imported them itself."""

    paths: tuple[tuple[str, str], ...] = ()

    def __instancecheck__(cls, instance: Any) -> bool:
        for module_name, class_name in cls.paths:
            found = getattr(sys.modules.get(module_name), class_name, None)
            if isinstance(found, type) and isinstance(instance, found):
                return True
        return False


class OptionalActivation(metaclass=_LoadedClasses):
    """Element-wise activations of optional packages: PyTorchVideo's ``Swish``
    (``x * sigmoid(x)``, in X3D; its autograd function has the Swish derivative, which is not
    a relevance rule)."""

    paths = (("pytorchvideo.layers.swish", "Swish"),)


_ALL_MAX_POOLS = (*_MAX_POOLS, *_ADAPTIVE_MAX_POOLS)
_SUMS = (
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, Addition_Module,
)  # fmt: skip
_ELEMENTWISE = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Mish,
    nn.Softplus, nn.Tanh, nn.Sigmoid, nn.Hardtanh, _BatchNorm, OptionalActivation,
)  # fmt: skip


@dataclass(frozen=True)
class Composite:
    r"""Which rule each layer type gets, which rule the input layer gets, and which
    canonizers run first. Types match with ``isinstance`` (subclasses included); the first
    entry that matches wins. Leaves with no parameters and no entry propagate the plain
    gradient (LRP-0 for linear operations such as flatten or dropout in eval mode).

    The *input layer* is the first Conv/Linear that runs, and any later one that reads
    another clip given to the model directly (a second pathway's stem).

    Args:
        layer_rules (sequence of (types, rule factory)): the rule table.
        first_layer_zb (bool, optional): give the input layer the z^B rule (bounds from
            ``DeepTaylor3D(first_layer_bounds=...)``). Default: True
        canonizers (callable, optional): returns the canonizers to apply.
            Default: :func:`default_canonizers`
        first_layer_rule (callable, optional): a factory of the input layer's rule (e.g.
            :class:`FlatRule`); when given it replaces z^B. Default: None

    Returns:
        A composite, for ``DeepTaylor3D(model, composite=...)``.

    Example::

        >>> comp = Composite(layer_rules=[((nn.Conv3d, nn.Linear), ZPlusRule)])
        >>> comp.first_layer_zb
        True
        >>> COMPOSITES["epsilon-gamma-box"].rule_for(nn.Conv3d(3, 4, 3))
        GammaRule(gamma=0.25, stabilizer=1e-06)
    """

    layer_rules: RuleMap
    first_layer_zb: bool = True
    canonizers: Callable[[], list[Canonizer]] = field(default=default_canonizers)
    first_layer_rule: Callable[[], VideoLRPRule] | None = None

    def __post_init__(self) -> None:
        entries = self.layer_rules if isinstance(self.layer_rules, (list, tuple)) else None
        if entries is None or not all(
            isinstance(e, tuple) and len(e) == 2 and callable(e[1]) for e in entries
        ):
            raise TypeError(
                "layer_rules must be a sequence of (module types, rule factory) pairs, got "
                f"{self.layer_rules!r}"
            )

    def rule_for(self, module: nn.Module) -> VideoLRPRule | None:
        """A fresh rule for ``module`` from the table, or None."""
        for types, factory in self.layer_rules:
            if isinstance(module, types):
                return factory()
        return None

    @property
    def has_input_rule(self) -> bool:
        """Whether the input layer gets a rule of its own (z^B or :attr:`first_layer_rule`)."""
        return self.first_layer_rule is not None or self.first_layer_zb


def _table(
    max_pool: Callable[[], VideoLRPRule],
    conv: Callable[[], VideoLRPRule] = ZPlusRule,
    dense: Callable[[], VideoLRPRule] = ZPlusRule,
) -> RuleMap:
    return [
        (_CONV, conv),
        (_WEIGHTED, dense),
        (_ALL_MAX_POOLS, max_pool),
        (_SUMS, ProportionalRule),
        (_ELEMENTWISE, PassRule),
    ]


#: Named composites (see the module docstring for the table). The three ``zplus*`` are deep
#: Taylor decomposition: z^B first layer, z+ elsewhere, max pooling winner-take-all (the April
#: 2019 torchexplain form) or proportional (2020+); "zplus" has no z^B layer (for models that
#: normalise inside, or unbounded inputs). The ``epsilon-*`` ones are the layer-dependent
#: composites of current LRP practice (Zennit's ``EpsilonGammaBox``, ``EpsilonPlus``,
#: ``EpsilonPlusFlat`` with their default gamma 0.25 and epsilon 1e-6); ``epsilon-box`` is
#: ``EpsilonGammaBox`` with gamma 0 (LRP-epsilon above a box input layer: gradient x input
#: above the first layer, as Montavon et al. 2019 note for LRP-0).
COMPOSITES: dict[str, Composite] = {
    "zplus-zb": Composite(_table(WinnerTakeAllRule)),
    "zplus-zb-proportional": Composite(_table(ProportionalRule)),
    "zplus": Composite(_table(WinnerTakeAllRule), first_layer_zb=False),
    "epsilon-gamma-box": Composite(_table(WinnerTakeAllRule, GammaRule, ZEpsilonRule)),
    "epsilon-box": Composite(_table(WinnerTakeAllRule, ZEpsilonRule, ZEpsilonRule)),
    "epsilon-plus": Composite(
        _table(WinnerTakeAllRule, ZPlusRule, ZEpsilonRule), first_layer_zb=False
    ),
    "epsilon-plus-flat": Composite(
        _table(WinnerTakeAllRule, ZPlusRule, ZEpsilonRule), first_layer_rule=FlatRule
    ),
}

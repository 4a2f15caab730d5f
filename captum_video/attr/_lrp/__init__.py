"""LRP / deep Taylor decomposition for 3-D models: rules, composites, canonizers and
DeepTaylor3D."""

from captum_video.attr._lrp.canonizers import (
    Canonizer,
    ConstantGateCanonizer,
    MergeBatchNorm,
    NoInplaceReLU,
    ResidualAddCanonizer,
    canonized,
    default_canonizers,
)
from captum_video.attr._lrp.composite_rules import FlatRule, GammaRule
from captum_video.attr._lrp.composites import COMPOSITES, Composite
from captum_video.attr._lrp.deep_taylor import DeepTaylor3D
from captum_video.attr._lrp.pass_rules import PassRule, ProportionalRule, WinnerTakeAllRule
from captum_video.attr._lrp.rules import VideoLRPRule, ZBRule, ZEpsilonRule, ZPlusRule, stabilize

__all__ = [
    "DeepTaylor3D",
    "Composite",
    "COMPOSITES",
    "VideoLRPRule",
    "ZPlusRule",
    "ZBRule",
    "ZEpsilonRule",
    "GammaRule",
    "FlatRule",
    "ProportionalRule",
    "WinnerTakeAllRule",
    "PassRule",
    "stabilize",
    "Canonizer",
    "MergeBatchNorm",
    "ResidualAddCanonizer",
    "ConstantGateCanonizer",
    "NoInplaceReLU",
    "canonized",
    "default_canonizers",
]

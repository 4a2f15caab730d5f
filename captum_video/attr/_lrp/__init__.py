"""LRP / deep Taylor decomposition for 3-D models: rules, canonizers and DeepTaylor3D."""

from captum_video.attr._lrp.canonizers import (
    Canonizer,
    MergeBatchNorm,
    NoInplaceReLU,
    ResidualAddCanonizer,
    canonized,
    default_canonizers,
)
from captum_video.attr._lrp.deep_taylor import COMPOSITES, Composite, DeepTaylor3D
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
    "ProportionalRule",
    "WinnerTakeAllRule",
    "PassRule",
    "stabilize",
    "Canonizer",
    "MergeBatchNorm",
    "ResidualAddCanonizer",
    "NoInplaceReLU",
    "canonized",
    "default_canonizers",
]

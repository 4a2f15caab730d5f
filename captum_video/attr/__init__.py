"""Attribution methods for video models, each a subclass of a Captum base class.

Every method takes clips ``(N, C, T, H, W)`` and returns input-shaped relevance (or
``(N, 1, T, H, W)`` for layer methods after up-sampling).
"""

from captum_video.attr._common import reduce_channels, upsample_to_input
from captum_video.attr._lrp import (
    COMPOSITES,
    Canonizer,
    Composite,
    DeepTaylor3D,
    MergeBatchNorm,
    NoInplaceReLU,
    PassRule,
    ProportionalRule,
    ResidualAddCanonizer,
    VideoLRPRule,
    WinnerTakeAllRule,
    ZBRule,
    ZEpsilonRule,
    ZPlusRule,
    bounds_from_normalization,
    canonized,
    default_canonizers,
)
from captum_video.attr._selective import SelectiveRelevance, selective_relevance
from captum_video.attr._split import SpatioTemporalRelevance, SpatioTemporalSplit
from captum_video.attr._temporal import TemporalMask, TemporalOcclusion, frame_curve
from captum_video.attr._token_reshape import suggest_layer
from captum_video.attr._tubes import GradCAMTube, SaliencyTube

__all__ = [
    "DeepTaylor3D",
    "SpatioTemporalSplit",
    "SpatioTemporalRelevance",
    "Composite",
    "COMPOSITES",
    "VideoLRPRule",
    "ZPlusRule",
    "ZBRule",
    "ZEpsilonRule",
    "ProportionalRule",
    "WinnerTakeAllRule",
    "PassRule",
    "bounds_from_normalization",
    "Canonizer",
    "MergeBatchNorm",
    "ResidualAddCanonizer",
    "NoInplaceReLU",
    "canonized",
    "default_canonizers",
    "GradCAMTube",
    "SaliencyTube",
    "suggest_layer",
    "TemporalOcclusion",
    "TemporalMask",
    "frame_curve",
    "reduce_channels",
    "upsample_to_input",
    "SelectiveRelevance",
    "selective_relevance",
]

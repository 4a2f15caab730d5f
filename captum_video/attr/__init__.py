"""Attribution methods for video models, each a subclass of a Captum base class.

Every method takes clips ``(N, C, T, H, W)`` and returns input-shaped relevance (or
``(N, 1, T, H, W)`` for layer methods after up-sampling). ``target=None`` means the same in
every method: each clip's predicted class (the argmax of the model's output).
"""

from captum_video.attr._aggregate import AggregatedPerturbation
from captum_video.attr._attention_relevance import GradientWeightedAttention
from captum_video.attr._attention_rollout import AttentionRollout
from captum_video.attr._gradcam_tube import GradCAMTube
from captum_video.attr._lrp import (
    COMPOSITES,
    Canonizer,
    Composite,
    ConstantGateCanonizer,
    DeepTaylor3D,
    FlatRule,
    GammaRule,
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
    canonized,
    default_canonizers,
)
from captum_video.attr._saliency_tube import SaliencyTube
from captum_video.attr._selective import SelectiveRelevance, selective_relevance
from captum_video.attr._split import SpatioTemporalRelevance, SpatioTemporalSplit
from captum_video.attr._temporal_mask import TemporalMask
from captum_video.attr._temporal_occlusion import TemporalOcclusion
from captum_video.attr._tube import TubeAttribution

__all__ = [
    "AggregatedPerturbation",
    "DeepTaylor3D",
    "SpatioTemporalSplit",
    "SpatioTemporalRelevance",
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
    "Canonizer",
    "MergeBatchNorm",
    "ResidualAddCanonizer",
    "ConstantGateCanonizer",
    "NoInplaceReLU",
    "canonized",
    "default_canonizers",
    "TubeAttribution",
    "GradCAMTube",
    "SaliencyTube",
    "TemporalOcclusion",
    "TemporalMask",
    "SelectiveRelevance",
    "selective_relevance",
    "AttentionRollout",
    "GradientWeightedAttention",
]

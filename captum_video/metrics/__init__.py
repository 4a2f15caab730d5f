"""Metrics for video explanations and video models: faithfulness, localisation, motion."""

# Loads the registry, which tells the shared input checks each model's fewest frames.
import captum_video.registry  # noqa: F401
from captum_video.metrics.faithfulness import (
    AOPCResult,
    CausalCurve,
    aopc,
    deletion,
    insertion,
)
from captum_video.metrics.localization import (
    PointingGameResult,
    pointing_game,
    relevance_mass,
    relevance_rank,
)
from captum_video.metrics.motion import flow_agreement, spatial_bias
from captum_video.metrics.roar import RoarResult, ablate_top, remove_and_retrain, roar_curve
from captum_video.metrics.sanity import SanityResult, randomization_sanity, spearman_correlation
from captum_video.metrics.stability import SeedStability, rank_stability, seed_stability
from captum_video.metrics.streams import StreamAblation, stream_ablation, stream_relevance_shares
from captum_video.metrics.temporal import temporal_sensitivity

__all__: list[str] = [
    "RoarResult",
    "ablate_top",
    "remove_and_retrain",
    "roar_curve",
    "SeedStability",
    "rank_stability",
    "seed_stability",
    "StreamAblation",
    "stream_ablation",
    "stream_relevance_shares",
    "temporal_sensitivity",
    "AOPCResult",
    "CausalCurve",
    "aopc",
    "deletion",
    "insertion",
    "PointingGameResult",
    "pointing_game",
    "relevance_mass",
    "relevance_rank",
    "flow_agreement",
    "spatial_bias",
    "SanityResult",
    "randomization_sanity",
    "spearman_correlation",
]

"""Concept-based explanations for video models: Video-TCAV and concept discovery.

- :class:`VideoConcept`, :func:`static_clip`, :func:`dynamic_clip`, :func:`static_twin`:
  concept sets made of clips (static = one frame tiled over time, dynamic = a tracked region).
- :class:`VideoTCAV`: a :class:`captum.concept.TCAV` for ``(N, C, T, H, W)`` models with
  activation pooling, in-memory caching and a torch CAV classifier.
- :func:`significance`: the t-test of concept vs random runs, with Bonferroni correction.
- :func:`discover_concepts`: cluster spatio-temporal segments into candidate concepts, each
  with a static twin.
"""

# Loads the registry, which tells the shared input checks each model's fewest frames.
import captum_video.registry  # noqa: F401
from captum_video.concept._classifier import TorchLinearClassifier
from captum_video.concept._concept import VideoConcept, dynamic_clip, static_clip, static_twin
from captum_video.concept._discovery import DiscoveredConcept, discover_concepts, kmeans
from captum_video.concept._pooling import ACT_POOLS, TCAVScores, pool_activations
from captum_video.concept._significance import SignificanceResult, significance
from captum_video.concept._tcav import VideoTCAV

__all__ = [
    "ACT_POOLS",
    "DiscoveredConcept",
    "SignificanceResult",
    "TCAVScores",
    "TorchLinearClassifier",
    "VideoConcept",
    "VideoTCAV",
    "discover_concepts",
    "dynamic_clip",
    "kmeans",
    "pool_activations",
    "significance",
    "static_clip",
    "static_twin",
]

"""Explanation by example: which training clips made a video model decide as it did (TracIn),
and which it sees as most alike (similarity in its representation)."""

from captum_video.influence.checkpoints import CheckpointLoader, find_checkpoints
from captum_video.influence.data import ClipLabelDataset, as_clip_label_dataset
from captum_video.influence.neighbors import ExactNearestNeighbors
from captum_video.influence.render import influence_frames, render_influence
from captum_video.influence.similarity import METRICS, SimilarClips, VideoSimilarityInfluence
from captum_video.influence.tracin import METHODS, InfluentialClips, VideoTracIn

__all__ = [
    "VideoTracIn",
    "InfluentialClips",
    "METHODS",
    "ExactNearestNeighbors",
    "VideoSimilarityInfluence",
    "SimilarClips",
    "METRICS",
    "ClipLabelDataset",
    "as_clip_label_dataset",
    "CheckpointLoader",
    "find_checkpoints",
    "influence_frames",
    "render_influence",
]

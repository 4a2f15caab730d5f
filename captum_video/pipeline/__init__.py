"""Explaining whole data sets: run (batches, metrics) -> store (verified shards) -> publish
(merge, exports, TensorBoard, report). :func:`explain_dataset` is the entry point."""

from captum_video.pipeline.dataset import DatasetExplanation, explain_dataset
from captum_video.pipeline.run import TEMPORAL_OPS

__all__ = ["DatasetExplanation", "TEMPORAL_OPS", "explain_dataset"]

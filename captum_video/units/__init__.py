"""Unit visualisation as moving clips: activation maximisation for 3-D video models.

:class:`ClipVisualization` optimises a clip that maximises a class logit, a channel or a
neuron, through a decorrelated space-time Fourier parametrisation (:class:`FourierClip`),
random spatial and temporal jitter (:func:`standard_transforms`) and total-variation
penalties over space and time. :func:`write_unit_clips` writes one video file per unit,
:func:`add_unit_clips` logs them to TensorBoard, and :func:`clip_grid` tiles a layer's
channels into one clip.
"""

from captum_video.units.optimize import ClipVisualization
from captum_video.units.parametrization import COLOR_CORRELATION_SVD_SQRT, FourierClip
from captum_video.units.penalties import spatial_total_variation, temporal_total_variation
from captum_video.units.transforms import (
    RandomScale,
    SpatialJitter,
    TemporalJitter,
    apply_transforms,
    standard_transforms,
)
from captum_video.units.writing import add_unit_clips, clip_grid, write_unit_clips

__all__ = [
    "ClipVisualization",
    "FourierClip",
    "COLOR_CORRELATION_SVD_SQRT",
    "SpatialJitter",
    "TemporalJitter",
    "RandomScale",
    "standard_transforms",
    "apply_transforms",
    "spatial_total_variation",
    "temporal_total_variation",
    "clip_grid",
    "write_unit_clips",
    "add_unit_clips",
]

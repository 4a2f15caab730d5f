"""Seeing video relevance: frame grids, overlays, tube stacks, relevance over time, export.

Every function follows ``captum.attr.visualization``: Captum's method names (``heat_map``,
``blended_heat_map``, ``original_image``, ``masked_image``, ``alpha_scaling``), sign names
(``positive``, ``absolute_value``, ``negative``, ``all``) and their default colour maps,
``outlier_perc``, ``(figure, axes)`` returns, ``plt_fig_axis`` and ``use_pyplot``. They take
what attribution methods return for one clip (torch tensors ``(1, C, T, H, W)``,
``(C, T, H, W)`` or ``(T, H, W)``) and clips ``(C, T, H, W)`` in ``[0, 1]``, and normalise
relevance over the *whole clip*, so colours compare across frames.
"""

from captum_video.visualization._normalize import normalize_video_attr
from captum_video.visualization.captions import caption_frames, frame_label
from captum_video.visualization.encode import VideoEncoder
from captum_video.visualization.export import write_video
from captum_video.visualization.flow_overlay import flow_relevance_frames, write_flow_overlay
from captum_video.visualization.frames import visualize_video_attr, visualize_video_attr_multiple
from captum_video.visualization.over_time import plot_relevance_over_time, relevance_over_time
from captum_video.visualization.overlay import overlay_frames, two_hue_frames
from captum_video.visualization.spatiotemporal import spatiotemporal_overlay
from captum_video.visualization.tube_stack import (
    plot_tube_stack,
    render_tube_stack,
    render_tube_stack_frames,
)

__all__ = [
    "flow_relevance_frames",
    "write_flow_overlay",
    "normalize_video_attr",
    "overlay_frames",
    "two_hue_frames",
    "visualize_video_attr",
    "visualize_video_attr_multiple",
    "relevance_over_time",
    "plot_relevance_over_time",
    "render_tube_stack",
    "render_tube_stack_frames",
    "plot_tube_stack",
    "spatiotemporal_overlay",
    "write_video",
    "VideoEncoder",
    "caption_frames",
    "frame_label",
]

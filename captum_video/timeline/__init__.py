"""Whole videos as timelines: windows of the model's clip length explained in batches and
stitched into one relevance video, with prediction tracks, a relevance curve in seconds and
scene cuts flagged (:func:`explain_video`). The window and stitching pieces are shared with
:mod:`captum_video.stream`.
"""

from captum_video.timeline.explain import VideoTimeline, explain_video
from captum_video.timeline.frames import VideoFrame, iter_video_frames, probe_video
from captum_video.timeline.storage import NpyAppender
from captum_video.timeline.windows import SceneCutDetector, WindowStitcher, window_starts

__all__ = [
    "NpyAppender",
    "SceneCutDetector",
    "VideoFrame",
    "VideoTimeline",
    "WindowStitcher",
    "explain_video",
    "iter_video_frames",
    "probe_video",
    "window_starts",
]

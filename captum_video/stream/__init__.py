"""Live streams: explain frames as they arrive, window by window, without falling behind.

:class:`StreamExplainer` reads any OpenCV source (a file, a camera index, an RTSP/HTTP URL) or
a Python iterator of frames, forms windows of the model's clip length in a ring buffer, and
explains them in a reader -> explainer -> writer pipeline of threads. In real time a policy
(``"skip"`` or ``"adapt"``) keeps it from falling behind the source, and every window's
latency is measured. It writes an overlay video, TensorBoard steps and a ``stream.json``
summary as it goes, and hands each :class:`WindowResult` to a loop or a callback. See the
``captum-video stream`` command for the same from a shell.
"""

from captum_video.stream.explainer import POLICIES, StreamExplainer, explain_stream
from captum_video.stream.outputs import StreamOutputs
from captum_video.stream.queues import WindowQueue
from captum_video.stream.results import LatencyStats, StreamSummary, WindowResult
from captum_video.stream.sources import FrameSource, StreamFrame, open_source

__all__ = [
    "POLICIES",
    "FrameSource",
    "LatencyStats",
    "StreamExplainer",
    "StreamFrame",
    "StreamOutputs",
    "StreamSummary",
    "WindowQueue",
    "WindowResult",
    "explain_stream",
    "open_source",
]

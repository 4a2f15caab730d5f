"""The captum-video TensorBoard plugin ("Relevance Video" tab).

A light package: it imports only TensorBoard and the standard library, never torch, so that
``tensorboard`` starts fast and is not broken by a broken torch install. Relevance clips are
written with :func:`captum_video.tensorboard.add_relevance_clip`; the blob layout both sides
agree on is in :mod:`captum_video_tb.metadata`; the backend is :mod:`captum_video_tb.plugin`
and the frontend is the vendored ES module ``static/index.js``.
"""

from captum_video_tb.metadata import PLUGIN_NAME

__all__ = ["PLUGIN_NAME"]

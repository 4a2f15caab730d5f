"""Re-exports of :mod:`captum_video.relevance` for modules that still import them from here."""

from captum_video.relevance import ChannelReduction, reduce_channels, upsample_to_input

__all__ = ["ChannelReduction", "reduce_channels", "upsample_to_input"]

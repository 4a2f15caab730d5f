r"""A small two-stream network: an appearance (RGB) stream and a motion (optical flow) stream.

Simonyan and Zisserman (2014, "Two-Stream Convolutional Networks for Action Recognition in
Videos") split a video classifier into a *spatial* stream that sees still frames and a
*temporal* stream that sees stacked optical flow, and fuse the two late by adding their class
scores; Feichtenhofer, Pinz and Zisserman (2016, "Convolutional Two-Stream Network Fusion for
Video Action Recognition") fuse them inside the network. :class:`TwoStreamSmall` is the late
fusion of the first paper at the size of the other demo models:

* the **RGB stream** (:class:`FrameStream`) applies 2-D convolutions (``1 x 3 x 3`` kernels)
  and spatial pooling to every frame on its own and averages the frames' features, as the
  spatial stream scores single frames and averages them over the video. It keeps all ``T``
  steps up to its last block (class activation tubes resolve every frame) and it cannot see
  motion: shuffling the frames does not change its output;
* the **flow stream** is a :class:`~captum_video.models.C3DSmall` with two input channels
  reading the Farneback flow ``(dx, dy)`` of every frame (:func:`two_stream_inputs`); flow
  carries no colour, so it cannot see appearance;
* **fusion** adds the two streams' logits: ``y = y_rgb + y_flow``.

Because the output is a sum, each stream's share of a decision can be read from its logits
(:meth:`TwoStreamSmall.stream_logits`) as well as from any attribution of the tuple input
``(rgb, flow)`` (:mod:`captum_video.metrics.streams`).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from captum_video._validation import validate_video
from captum_video.flow import optical_flow
from captum_video.models.c3d import C3DSmall

__all__ = ["FLOW_SCALE", "FrameStream", "TwoStreamSmall", "two_stream_inputs"]

#: Pixels per frame that map to 1 in the flow stream's input. MovingShapes objects move 1 to
#: 1.5 px per frame and Farneback's estimate stays below 3 px per frame on them, so the input
#: lies in ``[-1, 1]`` (it is clamped there), the range a z^B rule needs as bounds.
FLOW_SCALE = 3.0


class FrameStream(nn.Module):
    r"""Per-frame 2-D CNN on a clip: the appearance stream of :class:`TwoStreamSmall`.

    Every convolution has a ``1 x 3 x 3`` kernel and every pooling a ``1 x 2 x 2`` window, so
    frame ``t`` of each feature volume depends on frame ``t`` of the clip only. For a
    ``3 x 16 x 32 x 32`` clip: ``stem`` 8 x 16 x 32 x 32, ``layer1`` 16 x 16 x 16 x 16,
    ``layer2`` 32 x 16 x 8 x 8, ``layer3`` 32 x 16 x 4 x 4, then global average pooling over
    time and space and ``fc`` (so CAM identities hold, as for :class:`C3DSmall`).

    Args:
        num_classes (int, optional): number of outputs. Default: 4
        in_channels (int, optional): input channels. Default: 3
        widths (tuple of int, optional): channels of stem, layer1, layer2, layer3.
            Default: ``(8, 16, 32, 32)``

    Returns:
        ``forward(x)`` returns logits ``(N, num_classes)``.

    Example::

        >>> stream = FrameStream()
        >>> stream(torch.rand(2, 3, 16, 32, 32)).shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        num_classes: int = 4,
        in_channels: int = 3,
        widths: tuple[int, int, int, int] = (8, 16, 32, 32),
    ) -> None:
        super().__init__()
        w0, w1, w2, w3 = widths
        self.stem = nn.Sequential(
            OrderedDict(
                conv=nn.Conv3d(in_channels, w0, (1, 3, 3), padding=(0, 1, 1)), relu=nn.ReLU()
            )
        )
        self.layer1 = _frame_block(w0, w1)
        self.layer2 = _frame_block(w1, w2)
        self.layer3 = _frame_block(w2, w3)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(w3, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.flatten(self.avgpool(x)))


def _frame_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            pool=nn.MaxPool3d((1, 2, 2), stride=(1, 2, 2)),
            conv=nn.Conv3d(cin, cout, (1, 3, 3), padding=(0, 1, 1)),
            relu=nn.ReLU(),
        )
    )


class TwoStreamSmall(nn.Module):
    r"""Two-stream late fusion (Simonyan and Zisserman 2014): ``y = rgb(clip) + flow(flow)``.

    ``forward(rgb, flow)`` takes the two inputs as separate arguments, so Captum's tuple
    inputs ``(rgb, flow)`` attribute to each stream. ``rgb`` is the clip ``(N, 3, T, H, W)``
    in ``[0, 1]``; ``flow`` is ``(N, 2, T, H, W)``, the optical flow of every frame in units
    of :data:`FLOW_SCALE` pixels per frame (build both with :func:`two_stream_inputs`).
    Layers to explain per stream: ``rgb.layer3`` (16 of 16 frames) and ``flow.layer3`` (4 of
    16); heads ``rgb.fc`` and ``flow.fc``.

    Args:
        num_classes (int, optional): number of outputs. Default: 4
        widths (tuple of int, optional): channels of each stream's stem and three blocks.
            Default: ``(8, 16, 32, 32)``

    Returns:
        ``forward(rgb, flow)`` returns the fused logits ``(N, num_classes)``.

    Example::

        >>> model = TwoStreamSmall().eval()
        >>> rgb, flow = two_stream_inputs(torch.rand(2, 3, 16, 32, 32))
        >>> model(rgb, flow).shape
        torch.Size([2, 4])
    """

    def __init__(
        self, num_classes: int = 4, widths: tuple[int, int, int, int] = (8, 16, 32, 32)
    ) -> None:
        super().__init__()
        self.rgb = FrameStream(num_classes, in_channels=3, widths=widths)
        self.flow = C3DSmall(num_classes, in_channels=2, widths=widths)

    def stream_logits(self, rgb: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
        """Each stream's logits ``(N, num_classes)``; their sum is :meth:`forward`'s output.

        Args:
            rgb (Tensor): clips ``(N, 3, T, H, W)``.
            flow (Tensor): flow ``(N, 2, T, H, W)``.

        Returns:
            tuple of Tensor: ``(rgb_logits, flow_logits)``.

        Example::

            >>> y_rgb, y_flow = model.stream_logits(rgb, flow)
        """
        return self.rgb(rgb), self.flow(flow)

    def forward(self, rgb: Tensor, flow: Tensor) -> Tensor:
        y_rgb, y_flow = self.stream_logits(rgb, flow)
        return y_rgb + y_flow


def two_stream_inputs(clip: Tensor, flow_scale: float = FLOW_SCALE) -> tuple[Tensor, Tensor]:
    r"""The ``(rgb, flow)`` inputs of :class:`TwoStreamSmall` for clips in ``[0, 1]``.

    ``flow`` is OpenCV's Farneback flow (:func:`captum_video.flow.optical_flow`, frame ``t``
    to ``t + 1``, the last frame repeating the flow into it) as channels ``(dx, dy)``,
    divided by ``flow_scale`` and clamped to ``[-1, 1]``: zero is "no motion". The flow is a
    pre-processing of the video (no gradient flows through it), so attributions of the flow
    stream are relevance *of the flow field*.

    Args:
        clip (Tensor): ``(N, 3, T, H, W)`` or ``(3, T, H, W)`` float clip(s) in ``[0, 1]``,
            at least 2 frames.
        flow_scale (float, optional): pixels per frame that map to 1. Default: :data:`FLOW_SCALE`

    Returns:
        tuple of Tensor: ``rgb`` (the clip, batched and detached) ``(N, 3, T, H, W)`` and
        ``flow`` ``(N, 2, T, H, W)`` float32, on the clip's device.

    Raises:
        TypeError: ``clip`` is not a floating-point tensor.
        ValueError: wrong shape, fewer than 2 frames, NaN/inf, values outside ``[0, 1]``, or
            a ``flow_scale`` that is not a positive number.

    Example::

        >>> rgb, flow = two_stream_inputs(torch.rand(3, 16, 32, 32))
        >>> rgb.shape, flow.shape
        (torch.Size([1, 3, 16, 32, 32]), torch.Size([1, 2, 16, 32, 32]))
    """
    if (
        isinstance(flow_scale, bool)
        or not isinstance(flow_scale, (int, float))
        or not (0 < flow_scale < float("inf"))
    ):
        raise ValueError(f"flow_scale must be a positive number of pixels, got {flow_scale!r}")
    if isinstance(clip, Tensor) and clip.dim() == 4:
        clip = clip.unsqueeze(0)
    validate_video(clip, name="clip", channels=3, min_frames=2, guess_layout=True)
    if not clip.is_floating_point():
        raise TypeError(f"clip must be a floating-point clip in [0, 1], got {clip.dtype}")
    low, high = float(clip.min()), float(clip.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(
            f"clip must hold values in [0, 1], got [{low:.3g}, {high:.3g}]; pass the clip "
            "before any normalisation (uint8 frames: clip.float() / 255)"
        )
    flow = optical_flow(clip).permute(0, 2, 1, 3, 4)  # (N, T, 2, H, W) -> (N, 2, T, H, W)
    flow = (flow / float(flow_scale)).clamp_(-1.0, 1.0).contiguous()
    return clip.detach(), flow.to(torch.float32)

r"""Motion metrics of explanations: spatial bias and agreement with optical flow.

Hiley et al. ("Explaining Motion Relevance for Activity Recognition in Video Deep Learning
Models", arXiv 2003.14285, 2020) say selective relevance "reveals and quantifies" a model's
spatial bias, but *how* they quantify it could not be checked against the paper. Two
code-compatible measures are offered here, named for what they compute; **neither is
verified to be the paper's metric**:

- :func:`spatial_bias`: the share of relevance that selective relevance removes, i.e. the part
  of the explanation that does not change in time (definition (a) of spatial bias);
- :func:`flow_agreement`: the precision of the explanation against a dense optical-flow motion
  mask, after the authors' ``compare_frames_with_baseline`` (which first appears in their code
  a year after the v1 preprint). ``1 - flow_agreement`` of the *unselected* explanation is
  definition (b) of spatial bias.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from captum_video import flow
from captum_video._validation import validate_video
from captum_video.relevance import ChannelReduction, reduce_channels

__all__ = ["spatial_bias", "flow_agreement"]


def spatial_bias(relevance: Tensor, selected: Tensor) -> Tensor:
    r"""Share of an explanation's relevance that selection removed: ``1 - sum|R_sel| / sum|R|``.

    ``R`` is an explanation and ``R_sel`` its selective relevance
    (:func:`captum_video.attr.selective_relevance` or
    :class:`captum_video.attr.SelectiveRelevance`). The value is the fraction of relevance
    mass (in magnitude) that does not change quickly over time: near 1 when the explanation
    is about appearance only (a *spatially biased* explanation), near 0 when all of it sits on
    moving structure. It describes the explanation, and through it the model; it depends on
    ``sigma`` and the padding used for selection, so compare values computed alike.

    This is definition (a) of spatial bias, a natural reading of "quantifies spatial bias"; it is
    **not verified** to be the metric of Hiley et al. 2020.

    It is a property of the explanation as much as of the model: relevance on an object that
    merely moves (an appearance cue carried by a moving object) is partly selected, and
    relevance on static context a motion model checks (e.g. static look-alike distractors) is
    removed. On the bundled demo models, Grad-CAM tubes give the motion-trained model a lower
    value than the appearance-trained one, while Saliency, InputXGradient and DeepTaylor3D
    give the opposite ordering; compare models with one base explainer and say which.

    Args:
        relevance (Tensor): explanations ``(N, C, T, H, W)``.
        selected (Tensor): their selected relevance, the same shape.

    Returns:
        Tensor: ``(N,)`` values in ``[0, 1]`` in ``relevance``'s dtype and device; NaN for a
        clip with no relevance at all.

    Raises:
        TypeError, ValueError: not floating 5-D tensors of the same shape, or NaN/inf.

    Example::

        >>> from captum_video.attr import selective_relevance
        >>> relevance = torch.rand(2, 3, 16, 32, 32)
        >>> selected, _, _ = selective_relevance(relevance, sigma=1.0)
        >>> spatial_bias(relevance, selected).shape
        torch.Size([2])
    """
    validate_video(relevance, name="relevance")
    validate_video(selected, name="selected")
    if selected.shape != relevance.shape:
        raise ValueError(
            f"selected must have the shape of relevance {tuple(relevance.shape)}, "
            f"got {tuple(selected.shape)}"
        )
    total = relevance.abs().flatten(1).sum(1)
    kept = selected.abs().flatten(1).sum(1)
    # 0/0 -> NaN on purpose: a clip without relevance has no bias to speak of.
    return 1.0 - kept / total


def flow_agreement(
    relevance: Tensor,
    video: Tensor,
    explanation_threshold: float | None = 0.5,
    flow_threshold: float = 0.5,
    motion: Tensor | None = None,
    channel_reduction: ChannelReduction = "abs_sum",
    **farneback: Any,
) -> Tensor:
    r"""Precision of an explanation against an optical-flow motion mask, per clip.

    After Hiley et al.'s ``compare_frames_with_baseline`` (their selective relevance code,
    2021): the explanation is reduced to ``(T, H, W)`` (``channel_reduction``), divided by
    its maximum over the clip (volume-wise, so frames stay comparable) and thresholded at
    ``explanation_threshold``, giving ``E``; the motion baseline ``B`` is a dense optical-flow
    mask, flow magnitude above ``flow_threshold`` pixels per frame (OpenCV Farneback through
    :func:`captum_video.flow.motion_mask`). Counting over all frames,

    .. math::

        \text{agreement} = \frac{TP}{TP + FP} = \frac{|E \wedge B|}{|E|}.

    High values mean the explanation sits on moving pixels. It measures precision only: an
    explanation on a few moving pixels scores as high as one covering all motion.
    ``1 - flow_agreement`` of a plain (unselected) explanation is definition (b) of spatial
    bias (see the module docstring).

    Differences from the reference code, all unverified against the paper: the authors render
    the flow as an HSV image (hue = angle, value = magnitude) converted to grey and threshold
    that at ``b_thr``; here the flow magnitude is thresholded directly. Their thresholds
    ``e_thr``/``b_thr`` are not known; the defaults here are half the clip's maximum relevance
    and 0.5 px/frame. With ``explanation_threshold=None`` a threshold-free variant is returned,
    the share of relevance mass on moving pixels, ``sum(E * B) / sum(E)``.

    Args:
        relevance (Tensor): explanations ``(N, C, T, H, W)`` in the clip's resolution
            (up-sample CAM maps first).
        video (Tensor): the clips ``(N, C', T, H, W)`` that were explained, in any range.
        explanation_threshold (float or None, optional): fraction of each clip's maximum
            relevance above which a voxel belongs to the explanation; ``None`` for the
            mass-weighted variant. Default: 0.5
        flow_threshold (float, optional): flow magnitude (px/frame) above which a pixel
            moves. Default: 0.5
        motion (Tensor, optional): a precomputed bool motion mask ``(N, T, H, W)`` or
            ``(N, 1, T, H, W)`` used instead of optical flow (e.g. a ground-truth mask, or
            flow computed once for several explanations). Default: None
        channel_reduction (str, optional): ``"abs_sum"``, ``"sum"`` or ``"max_abs"``; the
            reduced map is used in magnitude. Default: ``"abs_sum"``
        **farneback: overrides of :data:`captum_video.flow.FARNEBACK_DEFAULTS`.

    Returns:
        Tensor: ``(N,)`` agreements in ``[0, 1]`` on ``relevance``'s device; NaN for a clip
        whose explanation is empty.

    Raises:
        TypeError, ValueError: malformed tensors, mismatched batch or (T, H, W), a motion mask
            of the wrong shape, or a threshold outside its range.

    Example::

        >>> from captum_video.datasets import MovingShapes
        >>> clips, labels, masks = MovingShapes("motion", num_samples=2, seed=0).tensors()
        >>> relevance = masks[:, None].float()           # an explanation on the object
        >>> flow_agreement(relevance, clips).shape
        torch.Size([2])
    """
    validate_video(relevance, name="relevance")
    validate_video(video, name="video", min_frames=2 if motion is None else 1)
    n, _, t, h, w = relevance.shape
    if video.shape[0] != n or tuple(video.shape[2:]) != (t, h, w):
        raise ValueError(
            f"video {tuple(video.shape)} must match relevance {tuple(relevance.shape)} in "
            "batch size and (T, H, W); up-sample layer maps to the clip first"
        )
    if explanation_threshold is not None and not 0.0 <= explanation_threshold < 1.0:
        raise ValueError(
            f"explanation_threshold must be in [0, 1) or None, got {explanation_threshold}"
        )
    if flow_threshold < 0:
        raise ValueError(f"flow_threshold must be >= 0 px/frame, got {flow_threshold}")
    if motion is None:
        moving = flow.motion_mask(video, threshold=flow_threshold, **farneback)
    else:
        moving = motion[:, 0] if motion.dim() == 5 and motion.shape[1] == 1 else motion
        if tuple(moving.shape) != (n, t, h, w):
            raise ValueError(
                f"motion must be a (N, T, H, W) mask of shape {(n, t, h, w)}, "
                f"got {tuple(motion.shape)}"
            )
    moving = moving.to(device=relevance.device, dtype=torch.bool)

    magnitude = reduce_channels(relevance, channel_reduction).abs()[:, 0]  # (N, T, H, W)
    peak = magnitude.flatten(1).amax(1).view(n, 1, 1, 1)
    if explanation_threshold is None:
        weight = magnitude
    else:
        # A clip with no relevance has no explanation voxels (0/0 -> NaN below).
        weight = ((magnitude > explanation_threshold * peak) & (peak > 0)).to(magnitude.dtype)
    on_motion = (weight * moving).flatten(1).sum(1)  # TP (or relevance mass on motion)
    return on_motion / weight.flatten(1).sum(1)  # / (TP + FP)

r"""Selective relevance (Hiley et al. 2020): keep the relevance that changes in time.

An explanation of a 3-D model mixes *appearance* (relevance that sits still) with *motion*
(relevance that moves with the object). Selective relevance is a post-processing step for any
explanation in input resolution: it takes the temporal derivative of the relevance volume with
a 3-D Sobel kernel, and keeps only the voxels where that derivative is larger than
``sigma`` standard deviations of it. What is left is a motion-specific explanation; how much
was removed measures the explanation's spatial bias
(:func:`captum_video.metrics.spatial_bias`).

Reference: L. Hiley, A. Preece, Y. Hicks, S. Chakraborty, P. Gurram, R. Tomsett, "Explaining
Motion Relevance for Activity Recognition in Video Deep Learning Models", arXiv 2003.14285,
2020. The algorithm, its code versions and its checks are on the documentation's
*Selective relevance* page.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import warnings
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from captum._utils.common import _format_additional_forward_args, _format_tensor_into_tuples
from captum.attr import Attribution
from captum.log import log_usage
from torch import Tensor, nn

from captum_video._model_state import in_eval_mode, preserve_grad_requirements
from captum_video._targets import target_or_prediction, validate_target
from captum_video._validation import format_video_inputs, validate_video
from captum_video.registry import classifier_of
from captum_video.relevance import ChannelReduction, reduce_channels, upsample_to_input

__all__ = ["SelectiveRelevance", "selective_relevance", "sobel_time_kernel"]

Padding = Literal["replicate", "zeros"]

#: Below this ratio of layer frames to clip frames, a CAM-type map's temporal derivative
#: mostly reflects the up-sampling, not the model.
COARSE_TIME_RATIO = 0.25

_CHANNEL_REDUCTIONS: tuple[str, ...] = get_args(ChannelReduction)


def sobel_time_kernel(
    dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> Tensor:
    r"""The 3-D Sobel kernel oriented along time, ``S[tau, i, j] = d[tau] * s[i] * s[j]``.

    ``d = (+1, 0, -1)`` over frames ``(t - 1, t, t + 1)`` and ``s = (1, 2, 1)`` smooths in H
    and W, so ``S[0] = [[1, 2, 1], [2, 4, 2], [1, 2, 1]]``, ``S[1] = 0`` and ``S[2] = -S[0]``
    (Hiley et al. 2020). :func:`selective_relevance` applies it in its separable form; this
    full kernel is exposed for parity checks and for readers.

    Args:
        dtype (torch.dtype, optional): dtype of the kernel. Default: ``torch.float32``
        device (torch.device or str, optional): device of the kernel. Default: CPU

    Returns:
        Tensor: ``(1, 1, 3, 3, 3)`` kernel, ready for ``torch.nn.functional.conv3d``.

    Example::

        >>> sobel_time_kernel()[0, 0, 0]
        tensor([[1., 2., 1.],
                [2., 4., 2.],
                [1., 2., 1.]])
    """
    d = torch.tensor([1.0, 0.0, -1.0], dtype=dtype, device=device)
    s = torch.tensor([1.0, 2.0, 1.0], dtype=dtype, device=device)
    return (d.view(3, 1, 1) * s.view(1, 3, 1) * s.view(1, 1, 3)).view(1, 1, 3, 3, 3)


def _temporal_derivative(volume: Tensor, padding: Padding) -> Tensor:
    """Signed Sobel-in-time response of ``(N, 1, T, H, W)``, same shape.

    The kernel is separable, ``S = d (x) (s (x) s)``: the central difference in time is taken
    first and the ``(1, 2, 1)`` smoothing in H, W second. This equals the full 3 x 3 x 3
    cross-correlation (checked in the tests) but is *exactly* zero where relevance does not
    change in time, so a static volume cannot pick up round-off "motion" that a 3 sigma
    threshold of a near-zero std would keep.
    """
    if padding == "replicate":
        padded = F.pad(volume, (1, 1, 1, 1, 1, 1), mode="replicate")
    else:
        padded = F.pad(volume, (1, 1, 1, 1, 1, 1), mode="constant", value=0.0)
    # Cross-correlation with d = (+1, 0, -1) over (t-1, t, t+1): R(t-1) - R(t+1).
    diff = padded[:, :, :-2] - padded[:, :, 2:]  # (N, 1, T, H+2, W+2)
    # The (1, 2, 1) smoothing along H, then W, as shifted sums: a one-channel 1 x 3 x 3
    # conv3d gives the same numbers up to round-off but costs several times more on a CPU.
    rows = diff[..., :-2, :] + diff[..., 2:, :]
    rows.add_(diff[..., 1:-1, :], alpha=2)  # (N, 1, T, H, W+2)
    out = rows[..., :-2] + rows[..., 2:]
    return out.add_(rows[..., 1:-1], alpha=2)  # (N, 1, T, H, W)


def selective_relevance(
    relevance: Tensor,
    sigma: float = 3.0,
    padding: Padding = "replicate",
    signed: bool = False,
    channel_reduction: ChannelReduction = "sum",
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Keep only the relevance that changes quickly over time (Hiley et al. 2020).

    For each clip, with ``R`` the channel-reduced relevance ``(T, H, W)``:

    .. math::

        D(t,h,w) = \Big| \sum_{i,j} s_i s_j \big[R(t-1, h+i-1, w+j-1) - R(t+1, h+i-1, w+j-1)\big]
        \Big|, \qquad \text{mask} = D > \sigma \cdot \operatorname{std}(D)

    with ``s = (1, 2, 1)`` (a 3-D Sobel kernel along time, :func:`sobel_time_kernel`), the
    std taken over the T*H*W voxels of *that clip* (unbiased estimator, as ``torch.std``) and
    a strict inequality. The selected relevance is ``relevance * mask``, the mask broadcast
    over channels. All clips of a batch are processed at once on the input's device.

    Channel reduction: the reference code repeats the kernel over the C input channels, which
    is the derivative of the channel *sum* (``channel_reduction="sum"``, the default). Signed
    input-space attributions whose channels cancel may prefer ``"abs_sum"``.

    Boundary artefact of zero padding: with ``padding="zeros"`` (the reference
    code's ``conv3d(padding=1)``) the frames before the first and after the last frame count
    as zero relevance, so a volume that is *constant in time* gets ``D = 0`` everywhere except
    on frames 0 and T-1, where ``D`` equals the smoothed relevance: the selection then keeps
    spurious "motion" on the first and last frames wherever relevance is high. With
    ``padding="replicate"`` (the default) the edge frames are repeated, and a static volume
    gives ``D == 0`` and an empty mask. Use ``"zeros"`` only for numerical parity with the
    authors' code.

    Versions of the authors' code: ``signed=False`` is the 2021 reference code (``abs`` of the
    response). ``signed=True`` reproduces the March-2020 code, which thresholds the signed
    response; because the correlation gives ``R(t-1) - R(t+1)``, it keeps only voxels where
    relevance *decreases* over time (the trailing edge of a moving object), which looks like a
    bug fixed later. The 2020 code also min-max normalised relevance with negative values
    first; that step is not applied here (normalise before calling for full parity).

    Args:
        relevance (Tensor): relevance in input resolution, ``(N, C, T, H, W)`` (C = 1 for a
            channel-reduced or up-sampled CAM map). It must be a magnitude map, not a
            colour-mapped or overlaid image; CAM-type maps must be up-sampled to the clip's
            (T, H, W) first (:func:`captum_video.relevance.upsample_to_input`).
        sigma (float, optional): degree of selectivity, in standard deviations of ``D``;
            ``0`` keeps every voxel with a non-zero derivative. Default: 3.0 (the authors'
            example script)
        padding (str, optional): ``"replicate"`` or ``"zeros"`` (see above).
            Default: ``"replicate"``
        signed (bool, optional): threshold the signed response (March-2020 code) instead of
            its magnitude. Default: False
        channel_reduction (str, optional): how channels are combined before the derivative:
            ``"sum"``, ``"abs_sum"``, ``"positive_sum"`` or ``"max_abs"``
            (:func:`captum_video.relevance.reduce_channels`). Default: ``"sum"``

    Returns:
        tuple of Tensor: ``(selected, mask, derivative)``

        - ``selected``: ``relevance * mask``, same shape, dtype and device as ``relevance``;
        - ``mask``: bool ``(N, 1, T, H, W)``, the kept voxels;
        - ``derivative``: ``D``, ``(N, 1, T, H, W)`` in ``relevance``'s dtype (signed when
          ``signed=True``).

    Raises:
        TypeError: ``relevance`` is not a floating-point tensor.
        ValueError: ``relevance`` is not 5-D or holds NaN/inf; ``sigma`` is negative or not
            finite; ``padding`` or ``channel_reduction`` is unknown.

    Example::

        >>> from captum_video.attr import selective_relevance
        >>> relevance = torch.zeros(1, 1, 16, 32, 32)
        >>> for t in range(16):                      # a 6 x 6 square moving right
        ...     relevance[0, 0, t, 10:16, 4 + t:10 + t] = 1.0
        >>> selected, mask, derivative = selective_relevance(relevance, sigma=3.0)
        >>> round(float(selected.sum() / relevance.sum()), 4)   # leading + trailing edges
        0.3125
    """
    _check_selection_args(sigma, padding, channel_reduction)
    validate_video(relevance, name="relevance", check_finite=False)  # NaN/inf: see below
    # One channel with "sum" needs no reduction; the other reductions still change values.
    if relevance.shape[1] == 1 and channel_reduction == "sum":
        volume = relevance
    else:
        volume = reduce_channels(relevance, channel_reduction)
    response = _temporal_derivative(volume, padding)
    derivative = response if signed else response.abs_()
    # Threshold per clip: sigma * std over that clip's T*H*W voxels (unbiased, as torch.std).
    flat = derivative.flatten(1)
    std = flat.std(dim=1) if flat.shape[1] > 1 else flat.new_zeros(flat.shape[0])
    # From two frames on, a NaN or inf anywhere reaches the derivative and makes its clip's
    # std non-finite, so the std stands in for a scan of the whole relevance volume.
    if relevance.shape[2] < 2 or not bool(torch.isfinite(std).all()):
        validate_video(relevance, name="relevance")  # says how many values are NaN or inf
    threshold = (sigma * std).view(-1, 1, 1, 1, 1)
    mask = derivative > threshold
    selected = relevance * mask  # the bool mask promotes to relevance's dtype
    return selected, mask, derivative


def _check_selection_args(
    sigma: float, padding: Padding, channel_reduction: ChannelReduction
) -> None:
    """Raise ValueError for a ``sigma``, ``padding`` or ``channel_reduction`` that
    :func:`selective_relevance` does not take (checked before any tensor work)."""
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0 (standard deviations of D), got {sigma}")
    if padding not in ("replicate", "zeros"):
        raise ValueError(f"padding must be 'replicate' or 'zeros', got {padding!r}")
    if channel_reduction not in _CHANNEL_REDUCTIONS:
        raise ValueError(
            f"channel_reduction must be one of {_CHANNEL_REDUCTIONS}, got {channel_reduction!r}"
        )


class SelectiveRelevance(Attribution):
    r"""Motion-specific explanations: any attribution method followed by selective relevance.

    Wraps a Captum or captum-video attribution (``Saliency``, ``IntegratedGradients``,
    ``Occlusion``, ``LayerGradCam``, ``GradCAMTube``, ``DeepTaylor3D``, ``NoiseTunnel`` ...).
    :meth:`attribute` runs the wrapped method, brings its result to the clip's resolution
    (layer maps ``(N, K, T', H', W')`` are channel-reduced and up-sampled trilinearly with
    :func:`~captum_video.relevance.upsample_to_input`), and keeps the voxels selected by
    :func:`selective_relevance` (temporal Sobel derivative of the channel-reduced relevance
    above ``sigma`` standard deviations). The result has the input's shape (input-space
    methods) or ``(N, 1, T, H, W)`` (layer methods), on the input's device and dtype.

    Use it like any Captum method, also inside ``NoiseTunnel`` where the wrapped method works
    there. Selection removes relevance, so completeness no longer holds and
    ``return_convergence_delta`` is not supported.

    CAM-type maps from layers with few frames (``T' / T < 0.25``) have a coarse time course;
    the derivative of their up-sampled map mostly reflects the interpolation, and a warning
    says so.

    Args:
        attribution_method (Attribution): an instance of any attribution algorithm whose
            ``attribute(inputs, ...)`` returns relevance of the input's shape or a 5-D layer
            map ``(N, K, T', H', W')``.

    Example::

        >>> from captum.attr import Saliency
        >>> from captum_video.attr import SelectiveRelevance
        >>> from captum_video.models import load_demo_model
        >>> model = load_demo_model("motion")
        >>> clip = torch.rand(2, 3, 16, 32, 32)
        >>> explainer = SelectiveRelevance(Saliency(model))
        >>> explainer.attribute(clip, sigma=3.0, target=0).shape
        torch.Size([2, 3, 16, 32, 32])
    """

    def __init__(self, attribution_method: Attribution) -> None:
        if not isinstance(attribution_method, Attribution):
            raise TypeError(
                "attribution_method must be a Captum Attribution instance (e.g. Saliency(model)"
                f"), got {type(attribution_method).__name__}"
            )
        self.attribution_method = attribution_method
        Attribution.__init__(self, attribution_method.forward_func)

    @property
    def multiplies_by_inputs(self) -> bool:
        """Whether the wrapped method multiplies by inputs (selection does not change it)."""
        return self.attribution_method.multiplies_by_inputs

    def has_convergence_delta(self) -> bool:
        """False: selection removes relevance, so the completeness delta does not apply."""
        return False

    @log_usage(part_of_slo=True)
    @in_eval_mode
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        sigma: float = 3.0,
        padding: Padding = "replicate",
        signed: bool = False,
        channel_reduction: ChannelReduction = "sum",
        upsample_mode: str = "trilinear",
        **kwargs: Any,
    ) -> Tensor | tuple[Tensor, ...]:
        r"""Attribute with the wrapped method and keep the relevance that changes in time.

        The model's state is left as it was: a model in train mode runs in eval mode for the
        call, with a warning, and every module's mode is restored afterwards, so BatchNorm
        statistics never change; the caller's tensors keep their values and
        ``requires_grad``. Bad input raises a ValueError / TypeError that names the argument.

        Args:
            inputs (Tensor or tuple of Tensor): clips ``(N, C, T, H, W)``; a tuple's first
                tensor must be a clip.
            sigma (float, optional): degree of selectivity (standard deviations of the
                temporal derivative). Default: 3.0
            padding (str, optional): ``"replicate"`` or ``"zeros"``; see
                :func:`selective_relevance` for the zero-padding boundary artefact.
                Default: ``"replicate"``
            signed (bool, optional): March-2020 signed threshold. Default: False
            channel_reduction (str, optional): channel reduction before the derivative (and of
                multi-channel layer maps before up-sampling): ``"sum"``, ``"abs_sum"``,
                ``"positive_sum"`` or ``"max_abs"``. Default: ``"sum"``
            upsample_mode (str, optional): interpolation of layer maps to ``(T, H, W)``.
                Default: ``"trilinear"``
            **kwargs: passed unchanged to the wrapped method's ``attribute`` (``target``,
                ``baselines``, ``additional_forward_args``, ``n_steps``,
                ``sliding_window_shapes``, ``nt_samples`` ...). ``target=None`` (or no
                target) explains each clip's predicted class with every wrapped method, also
                Captum's, which would otherwise refuse a model with several outputs.

        Returns:
            Tensor or tuple of Tensor: selected relevance with the structure the wrapped
            method returns: for every 5-D attribution of an input clip, input-shaped (or
            ``(N, 1, T, H, W)`` for a layer map); attributions of non-video inputs of a
            tuple (e.g. an audio stream) are returned unchanged.

        Raises:
            ValueError: bad inputs or selection arguments, ``return_convergence_delta=True``,
                or a wrapped method whose output has no time axis.

        Example::

            >>> from captum.attr import IntegratedGradients
            >>> explainer = SelectiveRelevance(IntegratedGradients(model))
            >>> selected = explainer.attribute(clip, sigma=2.0, target=1, n_steps=8)
        """
        if kwargs.get("return_convergence_delta", False):
            raise ValueError(
                "SelectiveRelevance does not support return_convergence_delta: selection removes "
                "relevance, so completeness no longer holds; ask the wrapped method for the delta"
            )
        # Check the selection arguments before paying for the wrapped attribution.
        _check_selection_args(sigma, padding, channel_reduction)
        method = self.attribution_method
        # captum-video's methods check their inputs with format_video_inputs before they touch
        # the model and read target=None as the predicted class; doing either here too would
        # scan the clip a second time or cost a forward pass.
        ours = type(method).__module__.startswith("captum_video.")
        if not ours:
            _, formatted = format_video_inputs(inputs, model=method.forward_func)
            takes_target = "target" in inspect.signature(method.attribute).parameters
            if takes_target and kwargs.get("target") is None:
                extra = _format_additional_forward_args(kwargs.get("additional_forward_args"))
                kwargs["target"] = target_or_prediction(method.forward_func, formatted, extra, None)
            elif takes_target:
                # Captum would read -1 as the last class, and 1.5 or "a" reach its gather().
                validate_target(kwargs["target"], _num_classes(method.forward_func))
        attr_fn = method.attribute
        # __wrapped__ skips the inner log_usage, as NoiseTunnel does; plain methods are called.
        raw = getattr(attr_fn, "__wrapped__", None)
        # Captum's gradient methods set requires_grad on the caller's tensors and leave it set
        # when they fail: restore it here (captum-video's own methods never set it).
        guard = (
            preserve_grad_requirements(_format_tensor_into_tuples(inputs))
            if not ours
            else contextlib.nullcontext()
        )
        with guard:
            attributions = (
                raw(method, inputs, **kwargs) if raw is not None else attr_fn(inputs, **kwargs)
            )
        formatted = _format_tensor_into_tuples(inputs)

        attr_is_tuple = isinstance(attributions, tuple)
        attr_tuple = attributions if attr_is_tuple else (attributions,)
        out = []
        for i, attr in enumerate(attr_tuple):
            ref = formatted[i] if attr_is_tuple and i < len(formatted) else formatted[0]
            if attr_is_tuple and (
                ref.dim() != 5 or not isinstance(attr, Tensor) or attr.dim() != 5
            ):
                out.append(attr)  # a non-video input of a tuple: nothing to select in time
                continue
            attr, reduction = self._to_input_resolution(attr, ref, channel_reduction, upsample_mode)
            selected, _, _ = selective_relevance(attr, sigma, padding, signed, reduction)
            out.append(selected)
        return tuple(out) if attr_is_tuple else out[0]

    @staticmethod
    def _to_input_resolution(
        attr: Any, ref: Tensor, channel_reduction: ChannelReduction, upsample_mode: str
    ) -> tuple[Tensor, ChannelReduction]:
        """Check a wrapped method's output and bring layer maps to the clip's (T, H, W).

        Returns the map and the channel reduction the selection is to apply: ``"sum"`` (of
        one channel: none) for a layer map reduced here, whose one channel already is the
        reduction asked for (a reduction of one reduced channel changes nothing: the sum is
        the value, and the others are non-negative, also after the up-sampling).
        """
        if not isinstance(attr, Tensor) or attr.dim() != 5:
            shape = tuple(attr.shape) if isinstance(attr, Tensor) else type(attr).__name__
            raise ValueError(
                "the wrapped attribution must return a 5-D (N, C, T, H, W) relevance or layer "
                f"map with a time axis, got {shape}; choose a layer whose output keeps time "
                "(a Conv3d block, not the pooled features or the classifier)"
            )
        size = tuple(ref.shape[2:])
        if tuple(attr.shape[2:]) == size:
            return attr, channel_reduction
        if attr.shape[2] / size[0] < COARSE_TIME_RATIO:
            warnings.warn(
                f"the layer map has {attr.shape[2]} frames for a clip of {size[0]} "
                f"(ratio < {COARSE_TIME_RATIO}); its temporal derivative after up-sampling "
                "mostly reflects the interpolation, not the model",
                UserWarning,
                stacklevel=3,
            )
        if attr.shape[1] != 1:
            attr = reduce_channels(attr, channel_reduction)
            channel_reduction = "sum"
        upsampled = upsample_to_input(attr, size, mode=upsample_mode)  # type: ignore[arg-type]
        return upsampled, channel_reduction


def _num_classes(forward_func: Any) -> int | None:
    """The outputs of the model's classifier head where the registry knows it (no forward)."""
    if not isinstance(forward_func, nn.Module):
        return None
    try:
        head = classifier_of(forward_func)
    except (ValueError, TypeError, AttributeError):
        return None
    last = [m for m in head.modules() if isinstance(m, (nn.Linear, nn.Conv3d))]
    if not last:
        return None
    layer = last[-1]
    return int(layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels)

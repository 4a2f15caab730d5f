r"""Saliency Tubes (Stergiou et al., ICIP 2019): class activation maps with the classifier's
weights over a video layer's volume (CAM, Zhou et al., CVPR 2016, extended to 3-D)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
from captum._utils.common import _select_targets
from captum._utils.typing import TargetType, TensorOrTupleOfTensorsGeneric
from captum.log import log_usage
from torch import Tensor, nn

from captum_video.attr._tube import TubeAttribution
from captum_video.registry import ReshapeFn, classifier_of

__all__ = ["SaliencyTube"]


def _classifier_weights(classifier: nn.Module) -> tuple[Tensor, Tensor | None]:
    """``(W, b)`` of a linear classifier: ``nn.Linear``, a 1x1(x1) convolution, or a
    ``Sequential`` ending in one (dropout before it is fine)."""
    module = classifier
    if isinstance(module, nn.Sequential):
        linear = [m for m in module if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]
        if not linear:
            raise TypeError("the classifier Sequential holds no nn.Linear or 1x1 convolution")
        module = linear[-1]
    if isinstance(module, nn.Linear):
        return module.weight, module.bias
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        if any(k != 1 for k in module.kernel_size) or module.groups != 1:
            raise ValueError("a convolutional classifier must have kernel size 1 and groups=1")
        return module.weight.flatten(1), module.bias
    raise TypeError(
        "classifier must be an nn.Linear, a 1x1(x1) nn.Conv, or a Sequential ending in one; "
        f"got {type(classifier).__name__}"
    )


class SaliencyTube(TubeAttribution):
    r"""Saliency Tubes (Stergiou et al., ICIP 2019): CAM with the classifier's weights.

    With ``A`` the layer's volume ``(N, K, T', H', W')`` and ``W, b`` the classifier, the raw
    map of class ``c`` is :math:`M_c = \sum_k W_{c,k} A_k` (no ReLU by default, as in the
    reference code), up-sampled to ``(T, H, W)``. Cost: one forward pass, no backward.

    **CAM identity.** For a global-average-pool + linear head (C3D-style demo models,
    torchvision ``r3d_18`` / ``mc3_18`` / ``r2plus1d_18``, ``swin3d_*`` on ``model.norm``),
    the mean of the raw layer-resolution map plus the class bias equals the logit:
    :math:`\mathrm{mean}_{t',h',w'} M_c + b_c = y_c`. It holds before up-sampling
    (``interpolate=False``); trilinear up-sampling changes the mean slightly at the borders.
    For such heads Grad-CAM without ReLU equals :math:`M_c / (T'H'W')`. Heads with a
    non-linearity after pooling, or MViT (it classifies the class token), break the identity:
    use :class:`GradCAMTube` there (so do X3D's head, which convolves after pooling, and the
    Hugging Face transformers).

    **Multi-pathway layers** (PyTorchVideo SlowFast's last stage through the registry's
    adapter): the head concatenates the pathways' pooled channels, so pathway ``p``'s map uses
    the classifier's columns of its channels; the layer maps' means add up to the logit minus
    the bias, :math:`\sum_p \mathrm{mean}(M_{c,p}) + b_c = y_c` (with a pool covering each
    pathway's whole volume). With one clip the tube is the sum of the pathway maps up-sampled
    to the clip; ``pathway=i`` picks one (see :class:`GradCAMTube`).

    Args:
        forward_func (nn.Module or callable): the model, returning ``(N, classes)`` scores.
        layer (nn.Module): the last feature layer before global pooling.
        classifier (nn.Module, optional): the linear head: ``nn.Linear``, a 1x1x1
            ``nn.Conv3d`` (``s3d``), or a ``Sequential`` ending in one. Its weights are read at
            each call. Default: the head the architecture registry knows for the model
            (:func:`~captum_video.registry.classifier_of`)
        reshape (str or callable, optional): as in :class:`GradCAMTube`. Default: None

    Example::

        >>> from captum_video.models import load_demo_model
        >>> model = load_demo_model("motion")
        >>> tube = SaliencyTube(model, model.layer3, model.fc)
        >>> clip = torch.rand(1, 3, 16, 32, 32)
        >>> raw = tube.attribute(clip, target=2, interpolate=False)
        >>> bool(torch.allclose(raw.mean() + model.fc.bias[2], model(clip)[0, 2], atol=1e-5))
        True
    """

    needs_gradient = False

    def __init__(
        self,
        forward_func: Callable,
        layer: nn.Module,
        classifier: nn.Module | None = None,
        reshape: str | ReshapeFn | None = None,
    ) -> None:
        TubeAttribution.__init__(self, forward_func, layer, reshape)
        if classifier is None:
            classifier = classifier_of(cast(nn.Module, forward_func))
        _classifier_weights(classifier)  # fail early on an unsupported head
        self.classifier = classifier

    @log_usage(part_of_slo=True)
    @torch.no_grad()
    def attribute(  # type: ignore[override]
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Any = None,
        relu_attributions: bool = False,
        interpolate: bool = True,
        interpolate_mode: str = "trilinear",
        attribute_to_layer_input: bool = False,
        pathway: int | str | None = None,
    ) -> Tensor | tuple[Tensor, ...]:
        r"""Compute the Saliency Tube of ``target`` for each clip.

        The model's state is left as it was: a model in train mode runs in eval mode for the
        call, with a warning, and every module's mode is restored afterwards, so BatchNorm
        statistics never change; the caller's tensors keep their values and
        ``requires_grad``. Bad input raises a ValueError / TypeError that names the argument.

        Args:
            inputs (Tensor or tuple of Tensor): clips ``(N, C, T, H, W)``.
            target (int, list or Tensor, optional): class per clip; ``None`` explains each
                clip's predicted class (the argmax of the model's output). Default: None
            additional_forward_args (Any, optional): extra forward arguments. Default: None
            relu_attributions (bool, optional): apply a ReLU to the map. Default: False
            interpolate (bool, optional): up-sample to each input's ``(T, H, W)``; otherwise
                return the raw layer map ``(N, 1, T', H', W')`` (the CAM identity holds on
                it). Default: True
            interpolate_mode (str, optional): as in :meth:`GradCAMTube.attribute`.
                Default: ``"trilinear"``
            attribute_to_layer_input (bool, optional): read the layer's input. Default: False
            pathway (int or str, optional): for multi-pathway layers, as in
                :meth:`GradCAMTube.attribute`. Default: None

        Returns:
            Tensor or tuple of Tensor: ``(N, 1, T, H, W)`` per input, or ``(N, 1, T', H', W')``
            with ``interpolate=False`` (one per pathway for multi-pathway layers).

        Example::

            >>> tube.attribute(clip, target=2).shape
            torch.Size([1, 1, 16, 32, 32])
        """
        return self._attribute(
            inputs,
            target,
            additional_forward_args,
            relu_attributions,
            interpolate,
            interpolate_mode,
            attribute_to_layer_input,
            pathway=pathway,
        )

    def channel_weights(
        self,
        output: Tensor,
        target: TargetType,
        leaf: Tensor,
        captured: Any,
        acts: Tensor,
        **options: Any,
    ) -> Tensor:
        """The classifier's weight row of each clip's target class, ``(N, K, 1, 1, 1)``; see
        :meth:`TubeAttribution.channel_weights`."""
        weight, _ = _classifier_weights(self.classifier)
        channels = tuple(options.get("pathway_channels", (acts.shape[1],)))
        index = int(options.get("pathway", 0))
        if weight.shape[1] != sum(channels):
            shown = f"{acts.shape[1]} channels (volume {tuple(acts.shape)})"
            if len(channels) > 1:
                shown = f"{sum(channels)} channels over its pathways {channels}"
            raise ValueError(
                f"layer {self._layer_name(self.layer)} has {shown} but the classifier "
                f"expects {weight.shape[1]} features; for channels-last or token outputs pass "
                "reshape="
            )
        offset = sum(channels[:index])  # a head concatenates the pathways' channels in order
        weight = weight[:, offset : offset + int(acts.shape[1])]
        if target is None:
            raise ValueError("SaliencyTube needs a class target for a single-output model")
        rows = torch.arange(weight.shape[0], device=weight.device)
        class_ids = _select_targets(rows.expand(acts.shape[0], -1), target)  # (N,)
        if class_ids.dim() != 1:
            raise ValueError(f"target must pick one class per clip, got {target!r}")
        return weight[class_ids][:, :, None, None, None]

r"""Grad-CAM tubes: Grad-CAM (Selvaraju et al., ICCV 2017) over a video layer's volume."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Literal

import torch
from captum._utils.common import _select_targets
from captum._utils.typing import TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr import GradientAttribution
from captum.log import log_usage
from torch import Tensor, nn

from captum_video.attr._tube import TubeAttribution
from captum_video.registry import ReshapeFn

__all__ = ["GradCAMTube"]


class GradCAMTube(TubeAttribution, GradientAttribution):
    r"""Grad-CAM over a video layer's ``(T', H', W')`` volume, up-sampled to the clip.

    **Defaults that differ from Captum's** ``LayerGradCam``: ``relu_attributions=True`` (the
    Grad-CAM paper applies a ReLU; Captum does not by default) and the map is up-sampled to
    the clip (``interpolate=True``). ``relu_attributions=False, interpolate=False`` gives
    exactly Captum's layer-shaped ``LayerGradCam`` map ``(N, 1, T', H', W')``.

    For the layer's feature volume ``A`` (``(N, K, T', H', W')``) and the target score
    ``y_c``, the channel weights are the mean gradients

    * ``temporal_weights="clip"``: :math:`\alpha_k = \mathrm{mean}_{t,h,w}\,
      \partial y_c / \partial A_{k,t,h,w}` (one weight per channel for the whole clip;
      equal to Captum's ``LayerGradCam``),
    * ``temporal_weights="per_step"``: :math:`\alpha_{k,t} = \mathrm{mean}_{h,w}\,
      \partial y_c / \partial A_{k,t,h,w}` (one weight per channel and layer time step, as
      mmaction2 and PySlowFast do; frames where a channel matters get its weight),

    and the map is :math:`\mathrm{ReLU}(\sum_k \alpha_k A_k)`, up-sampled trilinearly to
    ``(T, H, W)``. Cost: one forward and one backward from the output down to the layer only.

    Transformers work through ``reshape``: ``None`` asks the architecture registry, which
    knows torchvision's ``swin3d_*`` (channels-last stages) and ``mvit_v1_b`` / ``mvit_v2_s``
    (block outputs ``(tokens, thw)`` with a class token), PyTorchVideo's MViT, and the token
    layouts of Hugging Face's VideoMAE, TimeSformer, ViViT and X-CLIP (wrap those with
    :func:`captum_video.registry.adapt`); see :mod:`captum_video.registry.reshape`. A warning
    names a module that keeps more time steps when the layer keeps fewer than a quarter of the
    input's frames, and one names the registry's default layer when the gradient at the layer
    is zero everywhere (a head that reads only the class token gives the last block's grid no
    gradient). Maps are raw (not normalised).

    **Multi-pathway layers** (a SlowFast stage through the registry's adapter): one map per
    pathway, each with its own channel weights; with one clip the tube is the sum of the
    pathway maps up-sampled to the clip, with one clip per pathway each input gets its
    pathway's map, and ``pathway=i`` picks one (see :mod:`captum_video.attr._tube`).

    Args:
        forward_func (nn.Module or callable): the model, returning ``(N, classes)`` scores.
        layer (nn.Module): the layer to explain; it must run once per forward pass.
        reshape (str or callable, optional): how to read the layer output as
            ``(N, K, T', H', W')``: ``None`` (ask the registry), ``"identity"``,
            ``"swin3d"``, ``"mvit"``, ``"pathways"``, or a function of the layer's output (a
            pure re-indexing; it is applied to the gradient as well). Default: None

    Example::

        >>> from captum_video.models import load_demo_model
        >>> model = load_demo_model("motion")
        >>> tube = GradCAMTube(model, model.layer3)
        >>> clip = torch.rand(2, 3, 16, 32, 32)
        >>> tube.attribute(clip, target=[0, 1], temporal_weights="per_step").shape
        torch.Size([2, 1, 16, 32, 32])
    """

    def __init__(
        self, forward_func: Callable, layer: nn.Module, reshape: str | ReshapeFn | None = None
    ) -> None:
        TubeAttribution.__init__(self, forward_func, layer, reshape)
        GradientAttribution.__init__(self, forward_func)

    @log_usage(part_of_slo=True)
    def attribute(  # type: ignore[override]
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Any = None,
        temporal_weights: Literal["clip", "per_step"] = "clip",
        relu_attributions: bool = True,
        interpolate: bool = True,
        interpolate_mode: str = "trilinear",
        attribute_to_layer_input: bool = False,
        pathway: int | str | None = None,
    ) -> Tensor | tuple[Tensor, ...]:
        r"""Compute the Grad-CAM tube of ``target`` for each clip.

        The model's state is left as it was: a model in train mode runs in eval mode for the
        call, with a warning, and every module's mode is restored afterwards, so BatchNorm
        statistics never change; the caller's tensors keep their values and
        ``requires_grad``. Bad input raises a ValueError / TypeError that names the argument.

        Args:
            inputs (Tensor or tuple of Tensor): clips ``(N, C, T, H, W)``; a tuple for models
                with several inputs (e.g. RGB and flow streams).
            target (int, list, Tensor or tuple, optional): output indices as in Captum;
                ``None`` explains each clip's predicted class (the argmax of the model's
                output). Default: None
            additional_forward_args (Any, optional): extra forward arguments. Default: None
            temporal_weights (str, optional): ``"clip"`` (weights averaged over
                ``(T', H', W')``, equal to Captum's ``LayerGradCam``) or ``"per_step"``
                (weights averaged over ``(H', W')`` per layer time step). Default: ``"clip"``
            relu_attributions (bool, optional): apply a ReLU to the map (Grad-CAM paper; Captum
                defaults to False). Default: True
            interpolate (bool, optional): up-sample to each input's ``(T, H, W)``; otherwise
                return the layer-resolution map ``(N, 1, T', H', W')``. Default: True
            interpolate_mode (str, optional): ``"trilinear"``, ``"nearest"``,
                ``"nearest-exact"`` or ``"area"``. Default: ``"trilinear"``
            attribute_to_layer_input (bool, optional): explain the layer's input instead of
                its output. Default: False
            pathway (int or str, optional): for multi-pathway layers: ``None`` (each pathway
                input gets its pathway's map; a single clip gets their sum), ``"sum"``, or
                the index of one pathway. Default: None

        Returns:
            Tensor or tuple of Tensor: ``(N, 1, T, H, W)`` per input (a tuple for tuple inputs;
            non-video inputs get an empty tensor), or one ``(N, 1, T', H', W')`` layer map
            with ``interpolate=False`` (a tuple of them, one per pathway, for multi-pathway
            layers). On the input's device.

        Example::

            >>> tube.attribute(clip, target=0, interpolate=False).shape
            torch.Size([2, 1, 4, 4, 4])
        """
        if temporal_weights not in ("clip", "per_step"):
            raise ValueError(
                f"temporal_weights must be 'clip' or 'per_step', got {temporal_weights!r}"
            )
        return self._attribute(
            inputs,
            target,
            additional_forward_args,
            relu_attributions,
            interpolate,
            interpolate_mode,
            attribute_to_layer_input,
            pathway=pathway,
            temporal_weights=temporal_weights,
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
        """Mean gradient of the target score per channel (and per time step with
        ``temporal_weights="per_step"``); see :meth:`TubeAttribution.channel_weights`."""
        name = self._layer_name(self.layer)
        index = int(options.get("pathway", 0))
        more = index < len(options.get("pathway_channels", ())) - 1  # pathways still to weight
        with torch.enable_grad():  # callers such as NoiseTunnel run us under no_grad
            scores = _select_targets(output, target)
            if not scores.requires_grad:
                raise ValueError(f"the model's output does not depend on layer {name}")
            (grad,) = torch.autograd.grad(scores.sum(), leaf, retain_graph=more, allow_unused=True)
        if grad is None:  # this pathway's tensor does not reach the output
            grad = torch.zeros_like(leaf)
        grads = self.volume(captured, grad, acts.shape[0], pathway=index)
        if not bool(grads.any()):
            where = f" (pathway {index})" if len(options.get("pathway_channels", ())) > 1 else ""
            hint = self._registry_hint() or (
                "; if the head reads a class token (MViT, TimeSformer, ViViT), explain a block "
                "before the last one"
            )
            warnings.warn(
                f"the gradient of the target at layer {name}{where} is zero everywhere (after "
                f"reshape), so the tube is empty{hint}",
                UserWarning,
                stacklevel=4,
            )
        dims = (2, 3, 4) if options["temporal_weights"] == "clip" else (3, 4)
        return torch.mean(grads, dim=dims, keepdim=True)

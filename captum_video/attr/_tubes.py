r"""Class activation tubes: Grad-CAM and Saliency Tubes over a layer's ``(T', H', W')`` volume.

Both methods read one layer's feature volume ``A`` of shape ``(N, K, T', H', W')`` (after a
*reshape* for transformers, see :mod:`captum_video.attr._token_reshape`), weight its channels
for the target class, and up-sample the map to the clip's ``(T, H, W)`` so the salient region
forms a tube through the frames.

Why not Captum's ``LayerGradCam`` plus ``interpolate``: it averages gradients over time as well
(one weight per channel per clip, which ``temporal_weights="clip"`` reproduces exactly), it
cannot read channels-last or token outputs, and it records the autograd graph below the layer
although only the gradient *at* the layer is needed. Here the forward runs without a graph up
to the layer; a forward hook swaps the layer output for a fresh leaf and switches the graph on,
so the backward stops at the layer.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from captum._utils.common import _format_output, _run_forward, _select_targets
from captum._utils.typing import TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr import GradientAttribution, LayerAttribution
from captum.log import log_usage
from torch import Tensor, nn

from captum_video._validation import format_video_inputs, removing_hooks, validate_target
from captum_video.attr._token_reshape import ReshapeFn, pick_reshape, resolve_reshape

__all__ = ["GradCAMTube", "SaliencyTube"]

_INTERPOLATE_MODES = ("trilinear", "nearest", "nearest-exact", "area")


# -- shared machinery -------------------------------------------------------------------------


def _replace_first(value: Any, tensor: Tensor) -> Any:
    """``value`` (a tensor, or a tuple/list led by a tensor) with its first tensor replaced."""
    if isinstance(value, Tensor):
        return tensor
    return type(value)((tensor, *value[1:]))


def _first(value: Any, where: str) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], Tensor):
        return value[0]
    raise TypeError(
        f"the layer's {where} must be a tensor or a tuple led by a tensor, "
        f"got {type(value).__name__}"
    )


def _run_and_capture(
    forward_func: Callable,
    layer: nn.Module,
    inputs: tuple[Tensor, ...],
    additional_forward_args: Any,
    attribute_to_layer_input: bool,
    track_grad: bool,
) -> tuple[Tensor, Tensor, Any]:
    """Run the model once and capture the layer's output (or input).

    With ``track_grad`` the forward runs under ``no_grad`` up to the layer; the hook replaces
    the layer's tensor by a leaf that requires grad and turns grad mode on, so the graph covers
    only the part above the layer. The leaf is passed on as a clone, so in-place operations
    after the layer (``out += residual``) cannot touch it.

    Returns ``(model_output, leaf, captured)`` where ``captured`` is the layer's output (or
    input tuple) with ``leaf`` in place of its first tensor.
    """
    where = "input" if attribute_to_layer_input else "output"
    captured: list[tuple[Tensor, Any]] = []

    def swap(value: Any) -> Any:
        if captured:
            raise ValueError(
                f"the layer runs more than once in one forward pass ({type(layer).__name__}); "
                "a tube needs a layer that runs exactly once, e.g. a stage of the network"
            )
        leaf = _first(value, where).detach()
        if track_grad:
            leaf.requires_grad_(True)
            torch.set_grad_enabled(True)  # grad mode is restored by the caller's no_grad block
        captured.append((leaf, _replace_first(value, leaf)))
        return _replace_first(value, leaf.clone() if track_grad else leaf)

    with removing_hooks() as handles, torch.no_grad():
        if attribute_to_layer_input:
            handles.append(layer.register_forward_pre_hook(lambda _m, args: swap(args)))
        else:
            handles.append(layer.register_forward_hook(lambda _m, _a, out: swap(out)))
        output = _run_forward(forward_func, inputs, None, additional_forward_args)
    if not captured:
        raise ValueError(
            f"the layer {type(layer).__name__} did not run in the forward pass; pass a module "
            "that the model calls"
        )
    if not isinstance(output, Tensor):
        raise TypeError(f"the model must return a tensor of scores, got {type(output).__name__}")
    leaf, value = captured[0]
    return output, leaf, value


def _resolve_target(output: Tensor, target: TargetType) -> TargetType:
    """Validate ``target``; ``None`` means the predicted class of each clip."""
    n = output.shape[0]
    if output.dim() >= 2:
        validate_target(target, int(output.shape[1]), n)
    if target is None:
        if output.dim() < 2 or output[0].numel() == 1:
            return None
        return output.detach().reshape(n, -1).argmax(1)
    if isinstance(target, Tensor):
        return target.to(output.device)
    return target


def _volume(reshape: ReshapeFn, captured: Any, tensor: Tensor, batch: int, name: str) -> Tensor:
    """Apply the reshape to ``captured`` with ``tensor`` in its first position; check 5-D."""
    volume = reshape(_replace_first(captured, tensor))
    if not isinstance(volume, Tensor) or volume.dim() != 5 or volume.shape[0] != batch:
        shape = tuple(volume.shape) if isinstance(volume, Tensor) else type(volume).__name__
        raise ValueError(
            f"layer {name} gives {shape} after reshape, but a tube needs a (N={batch}, K, T', H', "
            "W') volume with a time axis: pick a 3-D conv stage (not the pooled features or the "
            "classifier), or pass reshape= for token / channels-last outputs (presets: "
            "'swin3d', 'mvit')"
        )
    return volume


def _upsample(cam: Tensor, inputs: tuple[Tensor, ...], mode: str) -> tuple[Tensor, ...]:
    """One map per input tensor: up-sampled to each video input's ``(T, H, W)``.

    Non-video inputs (e.g. audio) get an empty tensor, as Captum's ``GuidedGradCam`` does.
    """
    maps = []
    for inp in inputs:
        if inp.dim() == 5:
            up = LayerAttribution.interpolate(cam, tuple(inp.shape[2:]), interpolate_mode=mode)
            maps.append(up.to(inp.dtype))
        else:
            maps.append(torch.empty(0, device=cam.device, dtype=cam.dtype))
    return tuple(maps)


class _TubeMixin:
    """What both tube methods share: validation, the reshape and the time-resolution check."""

    forward_func: Callable
    layer: nn.Module
    _reshape_arg: str | ReshapeFn | None

    def _init_tube(self, reshape: str | ReshapeFn | None) -> None:
        if not isinstance(self.layer, nn.Module):
            raise TypeError(f"layer must be an nn.Module, got {type(self.layer).__name__}")
        self._reshape_arg = reshape
        self.reshape = resolve_reshape(reshape, self.forward_func, self.layer)
        self._better_layer: dict[int, str | None] = {}

    def _layer_name(self, module: nn.Module) -> str:
        if isinstance(self.forward_func, nn.Module):
            for name, m in self.forward_func.named_modules():
                if m is module:
                    return f"'{name}'" if name else "the model itself"
        return type(module).__name__

    def _capture(
        self,
        inputs: tuple[Tensor, ...],
        additional_forward_args: Any,
        attribute_to_layer_input: bool,
        track_grad: bool,
    ) -> tuple[Tensor, Tensor, Any, Tensor]:
        """One forward pass: ``(output, leaf, captured, activations)``, the activations being
        the layer's tensor reshaped to an ``(N, K, T', H', W')`` volume (detached)."""
        output, leaf, captured = _run_and_capture(
            self.forward_func,
            self.layer,
            inputs,
            additional_forward_args,
            attribute_to_layer_input,
            track_grad=track_grad,
        )
        acts = _volume(
            self.reshape, captured, leaf.detach(), inputs[0].shape[0], self._layer_name(self.layer)
        )
        return output, leaf, captured, acts

    def _check_options(self, interpolate_mode: str) -> None:
        if interpolate_mode not in _INTERPOLATE_MODES:
            raise ValueError(
                f"interpolate_mode must be one of {_INTERPOLATE_MODES}, got {interpolate_mode!r}"
            )

    def _warn_if_coarse_in_time(
        self, volume: Tensor, inputs: tuple[Tensor, ...], additional_forward_args: Any
    ) -> None:
        frames, steps = int(inputs[0].shape[2]), int(volume.shape[2])
        if 4 * steps >= frames:
            return
        if frames not in self._better_layer:
            self._better_layer[frames] = self._find_finer_layer(inputs, additional_forward_args)
        better = self._better_layer[frames]
        hint = f"{better} keeps more, pass it as layer" if better else "choose an earlier layer"
        warnings.warn(
            f"layer {self._layer_name(self.layer)} keeps {steps} of the input's {frames} time "
            f"steps (fewer than a quarter), so the tube barely resolves time; {hint}",
            UserWarning,
            stacklevel=3,
        )

    def _find_finer_layer(self, inputs: tuple[Tensor, ...], extra: Any) -> str | None:
        """Name the module, at most as deep as the layer, that runs last and keeps at least a
        quarter of the frames. One extra forward (no graph), cached per clip length."""
        model = self.forward_func
        if not isinstance(model, nn.Module):
            return None
        frames = int(inputs[0].shape[2])
        names = {m: n for n, m in model.named_modules()}
        depth = names.get(self.layer, "").count(".")
        ancestors = {m for m in model.modules() if any(c is self.layer for c in m.modules())}
        found: list[tuple[str, int]] = []

        def record(module: nn.Module, _args: Any, out: Any) -> None:
            name = names.get(module, "")
            if module in ancestors or not name or name.count(".") > depth:
                return
            try:
                vol = _preset_for(model, module)(out)
            except (TypeError, ValueError, RuntimeError, IndexError):
                return
            if isinstance(vol, Tensor) and vol.dim() == 5 and 4 * vol.shape[2] >= frames:
                found.append((f"'{name}'", int(vol.shape[2])))

        with removing_hooks() as handles, torch.no_grad():
            for module in names:
                handles.append(module.register_forward_hook(record))
            _run_forward(model, inputs, None, extra)
        return f"{found[-1][0]} ({found[-1][1]} steps)" if found else None


def _preset_for(model: nn.Module, module: nn.Module) -> ReshapeFn:
    """The preset reshape of ``module`` (used to read time lengths of candidate layers)."""
    return resolve_reshape(pick_reshape(model, module), model, module)


# -- Grad-CAM tubes ---------------------------------------------------------------------------


class GradCAMTube(LayerAttribution, GradientAttribution, _TubeMixin):
    r"""Grad-CAM over a video layer's ``(T', H', W')`` volume, up-sampled to the clip.

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

    Transformers work through ``reshape``: ``None`` picks a preset for torchvision's
    ``swin3d_*`` (channels-last stages) and ``mvit_v1_b`` / ``mvit_v2_s`` (block outputs
    ``(tokens, thw)`` with a class token); see :mod:`captum_video.attr._token_reshape`.
    A warning names a module that keeps more time steps when the layer keeps fewer than a
    quarter of the input's frames. Maps are raw (not normalised).

    Args:
        forward_func (nn.Module or callable): the model, returning ``(N, classes)`` scores.
        layer (nn.Module): the layer to explain; it must run once per forward pass.
        reshape (str or callable, optional): how to read the layer output as
            ``(N, K, T', H', W')``: ``None`` (pick a preset from the model and layer),
            ``"identity"``, ``"swin3d"``, ``"mvit"``, or a function of the layer's output
            (a pure re-indexing; it is applied to the gradient as well). Default: None

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
        LayerAttribution.__init__(self, forward_func, layer)
        GradientAttribution.__init__(self, forward_func)
        self._init_tube(reshape)

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
    ) -> Tensor | tuple[Tensor, ...]:
        r"""Compute the Grad-CAM tube of ``target`` for each clip.

        Args:
            inputs (Tensor or tuple of Tensor): clips ``(N, C, T, H, W)``; a tuple for models
                with several inputs (e.g. RGB and flow streams).
            target (int, list, Tensor or tuple, optional): output indices as in Captum;
                ``None`` explains each clip's predicted class. Default: None
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

        Returns:
            Tensor or tuple of Tensor: ``(N, 1, T, H, W)`` per input (a tuple for tuple inputs;
            non-video inputs get an empty tensor), or one ``(N, 1, T', H', W')`` layer map
            with ``interpolate=False``. On the input's device.

        Example::

            >>> tube.attribute(clip, target=0, interpolate=False).shape
            torch.Size([2, 1, 4, 4, 4])
        """
        is_tuple, formatted = format_video_inputs(inputs)
        if temporal_weights not in ("clip", "per_step"):
            raise ValueError(
                f"temporal_weights must be 'clip' or 'per_step', got {temporal_weights!r}"
            )
        self._check_options(interpolate_mode)
        output, leaf, captured, acts = self._capture(
            formatted, additional_forward_args, attribute_to_layer_input, track_grad=True
        )
        name, batch = self._layer_name(self.layer), formatted[0].shape[0]
        target = _resolve_target(output, target)
        with torch.enable_grad():  # callers such as NoiseTunnel run us under no_grad
            scores = _select_targets(output, target)
            if not scores.requires_grad:
                raise ValueError(f"the model's output does not depend on layer {name}")
            (grad,) = torch.autograd.grad(scores.sum(), leaf)
        grads = _volume(self.reshape, captured, grad, batch, name)
        if not bool(grads.any()):
            warnings.warn(
                f"the gradient of the target at layer {name} is zero everywhere (after reshape), "
                "so the tube is empty; if the head reads a class token (MViT), explain a block "
                "before the last one",
                UserWarning,
                stacklevel=2,
            )
        self._warn_if_coarse_in_time(acts, formatted, additional_forward_args)
        dims = (2, 3, 4) if temporal_weights == "clip" else (3, 4)
        weights = torch.mean(grads, dim=dims, keepdim=True)
        cam = torch.sum(weights * acts, dim=1, keepdim=True)
        if relu_attributions:
            cam = F.relu(cam)
        if not interpolate:
            return cam
        return _format_output(is_tuple, _upsample(cam, formatted, interpolate_mode))


# -- Saliency Tubes ---------------------------------------------------------------------------


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


class SaliencyTube(LayerAttribution, _TubeMixin):
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
    use :class:`GradCAMTube` there.

    Args:
        forward_func (nn.Module or callable): the model, returning ``(N, classes)`` scores.
        layer (nn.Module): the last feature layer before global pooling.
        classifier (nn.Module): the linear head: ``nn.Linear``, a 1x1x1 ``nn.Conv3d``
            (``s3d``), or a ``Sequential`` ending in one. Its weights are read at each call.
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

    def __init__(
        self,
        forward_func: Callable,
        layer: nn.Module,
        classifier: nn.Module,
        reshape: str | ReshapeFn | None = None,
    ) -> None:
        LayerAttribution.__init__(self, forward_func, layer)
        _classifier_weights(classifier)  # fail early on an unsupported head
        self.classifier = classifier
        self._init_tube(reshape)

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
    ) -> Tensor | tuple[Tensor, ...]:
        r"""Compute the Saliency Tube of ``target`` for each clip.

        Args:
            inputs (Tensor or tuple of Tensor): clips ``(N, C, T, H, W)``.
            target (int, list or Tensor, optional): class per clip; ``None`` explains each
                clip's predicted class. Default: None
            additional_forward_args (Any, optional): extra forward arguments. Default: None
            relu_attributions (bool, optional): apply a ReLU to the map. Default: False
            interpolate (bool, optional): up-sample to each input's ``(T, H, W)``; otherwise
                return the raw layer map ``(N, 1, T', H', W')`` (the CAM identity holds on
                it). Default: True
            interpolate_mode (str, optional): as in :meth:`GradCAMTube.attribute`.
                Default: ``"trilinear"``
            attribute_to_layer_input (bool, optional): read the layer's input. Default: False

        Returns:
            Tensor or tuple of Tensor: ``(N, 1, T, H, W)`` per input, or ``(N, 1, T', H', W')``
            with ``interpolate=False``.

        Example::

            >>> tube.attribute(clip, target=2).shape
            torch.Size([1, 1, 16, 32, 32])
        """
        is_tuple, formatted = format_video_inputs(inputs)
        self._check_options(interpolate_mode)
        output, _, _, acts = self._capture(
            formatted, additional_forward_args, attribute_to_layer_input, track_grad=False
        )
        weight, _ = _classifier_weights(self.classifier)
        if weight.shape[1] != acts.shape[1]:
            raise ValueError(
                f"layer {self._layer_name(self.layer)} has {acts.shape[1]} channels (volume "
                f"{tuple(acts.shape)}) but the classifier expects {weight.shape[1]} features; "
                "for channels-last or token outputs pass reshape="
            )
        target = _resolve_target(output, target)
        rows = torch.arange(weight.shape[0], device=weight.device)
        if target is None:
            raise ValueError("SaliencyTube needs a class target for a single-output model")
        class_weights = _select_targets(rows.expand(acts.shape[0], -1), target)  # (N,) class ids
        if class_weights.dim() != 1:
            raise ValueError(f"target must pick one class per clip, got {target!r}")
        w = weight[class_weights].to(acts.dtype)  # (N, K)
        self._warn_if_coarse_in_time(acts, formatted, additional_forward_args)
        cam = torch.einsum("nk,nkthw->nthw", w, acts).unsqueeze(1)
        if relu_attributions:
            cam = F.relu(cam)
        if not interpolate:
            return cam
        return _format_output(is_tuple, _upsample(cam, formatted, interpolate_mode))

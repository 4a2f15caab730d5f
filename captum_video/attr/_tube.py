r"""Class activation tubes: the shared pipeline of Grad-CAM tubes and Saliency Tubes.

A tube method reads one layer's feature volume ``A`` of shape ``(N, K, T', H', W')`` (after a
*reshape* for transformers, see :mod:`captum_video.registry.reshape`), weights its channels for
the target class, sums them, and up-samples the map to the clip's ``(T, H, W)`` so the salient
region forms a tube through the frames. :class:`TubeAttribution` owns that pipeline (inputs,
target, hooks, reshape, the time-resolution check, ReLU and up-sampling); a subclass only says
how it weights the channels, as torch-cam's CAM classes do.

Why not Captum's ``LayerGradCam`` plus ``interpolate``: it cannot read channels-last or token
outputs, and it records the autograd graph below the layer although only the gradient *at*
the layer is needed. Here the forward runs without a graph up to the layer; a forward hook
swaps the layer output for a fresh leaf and switches the graph on, so the backward stops at
the layer.
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from captum._utils.common import _format_output, _run_forward
from captum._utils.typing import TargetType
from captum.attr import LayerAttribution
from torch import Tensor, nn

from captum_video._validation import format_video_inputs, removing_hooks, resolve_target
from captum_video.registry import ReshapeFn, first_tensor, reshape_for, resolve_reshape
from captum_video.relevance import upsample_to_input

__all__ = ["TubeAttribution"]

_INTERPOLATE_MODES = ("trilinear", "nearest", "nearest-exact", "area")


def _replace_first(value: Any, tensor: Tensor) -> Any:
    """``value`` (a tensor, or a tuple/list led by a tensor) with its first tensor replaced."""
    if isinstance(value, Tensor):
        return tensor
    return type(value)((tensor, *value[1:]))


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
        leaf = first_tensor(value, where).detach()
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


def _upsample(cam: Tensor, inputs: tuple[Tensor, ...], mode: str) -> tuple[Tensor, ...]:
    """One map per input tensor: up-sampled to each video input's ``(T, H, W)``.

    Non-video inputs (e.g. audio) get an empty tensor, as Captum's ``GuidedGradCam`` does.
    """
    maps = []
    for inp in inputs:
        if inp.dim() == 5:
            maps.append(upsample_to_input(cam, tuple(inp.shape[2:]), mode).to(inp.dtype))
        else:
            maps.append(torch.empty(0, device=cam.device, dtype=cam.dtype))
    return tuple(maps)


class TubeAttribution(LayerAttribution):
    r"""Base class of class activation tubes over a video layer's ``(T', H', W')`` volume.

    :meth:`_attribute` runs the whole pipeline: it validates the clips, runs the model once
    capturing the layer (with the graph above the layer only when :attr:`needs_gradient`),
    reads the layer as a volume ``A`` ``(N, K, T', H', W')``, resolves the target (``None``:
    each clip's predicted class), asks :meth:`channel_weights` for weights ``w`` broadcastable
    to ``A``, and returns :math:`\sum_k w_k A_k` (optionally ReLU'd), up-sampled to each
    input's ``(T, H, W)``. A warning names a module that keeps more time steps when the layer
    keeps fewer than a quarter of the input's frames.

    Args:
        forward_func (nn.Module or callable): the model, returning ``(N, classes)`` scores.
        layer (nn.Module): the layer to explain; it must run once per forward pass.
        reshape (str or callable, optional): how to read the layer output as
            ``(N, K, T', H', W')``: ``None`` (ask the registry), ``"identity"``,
            ``"swin3d"``, ``"mvit"``, or a function of the layer's output (a pure
            re-indexing; it is applied to the gradient as well). Default: None

    Returns:
        A tube method; subclasses define ``attribute``.

    Example::

        >>> class ActivationTube(TubeAttribution):   # plain channel mean, no class weights
        ...     needs_gradient = False
        ...     def channel_weights(self, output, target, leaf, captured, acts, **kw):
        ...         return acts.new_ones(acts.shape[:2]).view(*acts.shape[:2], 1, 1, 1)
        ...     def attribute(self, inputs, target=None):
        ...         return self._attribute(inputs, target, None, False, True, "trilinear", False)
    """

    #: Whether :meth:`channel_weights` needs the gradient of the target at the layer.
    needs_gradient = True

    def __init__(
        self, forward_func: Callable, layer: nn.Module, reshape: str | ReshapeFn | None = None
    ) -> None:
        LayerAttribution.__init__(self, forward_func, layer)
        if not isinstance(self.layer, nn.Module):
            raise TypeError(f"layer must be an nn.Module, got {type(self.layer).__name__}")
        self.reshape = resolve_reshape(reshape, self.forward_func, self.layer)
        self._better_layer: dict[int, str | None] = {}

    @abstractmethod
    def channel_weights(
        self,
        output: Tensor,
        target: TargetType,
        leaf: Tensor,
        captured: Any,
        acts: Tensor,
        **options: Any,
    ) -> Tensor:
        """Weights of the layer's channels, broadcastable to ``acts`` ``(N, K, T', H', W')``.

        Args:
            output (Tensor): the model's output (with a graph above the layer when
                :attr:`needs_gradient`).
            target: the resolved target (``None`` only for single-output models).
            leaf (Tensor): the layer's tensor as the leaf the graph starts from.
            captured (Any): the layer's output (or input) with ``leaf`` in its first place.
            acts (Tensor): the layer's volume, detached.
            **options: the method's own options (e.g. ``temporal_weights``).

        Returns:
            Tensor: the weights, e.g. ``(N, K, 1, 1, 1)`` or ``(N, K, T', 1, 1)``.
        """

    def _attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: TargetType,
        additional_forward_args: Any,
        relu_attributions: bool,
        interpolate: bool,
        interpolate_mode: str,
        attribute_to_layer_input: bool,
        **options: Any,
    ) -> Tensor | tuple[Tensor, ...]:
        """The tube pipeline; ``attribute`` of a subclass calls it with its own options."""
        is_tuple, formatted = format_video_inputs(inputs)
        if interpolate_mode not in _INTERPOLATE_MODES:
            raise ValueError(
                f"interpolate_mode must be one of {_INTERPOLATE_MODES}, got {interpolate_mode!r}"
            )
        output, leaf, captured = _run_and_capture(
            self.forward_func,
            self.layer,
            formatted,
            additional_forward_args,
            attribute_to_layer_input,
            track_grad=self.needs_gradient,
        )
        acts = self.volume(captured, leaf.detach(), formatted[0].shape[0])
        target = resolve_target(output, target)
        weights = self.channel_weights(output, target, leaf, captured, acts, **options)
        self._warn_if_coarse_in_time(acts, formatted, additional_forward_args)
        cam = torch.sum(weights.to(acts.dtype) * acts, dim=1, keepdim=True)
        if relu_attributions:
            cam = F.relu(cam)
        if not interpolate:
            return cam
        return _format_output(is_tuple, _upsample(cam, formatted, interpolate_mode))

    def volume(self, captured: Any, tensor: Tensor, batch: int) -> Tensor:
        """``captured`` with ``tensor`` in its first place, reshaped to ``(N, K, T', H', W')``.

        Args:
            captured (Any): the layer's output (or input), as captured.
            tensor (Tensor): the layer tensor to read (its activations or their gradient).
            batch (int): the number of clips N.

        Returns:
            Tensor: the volume.

        Raises:
            ValueError: the reshape does not give a 5-D volume of ``batch`` clips.
        """
        volume = self.reshape(_replace_first(captured, tensor))
        if not isinstance(volume, Tensor) or volume.dim() != 5 or volume.shape[0] != batch:
            shape = tuple(volume.shape) if isinstance(volume, Tensor) else type(volume).__name__
            raise ValueError(
                f"layer {self._layer_name(self.layer)} gives {shape} after reshape, but a tube "
                f"needs a (N={batch}, K, T', H', W') volume with a time axis: pick a 3-D conv "
                "stage (not the pooled features or the classifier), or pass reshape= for token "
                "/ channels-last outputs (presets: 'swin3d', 'mvit')"
            )
        return volume

    def _layer_name(self, module: nn.Module) -> str:
        if isinstance(self.forward_func, nn.Module):
            for name, m in self.forward_func.named_modules():
                if m is module:
                    return f"'{name}'" if name else "the model itself"
        return type(module).__name__

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
            stacklevel=4,
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
                vol = resolve_reshape(reshape_for(model, module), model, module)(out)
            except (TypeError, ValueError, RuntimeError, IndexError):
                return
            if isinstance(vol, Tensor) and vol.dim() == 5 and 4 * vol.shape[2] >= frames:
                found.append((f"'{name}'", int(vol.shape[2])))

        with removing_hooks() as handles, torch.no_grad():
            for module in names:
                handles.append(module.register_forward_hook(record))
            _run_forward(model, inputs, None, extra)
        return f"{found[-1][0]} ({found[-1][1]} steps)" if found else None

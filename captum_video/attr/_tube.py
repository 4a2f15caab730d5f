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

**Multi-pathway layers** (a SlowFast stage returns ``[slow, fast]``; the registry's
``"pathways"`` reshape reads one volume per pathway) give one map per pathway, each weighted
with its own channels. Up-sampled, the maps are combined as Captum combines per-input
attributions: with one clip input per pathway (``(slow, fast)`` through the SlowFast adapter)
each input gets its pathway's map; with a single clip the map is the **sum** of the pathway
maps, each up-sampled to the clip's ``(T, H, W)`` (the head adds the pathways' pooled
features, so for a pool + linear head the sum keeps the CAM identity
:math:`\mathrm{mean}(M) + b_c \approx y_c`). ``pathway=i`` picks one pathway's map;
``interpolate=False`` returns the layer maps, one per pathway, as Captum's layer methods do for
layers with several outputs.
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

from captum_video._model_state import evaluating, removing_hooks
from captum_video._targets import resolve_target
from captum_video._validation import format_video_inputs
from captum_video.registry import (
    ReshapeFn,
    default_layer,
    family_of,
    first_tensor,
    reshape_for,
    resolve_reshape,
)
from captum_video.relevance import upsample_to_input

__all__ = ["TubeAttribution"]

_INTERPOLATE_MODES = ("trilinear", "nearest", "nearest-exact", "area")


def _tensor_slots(value: Any) -> list[int]:
    """Positions of the floating-point tensors of a layer's tuple / list output (a tensor
    output: ``[0]``). The first is the explained tensor; a multi-pathway output has one per
    pathway."""
    if isinstance(value, Tensor):
        return [0]
    return [i for i, v in enumerate(value) if isinstance(v, Tensor) and v.is_floating_point()]


def _replace_tensors(value: Any, tensors: list[Tensor]) -> Any:
    """``value`` with its tensors (:func:`_tensor_slots`) replaced by ``tensors``, in order."""
    if isinstance(value, Tensor):
        return tensors[0]
    items = list(value)
    for slot, tensor in zip(_tensor_slots(value), tensors, strict=True):
        items[slot] = tensor
    return type(value)(items)


def _replace_at(value: Any, index: int, tensor: Tensor) -> Any:
    """``value`` with its ``index``-th tensor replaced (0: the first, as for one volume)."""
    if isinstance(value, Tensor):
        return tensor
    items = list(value)
    items[_tensor_slots(value)[index]] = tensor
    return type(value)(items)


def _run_and_capture(
    forward_func: Callable,
    layer: nn.Module,
    inputs: tuple[Tensor, ...],
    additional_forward_args: Any,
    attribute_to_layer_input: bool,
    track_grad: bool,
) -> tuple[Tensor, list[Tensor], Any]:
    """Run the model once and capture the layer's output (or input).

    With ``track_grad`` the forward runs under ``no_grad`` up to the layer; the hook replaces
    the layer's tensor by a leaf that requires grad and turns grad mode on, so the graph covers
    only the part above the layer. The leaf is passed on as a clone, so in-place operations
    after the layer (``out += residual``) cannot touch it.

    Every floating-point tensor of a tuple / list output becomes a leaf (one per pathway of a
    multi-pathway stage). Returns ``(model_output, leaves, captured)`` where ``captured`` is
    the layer's output (or input tuple) with the leaves in place of its tensors.
    """
    where = "input" if attribute_to_layer_input else "output"
    captured: list[tuple[list[Tensor], Any]] = []

    def swap(value: Any) -> Any:
        if captured:
            raise ValueError(
                f"the layer runs more than once in one forward pass ({type(layer).__name__}); "
                "a tube needs a layer that runs exactly once, e.g. a stage of the network"
            )
        first_tensor(value, where)  # a tensor, or a tuple / list led by one
        slots = _tensor_slots(value)
        leaves = [(value if isinstance(value, Tensor) else value[i]).detach() for i in slots]
        if track_grad:
            for leaf in leaves:
                leaf.requires_grad_(True)
            torch.set_grad_enabled(True)  # grad mode is restored by the caller's no_grad block
        captured.append((leaves, _replace_tensors(value, leaves)))
        # A new container for the model: layers after it may fill a list in place (PyTorchVideo).
        return _replace_tensors(value, [leaf.clone() if track_grad else leaf for leaf in leaves])

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
        raise TypeError(
            f"the model must return a tensor of scores, got {type(output).__name__}; wrap "
            "models that return a ModelOutput or take other layouts with "
            "captum_video.registry.adapt(model)"
        )
    leaves, value = captured[0]
    return output, leaves, value


def _upsample(cam: Tensor, inputs: tuple[Tensor, ...], mode: str) -> tuple[Tensor, ...]:
    """One map per input tensor: up-sampled to each video input's ``(T, H, W)``.

    Non-video inputs (e.g. audio) get an empty tensor, as Captum's ``GuidedGradCam`` does.
    """
    maps = []
    for inp in inputs:
        if inp.dim() == 5:
            size = (int(inp.shape[2]), int(inp.shape[3]), int(inp.shape[4]))
            maps.append(upsample_to_input(cam, size, mode).to(inp.dtype))
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
    keeps fewer than a quarter of the input's frames. A multi-pathway layer gives one volume
    per pathway; :meth:`channel_weights` is then called once per pathway (see the module
    docstring for how the maps are combined).

    Args:
        forward_func (nn.Module or callable): the model, returning ``(N, classes)`` scores.
        layer (nn.Module): the layer to explain; it must run once per forward pass.
        reshape (str or callable, optional): how to read the layer output as
            ``(N, K, T', H', W')``: ``None`` (ask the registry), ``"identity"``,
            ``"swin3d"``, ``"mvit"``, ``"pathways"``, or a function of the layer's output (a
            pure re-indexing; it is applied to the gradient as well). Default: None

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
            leaf (Tensor): the layer's tensor as the leaf the graph starts from (for a
                multi-pathway layer: this pathway's tensor).
            captured (Any): the layer's output (or input) with the leaves in place of its
                tensors.
            acts (Tensor): the layer's volume (this pathway's), detached.
            **options: the method's own options (e.g. ``temporal_weights``), and
                ``pathway`` (the index of the volume, 0 for single volumes) and
                ``pathway_channels`` (the channels of every pathway's volume, in order: a
                head that concatenates pathways reads them at these offsets).

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
        *,
        pathway: int | str | None = None,
        **options: Any,
    ) -> Tensor | tuple[Tensor, ...]:
        """The tube pipeline; ``attribute`` of a subclass calls it with its own options.

        ``pathway`` (multi-pathway layers): ``None`` (one map per pathway input, else their
        sum), an index, or ``"sum"``. A model in train mode runs in eval mode for the call,
        with a warning, so its BatchNorm statistics stay as they were
        (:func:`captum_video._model_state.evaluating`).
        """
        with evaluating(self.forward_func, f"{type(self).__name__}.attribute"):
            is_tuple, formatted = format_video_inputs(inputs, model=self.forward_func)
            if interpolate_mode not in _INTERPOLATE_MODES:
                raise ValueError(
                    f"interpolate_mode must be one of {_INTERPOLATE_MODES}, "
                    f"got {interpolate_mode!r}"
                )
            output, leaves, captured = _run_and_capture(
                self.forward_func,
                self.layer,
                formatted,
                additional_forward_args,
                attribute_to_layer_input,
                track_grad=self.needs_gradient,
            )
            batch = int(formatted[0].shape[0])
            acts = self._volumes(_replace_tensors(captured, [v.detach() for v in leaves]), batch)
            if len(acts) > 1 and len(acts) != len(leaves):
                raise ValueError(
                    f"the reshape gives {len(acts)} volumes from a layer output with {len(leaves)} "
                    "tensors; a multi-pathway reshape must give one volume per tensor, in order"
                )
            pathway = self._check_pathway(pathway, len(acts), interpolate)
            target = resolve_target(output, target)
            channels = tuple(int(a.shape[1]) for a in acts)
            cams = []
            for index, volume in enumerate(acts):
                leaf = leaves[index] if len(acts) > 1 else leaves[0]
                weights = self.channel_weights(
                    output,
                    target,
                    leaf,
                    captured,
                    volume,
                    pathway=index,
                    pathway_channels=channels,
                    **options,
                )
                cam = torch.sum(weights.to(volume.dtype) * volume, dim=1, keepdim=True)
                cams.append(F.relu(cam) if relu_attributions else cam)
            finest = max(acts, key=lambda a: int(a.shape[2]))
            self._warn_if_coarse_in_time(finest, formatted, additional_forward_args)
            if len(cams) == 1:
                if not interpolate:
                    return cams[0]
                return _format_output(is_tuple, _upsample(cams[0], formatted, interpolate_mode))
            if isinstance(pathway, int):
                if not interpolate:
                    return cams[pathway]
                return _format_output(
                    is_tuple, _upsample(cams[pathway], formatted, interpolate_mode)
                )
            if not interpolate:
                return tuple(cams)  # one layer map per pathway, as Captum's layer methods
            videos = [inp for inp in formatted if inp.dim() == 5]
            if pathway is None and len(formatted) == len(cams) and len(videos) == len(cams):
                maps = tuple(
                    _upsample(cam, (inp,), interpolate_mode)[0]
                    for cam, inp in zip(cams, formatted, strict=True)
                )
            else:
                ups = [_upsample(cam, formatted, interpolate_mode) for cam in cams]
                maps = tuple(
                    torch.stack([up[i] for up in ups]).sum(0) if inp.dim() == 5 else ups[0][i]
                    for i, inp in enumerate(formatted)
                )
            return _format_output(is_tuple, maps)

    @staticmethod
    def _check_pathway(pathway: Any, count: int, interpolate: bool) -> int | str | None:
        if pathway is None or pathway == "sum":
            if pathway == "sum" and count > 1 and not interpolate:
                raise ValueError(
                    "pathway='sum' needs interpolate=True: the pathways' layer maps differ in "
                    "size; interpolate=False gives one layer map per pathway"
                )
            return pathway
        if isinstance(pathway, int) and not isinstance(pathway, bool) and 0 <= pathway < count:
            return pathway
        raise ValueError(
            f"pathway must be None, 'sum' or an index below {count} (the layer gives {count} "
            f"volume{'s' if count > 1 else ''}), got {pathway!r}"
        )

    def _volumes(self, captured: Any, batch: int) -> tuple[Tensor, ...]:
        """``reshape(captured)`` as a tuple of volumes (one per pathway), validated."""
        reshaped = self.reshape(captured)
        volumes = tuple(reshaped) if isinstance(reshaped, (tuple, list)) else (reshaped,)
        for volume in volumes:
            if not isinstance(volume, Tensor) or volume.dim() != 5 or volume.shape[0] != batch:
                shape = tuple(volume.shape) if isinstance(volume, Tensor) else type(volume).__name__
                raise ValueError(
                    f"layer {self._layer_name(self.layer)} gives {shape} after reshape, but a "
                    f"tube needs a (N={batch}, K, T', H', W') volume with a time axis: pick a "
                    "3-D conv stage (not the pooled features or the classifier), or pass "
                    "reshape= for token / channels-last outputs (presets: 'swin3d', 'mvit', "
                    "'pathways'); Hugging Face models get their token layout from the registry "
                    "when wrapped with captum_video.registry.adapt(model)"
                )
        return volumes

    def volume(self, captured: Any, tensor: Tensor, batch: int, pathway: int = 0) -> Tensor:
        """``captured`` with ``tensor`` in place of pathway ``pathway``'s tensor (the first
        tensor for single volumes), reshaped to ``(N, K, T', H', W')``.

        Args:
            captured (Any): the layer's output (or input), as captured.
            tensor (Tensor): the layer tensor to read (its activations or their gradient).
            batch (int): the number of clips N.
            pathway (int, optional): which volume of a multi-pathway layer. Default: 0

        Returns:
            Tensor: the volume.

        Raises:
            ValueError: the reshape does not give a 5-D volume of ``batch`` clips.
        """
        return self._volumes(_replace_at(captured, pathway, tensor), batch)[pathway]

    def _registry_hint(self) -> str:
        """Name the registry's default layer for the model when it is not the explained one."""
        model = self.forward_func
        if not isinstance(model, nn.Module):
            return ""
        try:
            name, module = default_layer(model)
        except ValueError:
            return ""
        if module is self.layer:
            return ""
        return (
            f"; the registry's default layer for this model ({family_of(model).name}) is "
            f"'{name}': pass model.get_submodule('{name}')"
        )

    def _layer_name(self, module: nn.Module) -> str:
        if isinstance(self.forward_func, nn.Module):
            for name, m in self.forward_func.named_modules():
                if m is module:
                    return f"'{name}'" if name else "the model itself"
        return type(module).__name__

    def _warn_if_coarse_in_time(
        self, volume: Tensor, inputs: tuple[Tensor, ...], additional_forward_args: Any
    ) -> None:
        frames = max(int(inp.shape[2]) for inp in inputs if inp.dim() == 5)
        steps = int(volume.shape[2])
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
        frames = max(int(inp.shape[2]) for inp in inputs if inp.dim() == 5)
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
            if isinstance(vol, (tuple, list)) and vol:  # pathways: the finest in time
                vol = max(vol, key=lambda v: int(v.shape[2]) if isinstance(v, Tensor) else -1)
            if isinstance(vol, Tensor) and vol.dim() == 5 and 4 * vol.shape[2] >= frames:
                found.append((f"'{name}'", int(vol.shape[2])))

        with removing_hooks() as handles, torch.no_grad():
            for module in names:
                handles.append(module.register_forward_hook(record))
            _run_forward(model, inputs, None, extra)
        return f"{found[-1][0]} ({found[-1][1]} steps)" if found else None

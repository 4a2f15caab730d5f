"""Which unit to maximise and how to read it: a class logit, a channel or one neuron.

:class:`UnitReader` resolves the arguments of
:meth:`~captum_video.units.ClipVisualization.optimize` against one probe forward pass (so a
wrong layer name or a channel out of range fails before any optimisation) and reads the unit's
value for a batch of clips, stopping the forward pass at the unit's layer.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from captum_video._model_state import module_device, module_of, removing_hooks
from captum_video._targets import validate_target

__all__ = ["UnitReader", "Unit", "LayerSpec", "channel_count", "int_list"]

LayerSpec = str | nn.Module


class _StopForward(Exception):
    """Raised by the layer hook: the layers above the unit are not needed."""


@dataclass
class Unit:
    """What to maximise, resolved and checked against one probe forward pass."""

    layer: nn.Module | None
    name: str
    indices: list[int]  # class or channel, one per clip
    neuron: tuple[int, ...] | None


class UnitReader:
    """Resolve units against a model and read their values; see the module docstring.

    Args:
        model (nn.Module or callable): the model.
        preprocess (callable, optional): applied to clips before the model. Default: None
    """

    def __init__(self, model: Any, preprocess: Any = None) -> None:
        self.model = model
        self.preprocess = preprocess

    def device(self) -> torch.device:
        """The model's device (CPU for a plain function)."""
        module = module_of(self.model)
        return module_device(module) if module is not None else torch.device("cpu")

    def layer(self, layer: LayerSpec) -> tuple[nn.Module, str]:
        """The module and its name for a layer name or module, or a clear error."""
        module = module_of(self.model)
        if module is None:
            raise TypeError("layer units need the model to be an nn.Module, not a plain function")
        names = dict(module.named_modules())
        if isinstance(layer, str):
            if layer not in names or not layer:
                known = [n for n in names if n]
                shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
                raise ValueError(
                    f"layer {layer!r} is not a module of the model; pass a name from "
                    f"model.named_modules() ({shown}) or the module itself"
                )
            return names[layer], layer
        if isinstance(layer, nn.Module):
            for name, candidate in names.items():
                if candidate is layer:
                    return layer, name or type(layer).__name__
            raise ValueError(
                f"layer is a {type(layer).__name__} that is not part of the model; pass one of "
                "its sub-modules or its name"
            )
        raise TypeError(f"layer must be a module name or an nn.Module, got {type(layer).__name__}")

    def probe(self, layer: nn.Module | None, name: str, size: tuple[int, int, int]) -> Tensor:
        """The output of ``layer`` (or of the model) on one grey clip: shapes to check against."""
        grey = torch.full((1, 3, *size), 0.5, device=self.device())
        with torch.no_grad():
            return self.run(grey, layer, name)

    def run(self, clips: Tensor, layer: nn.Module | None, name: str) -> Tensor:
        """The model's output, or ``layer``'s output with the forward pass stopped there."""
        x = self.preprocess(clips) if self.preprocess is not None else clips
        if layer is None:
            out = self.model(x)
            if not isinstance(out, Tensor):
                raise TypeError(
                    f"the model must return a tensor of logits, got {type(out).__name__}"
                )
            return out
        captured: list[Any] = []

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            captured.append(output)
            raise _StopForward  # the layers above the unit would be computed for nothing

        with removing_hooks() as handles:
            handles.append(layer.register_forward_hook(hook))
            try:
                self.model(x)
            except _StopForward:
                pass
        if not captured:
            raise ValueError(f"layer {name!r} did not run in the model's forward pass")
        out = captured[0]
        if not isinstance(out, Tensor):
            raise TypeError(
                f"layer {name!r} returns {type(out).__name__}, not a tensor; pick a layer whose "
                "output is a tensor (N, C, T, H, W), (N, C) or (N, S, D)"
            )
        return out

    def resolve(
        self,
        target: Any,
        layer: LayerSpec | None,
        channel: Any,
        neuron: Any,
        size: tuple[int, int, int],
    ) -> Unit:
        """Check the arguments of ``optimize`` against one probe pass and pack them."""
        if layer is None:
            if channel is not None or neuron is not None:
                raise ValueError("channel and neuron need a layer: pass layer= as well")
            if target is None:
                raise ValueError(
                    "nothing to maximise: pass target= (class indices) or layer= with channel="
                )
            validate_target(target)
            indices = int_list(target, "target")
            out = self.probe(None, "model", size)
            if out.dim() != 2:
                raise ValueError(
                    f"the model must return logits (N, K) for target=, got shape {tuple(out.shape)}"
                )
            validate_target(indices, int(out.shape[1]))
            return Unit(None, "logits", indices, None)
        if target is not None:
            raise ValueError("pass either target= (class logits) or layer= with channel=, not both")
        if channel is None:
            raise ValueError(
                "layer= needs channel= (an int or a list of ints); for every channel use "
                "optimize_layer"
            )
        module, name = self.layer(layer)
        indices = int_list(channel, "channel")
        act = self.probe(module, name, size)
        count = channel_count(act, name)
        for c in indices:
            if not 0 <= c < count:
                raise ValueError(
                    f"channel {c} is out of range for layer {name!r} with {count} channels "
                    f"(valid: 0..{count - 1})"
                )
        position = None
        if neuron is not None:
            grid = tuple(act.shape[2:]) if act.dim() == 5 else tuple(act.shape[1:2])
            if act.dim() == 2:
                raise ValueError(f"layer {name!r} has no spatial or temporal grid: drop neuron=")
            position = tuple(int_list(neuron, "neuron"))
            if len(position) != len(grid) or any(
                not 0 <= p < g for p, g in zip(position, grid, strict=False)
            ):
                raise ValueError(
                    f"neuron {position} is outside layer {name!r}'s grid {grid}; pass "
                    f"{len(grid)} indices, each below the grid size"
                )
        return Unit(module, name, indices, position)

    def scores(self, clips: Tensor, unit: Unit) -> Tensor:
        """The value of each clip's unit, ``(N,)``, with the autograd graph."""
        rows = torch.arange(len(unit.indices), device=clips.device)
        index = torch.tensor(unit.indices, device=clips.device)
        out = self.run(clips, unit.layer, unit.name)
        if unit.layer is None:
            return out[rows, index]
        if out.dim() == 3:  # tokens (N, S, D): channels are features
            selected = out[rows, :, index]
        else:
            selected = out[rows, index]
        if unit.neuron is not None:
            position = tuple(torch.tensor(p, device=clips.device) for p in unit.neuron)
            return selected[(rows, *position)]
        return selected.flatten(1).mean(1) if selected.dim() > 1 else selected


def channel_count(act: Tensor, name: str) -> int:
    """Channels of a layer output: ``C`` of ``(N, C, ...)``, ``D`` of tokens ``(N, S, D)``."""
    if act.dim() not in (2, 3, 5):
        raise ValueError(
            f"layer {name!r} gives an output of shape {tuple(act.shape)}; units need "
            "(N, C, T, H, W), (N, C) or tokens (N, S, D)"
        )
    return int(act.shape[-1] if act.dim() == 3 else act.shape[1])


def int_list(value: Any, name: str) -> list[int]:
    """An int, a sequence of ints or an integer tensor as a non-empty list of ints."""
    if isinstance(value, Tensor):
        value = value.reshape(-1).tolist()
    items = [value] if isinstance(value, numbers.Integral) else value
    if (
        not isinstance(items, (list, tuple, range))
        or not items
        or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in items)
    ):
        raise TypeError(f"{name} must be an int or a non-empty list of ints, got {value!r}")
    return [int(v) for v in items]

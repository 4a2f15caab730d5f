"""The method registry: every attribution method by name, for the CLI, the data-set pipeline
and the benchmarks.

An entry (:class:`MethodEntry`) says how to build the Captum-style attribution object for a
model (and a layer, for layer methods), the ``attribute`` keywords it runs with, and how its
result becomes one relevance map per clip. :func:`make_explainer` turns an entry into a
function ``explain(clips, target) -> relevance`` of shape ``(N, C, T, H, W)`` (``C`` is the
input's channels for input-space methods, 1 for tubes and per-frame methods), so callers that
only want "a map per clip" treat all methods alike; the pipeline sums the channels.

Memory is bounded by a budget (``make_explainer(..., max_memory="2GiB")``): the explainer
splits a batch and the methods' passes as :func:`plan_chunks` plans, which never changes a
clip's relevance beyond floating-point rounding.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from captum.attr import Attribution, IntegratedGradients, Occlusion, Saliency
from torch import Tensor, nn

from captum_video._chunking import plan_chunks, rows_of
from captum_video._memory import default_budget, parse_memory
from captum_video._model_state import evaluating
from captum_video._targets import validate_target
from captum_video._validation import validate_video
from captum_video.attr import (
    DeepTaylor3D,
    GradCAMTube,
    SaliencyTube,
    SelectiveRelevance,
    SpatioTemporalSplit,
    TemporalMask,
    TemporalOcclusion,
)
from captum_video.registry import default_layer
from captum_video.relevance import reduce_channels

__all__ = [
    "EXPLAINERS",
    "Explainer",
    "MethodEntry",
    "build_method",
    "make_explainer",
    "plan_chunks",
    "predict",
]

#: ``explain(clips (N, C, T, H, W), target (N,)) -> relevance (N, C or 1, T, H, W)``.
Explainer = Callable[[Tensor, Tensor], Tensor]


def _whole(result: Any, clips: Tensor) -> Tensor:
    return result


def _frame_curve_map(result: Tensor, clips: Tensor) -> Tensor:
    """A per-frame curve ``(N, T)`` spread over every pixel of its frame: ``(N, 1, T, H, W)``."""
    n, _, t, h, w = clips.shape
    return result.reshape(n, 1, t, 1, 1).expand(n, 1, t, h, w)


def _split_part(part: str, positive: bool = False) -> Callable[[Any, Tensor], Tensor]:
    """One part of a ``SpatioTemporalRelevance``; ``positive``: its channel sum's positive part."""

    def pick(result: Any, clips: Tensor) -> Tensor:
        relevance = getattr(result, part)
        return reduce_channels(relevance, "sum").clamp(min=0) if positive else relevance

    return pick


@dataclass(frozen=True)
class MethodEntry:
    """One method of the registry.

    Args:
        build (callable): ``(model, layer) -> Attribution``; ``layer`` is the explained layer
            for layer methods (the registry's default layer when the caller gives none) and
            ignored by the others.
        kwargs (mapping, optional): keywords of ``attribute`` besides ``inputs`` and
            ``target``. Default: none
        output (callable, optional): ``(result, clips) -> (N, C, T, H, W)`` relevance.
            Default: the result itself
        description (str, optional): one line for ``--help`` and the docs. Default: ``""``
        layer_method (bool, optional): whether ``build`` uses the layer. Default: False
        memory_factor (float, optional): peak memory of one *row* of the method (a clip, a
            motion-removed clip, an integration step or an occluded copy of a clip, as
            ``chunk_keyword`` counts them) in activation volumes: one clip's
            :func:`~captum_video._memory.activation_bytes` plus the clip itself. Measured
            roughly, rounded up: ``python -m benchmarks.memory --factors`` runs each method on
            one clip of the demo model with every chunk size 1 and divides its peak by one
            volume (at 16 and 64 frames); the same by hand on torchvision's r3d_18 (random
            weights) at 8 x 56 x 56. Measured (demo / r3d_18): Grad-CAM and Saliency tubes
            0.50 / 0.25, Saliency 0.69 / 0.66, IntegratedGradients 0.97 / 0.68, deep Taylor
            1.70 / 1.03 per clip beyond its parameter copies, the split 1.98, Occlusion 1.14,
            TemporalOcclusion 0.60 / 0.26, TemporalMask 1.04 / 0.89. Default: 4.0
        parameter_copies (float, optional): copies of the model's parameters a call holds
            besides the model (the z+ and z^B weights of DeepTaylor3D's rules: 2, measured on
            r3d_18); subtracted from the budget before rows are counted. Default: 0.0
        chunk_keyword (str, optional): the ``attribute`` keyword that bounds the rows of one
            pass, ``"internal_batch_size"`` (rows over all clips of a call) or
            ``"perturbations_per_eval"`` (rows per clip); :func:`make_explainer` sets it from
            the memory budget unless the caller gives it. The entry's own value in ``kwargs``
            stays an upper bound. Default: None (one pass per call)
        per_clip (bool, optional): whether a clip's relevance does not depend on the other
            clips of its call, so that :func:`make_explainer` may split a batch of clips into
            smaller calls. Default: True

    Returns:
        An entry of :data:`EXPLAINERS`.

    Example::

        >>> entry = MethodEntry(lambda model, layer: Saliency(model), {"abs": False})
        >>> entry.kwargs["abs"]
        False
    """

    build: Callable[[nn.Module, nn.Module], Attribution]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    output: Callable[[Any, Tensor], Tensor] = _whole
    description: str = ""
    layer_method: bool = False
    memory_factor: float = 4.0
    parameter_copies: float = 0.0
    chunk_keyword: str | None = None
    per_clip: bool = True


def _selective(base: str) -> MethodEntry:
    """``SelectiveRelevance`` around the entry ``base``, with the base's keywords."""
    entry = _BASES[base]
    return MethodEntry(
        build=lambda model, layer: SelectiveRelevance(entry.build(model, layer)),
        kwargs=entry.kwargs,
        description=f"selective relevance (motion, sigma 3) of {base}",
        layer_method=entry.layer_method,
        memory_factor=entry.memory_factor,
        parameter_copies=entry.parameter_copies,
        chunk_keyword=entry.chunk_keyword,
    )


_BASES: dict[str, MethodEntry] = {
    "gradcam_tube": MethodEntry(
        build=GradCAMTube,
        description="Grad-CAM tube of the default layer (temporal_weights='clip')",
        layer_method=True,
        memory_factor=0.75,
    ),
    "saliency_tube": MethodEntry(
        build=SaliencyTube,
        description="Saliency Tube (CAM with the classifier's weights) of the default layer",
        layer_method=True,
        memory_factor=0.75,
    ),
    "deep_taylor": MethodEntry(
        build=lambda model, layer: DeepTaylor3D(model),
        description="deep Taylor decomposition (z+ / z^B LRP), conserves the logit",
        memory_factor=2.0,
        parameter_copies=2.0,
    ),
    "saliency": MethodEntry(
        build=lambda model, layer: Saliency(model),
        description="Captum Saliency (absolute input gradient)",
        memory_factor=1.0,
    ),
    "integrated_gradients": MethodEntry(
        build=lambda model, layer: IntegratedGradients(model),
        kwargs={"n_steps": 16, "internal_batch_size": 16},
        description="Captum IntegratedGradients from a zero clip, 16 steps",
        chunk_keyword="internal_batch_size",
        memory_factor=1.25,
    ),
    "occlusion": MethodEntry(
        build=lambda model, layer: Occlusion(model),
        kwargs={
            "sliding_window_shapes": (3, 4, 16, 16),
            "strides": (3, 2, 8, 8),
            "perturbations_per_eval": 16,
        },
        description="Captum Occlusion with 4 x 16 x 16 cuboids (3-channel clips)",
        chunk_keyword="perturbations_per_eval",
        memory_factor=1.5,
    ),
}

_SPLIT = "deep Taylor spatio-temporal split (T + 1 passes per clip)"

#: Method name -> :class:`MethodEntry`. Read-only; the CLI's ``--method`` choices.
EXPLAINERS: Mapping[str, MethodEntry] = MappingProxyType(
    {
        **_BASES,
        "deep_taylor_motion": MethodEntry(
            build=lambda model, layer: SpatioTemporalSplit(DeepTaylor3D(model)),
            output=_split_part("temporal", positive=True),
            description=f"the relevance motion adds: positive temporal part of the {_SPLIT}",
            chunk_keyword="internal_batch_size",
            memory_factor=2.5,
            parameter_copies=2.0,
        ),
        "deep_taylor_temporal": MethodEntry(
            build=lambda model, layer: SpatioTemporalSplit(DeepTaylor3D(model)),
            output=_split_part("temporal"),
            description=f"signed temporal part of the {_SPLIT}",
            chunk_keyword="internal_batch_size",
            memory_factor=2.5,
            parameter_copies=2.0,
        ),
        "deep_taylor_spatial": MethodEntry(
            build=lambda model, layer: SpatioTemporalSplit(DeepTaylor3D(model)),
            output=_split_part("spatial"),
            description=f"spatial part of the {_SPLIT}",
            chunk_keyword="internal_batch_size",
            memory_factor=2.5,
            parameter_copies=2.0,
        ),
        "temporal_occlusion": MethodEntry(
            build=lambda model, layer: TemporalOcclusion(model),
            kwargs={"window": 4, "stride": 2, "perturbations_per_eval": 8},
            description="drop of the score when 4 frames are frozen, per frame",
            chunk_keyword="perturbations_per_eval",
            memory_factor=1.0,
        ),
        "temporal_mask": MethodEntry(
            build=lambda model, layer: TemporalMask(model),
            kwargs={"n_iter": 100},
            output=_frame_curve_map,
            description="Mänttäri et al.'s temporal mask (frames whose freezing kills the class)",
            per_clip=False,
            memory_factor=1.5,
        ),
        **{f"selective_{base}": _selective(base) for base in _BASES},
    }
)


def build_method(name: str, model: nn.Module, layer: nn.Module | None = None) -> Attribution:
    """The attribution object of the method ``name`` for ``model``.

    Args:
        name (str): a key of :data:`EXPLAINERS`.
        model (nn.Module): the classifier to explain.
        layer (nn.Module, optional): layer of layer methods; default the architecture
            registry's :func:`~captum_video.registry.default_layer`.

    Returns:
        Attribution: the Captum-style object (call its ``attribute`` yourself).

    Example::

        >>> from captum_video.models import load_demo_model
        >>> type(build_method("selective_gradcam_tube", load_demo_model())).__name__
        'SelectiveRelevance'
    """
    if name not in EXPLAINERS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(EXPLAINERS)}")
    entry = EXPLAINERS[name]
    if layer is None and entry.layer_method:
        layer = default_layer(model)[1]
    return entry.build(model, layer)  # type: ignore[arg-type]


def make_explainer(
    name: str,
    model: nn.Module,
    layer: nn.Module | None = None,
    max_memory: int | float | str | None = None,
    **kwargs: Any,
) -> Explainer:
    """Build the method called ``name`` for ``model`` as ``explain(clips, target)``.

    The memory of a call is bounded by ``max_memory``: from the entry's
    :attr:`~MethodEntry.memory_factor` and one clip's activation memory (a probe forward of
    one clip, cached per model and clip shape) the explainer chooses how many clips go into
    one call of the method (a batch is split and the maps concatenated) and the method's
    :attr:`~MethodEntry.chunk_keyword` (``internal_batch_size`` of the spatio-temporal split
    and of ``IntegratedGradients``, ``perturbations_per_eval`` of the occlusions), unless the
    caller passes that keyword. A row that alone exceeds the budget still runs, one at a
    time, with a warning. The relevance is the same as in one call, up to floating-point
    rounding of batched kernels.

    Args:
        name (str): a key of :data:`EXPLAINERS`.
        model (nn.Module): the classifier to explain.
        layer (nn.Module, optional): layer for layer methods; default the architecture
            registry's :func:`~captum_video.registry.default_layer`.
        max_memory (str, int or float, optional): bytes one call may use: ``"2GiB"``,
            ``"512MB"`` or a number (:func:`~captum_video._memory.parse_memory`); None uses
            :func:`~captum_video._memory.default_budget` of the clips' device (half of the
            free GPU memory; a quarter of physical memory, at most 1 GiB, on the CPU).
            Default: None
        **kwargs: ``attribute`` keywords that replace the entry's (e.g. ``n_steps=32``).

    Returns:
        callable: ``explain(clips, target) -> (N, C or 1, T, H, W)`` relevance.

    Raises:
        ValueError: an unknown method or an unreadable ``max_memory``.

    Example::

        >>> from captum_video.models import load_demo_model
        >>> explain = make_explainer("saliency", load_demo_model(), max_memory="256MiB")
        >>> explain(torch.rand(1, 3, 16, 32, 32), torch.tensor([0])).shape
        torch.Size([1, 3, 16, 32, 32])
    """
    budget = parse_memory(max_memory, name="max_memory")
    method = build_method(name, model, layer)
    entry = EXPLAINERS[name]
    options = {**entry.kwargs, **kwargs}
    warned: list[str] = []

    def explain(clips: Tensor, target: Tensor) -> Tensor:
        validate_video(clips, name="clips", model=model)
        validate_target(target)
        limit = budget if budget is not None else default_budget(clips.device)
        per_call, opts, note = plan_chunks(entry, model, clips, limit, options, kwargs)
        if note and note not in warned:
            warned.append(note)
            warnings.warn(f"{name}: {note}", stacklevel=2)
        n = clips.shape[0]
        if per_call >= n:
            return entry.output(method.attribute(clips, target=target, **opts), clips)
        maps = []
        for start in range(0, n, per_call):
            part = slice(start, start + per_call)
            result = method.attribute(clips[part], target=rows_of(target, part, n), **opts)
            maps.append(entry.output(result, clips[part]))
        return torch.cat(maps)

    return explain


@torch.no_grad()
def predict(model: nn.Module, clips: Tensor) -> tuple[Tensor, Tensor]:
    """Predicted class and its softmax probability for each clip.

    Args:
        model (nn.Module): the classifier.
        clips (Tensor): ``(N, C, T, H, W)``.

    Returns:
        tuple of Tensor: ``(classes (N,), probabilities (N,))``.

    Example::

        >>> from captum_video.models import load_demo_model
        >>> cls, prob = predict(load_demo_model(), torch.rand(2, 3, 16, 32, 32))
        >>> cls.shape
        torch.Size([2])
    """
    validate_video(clips, name="clips", model=model)
    with evaluating(model, "predict"):
        probs = model(clips).softmax(-1)
    prob, cls = probs.max(-1)
    return cls, prob

"""The method registry: every attribution method by name, for the CLI, the data-set pipeline
and the benchmarks.

An entry (:class:`MethodEntry`) says how to build the Captum-style attribution object for a
model (and a layer, for layer methods), the ``attribute`` keywords it runs with, and how its
result becomes one relevance map per clip. :func:`make_explainer` turns an entry into a
function ``explain(clips, target) -> relevance`` of shape ``(N, C, T, H, W)`` (``C`` is the
input's channels for input-space methods, 1 for tubes and per-frame methods), so callers that
only want "a map per clip" treat all methods alike; the pipeline sums the channels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from captum.attr import Attribution, IntegratedGradients, Occlusion, Saliency
from torch import Tensor, nn

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

__all__ = ["EXPLAINERS", "Explainer", "MethodEntry", "build_method", "make_explainer", "predict"]

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


def _selective(base: str) -> MethodEntry:
    """``SelectiveRelevance`` around the entry ``base``, with the base's keywords."""
    entry = _BASES[base]
    return MethodEntry(
        build=lambda model, layer: SelectiveRelevance(entry.build(model, layer)),
        kwargs=entry.kwargs,
        description=f"selective relevance (motion, sigma 3) of {base}",
        layer_method=entry.layer_method,
    )


_BASES: dict[str, MethodEntry] = {
    "gradcam_tube": MethodEntry(
        build=GradCAMTube,
        description="Grad-CAM tube of the default layer (temporal_weights='clip')",
        layer_method=True,
    ),
    "saliency_tube": MethodEntry(
        build=SaliencyTube,
        description="Saliency Tube (CAM with the classifier's weights) of the default layer",
        layer_method=True,
    ),
    "deep_taylor": MethodEntry(
        build=lambda model, layer: DeepTaylor3D(model),
        description="deep Taylor decomposition (z+ / z^B LRP), conserves the logit",
    ),
    "saliency": MethodEntry(
        build=lambda model, layer: Saliency(model),
        description="Captum Saliency (absolute input gradient)",
    ),
    "integrated_gradients": MethodEntry(
        build=lambda model, layer: IntegratedGradients(model),
        kwargs={"n_steps": 16, "internal_batch_size": 16},
        description="Captum IntegratedGradients from a zero clip, 16 steps",
    ),
    "occlusion": MethodEntry(
        build=lambda model, layer: Occlusion(model),
        kwargs={
            "sliding_window_shapes": (3, 4, 16, 16),
            "strides": (3, 2, 8, 8),
            "perturbations_per_eval": 16,
        },
        description="Captum Occlusion with 4 x 16 x 16 cuboids (3-channel clips)",
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
        ),
        "deep_taylor_temporal": MethodEntry(
            build=lambda model, layer: SpatioTemporalSplit(DeepTaylor3D(model)),
            output=_split_part("temporal"),
            description=f"signed temporal part of the {_SPLIT}",
        ),
        "deep_taylor_spatial": MethodEntry(
            build=lambda model, layer: SpatioTemporalSplit(DeepTaylor3D(model)),
            output=_split_part("spatial"),
            description=f"spatial part of the {_SPLIT}",
        ),
        "temporal_occlusion": MethodEntry(
            build=lambda model, layer: TemporalOcclusion(model),
            kwargs={"window": 4, "stride": 2, "perturbations_per_eval": 8},
            description="drop of the score when 4 frames are frozen, per frame",
        ),
        "temporal_mask": MethodEntry(
            build=lambda model, layer: TemporalMask(model),
            kwargs={"n_iter": 100},
            output=_frame_curve_map,
            description="Mänttäri et al.'s temporal mask (frames whose freezing kills the class)",
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
    name: str, model: nn.Module, layer: nn.Module | None = None, **kwargs: Any
) -> Explainer:
    """Build the method called ``name`` for ``model`` as ``explain(clips, target)``.

    Args:
        name (str): a key of :data:`EXPLAINERS`.
        model (nn.Module): the classifier to explain.
        layer (nn.Module, optional): layer for layer methods; default the architecture
            registry's :func:`~captum_video.registry.default_layer`.
        **kwargs: ``attribute`` keywords that replace the entry's (e.g. ``n_steps=32``).

    Returns:
        callable: ``explain(clips, target) -> (N, C or 1, T, H, W)`` relevance.

    Example::

        >>> from captum_video.models import load_demo_model
        >>> explain = make_explainer("saliency", load_demo_model())
        >>> explain(torch.rand(1, 3, 16, 32, 32), torch.tensor([0])).shape
        torch.Size([1, 3, 16, 32, 32])
    """
    method = build_method(name, model, layer)
    entry = EXPLAINERS[name]
    options = {**entry.kwargs, **kwargs}

    def explain(clips: Tensor, target: Tensor) -> Tensor:
        return entry.output(method.attribute(clips, target=target, **options), clips)

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
    probs = model(clips).softmax(-1)
    prob, cls = probs.max(-1)
    return cls, prob

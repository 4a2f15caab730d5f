"""Build attribution methods by name, for the CLI and for explaining whole data sets.

Every entry turns ``(model, layer)`` into a function ``explain(clips, target) -> relevance``
with relevance of shape ``(N, 1, T, H, W)`` (channels summed for input-space methods), so
callers that only want "a map per clip" can treat all methods alike.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from captum.attr import IntegratedGradients, Saliency
from torch import Tensor, nn

from captum_video.attr import (
    DeepTaylor3D,
    GradCAMTube,
    SaliencyTube,
    SelectiveRelevance,
    SpatioTemporalSplit,
    TemporalOcclusion,
    reduce_channels,
    suggest_layer,
)

__all__ = ["EXPLAINERS", "make_explainer", "default_layer", "predict"]

Explainer = Callable[[Tensor, Tensor], Tensor]


def default_layer(model: nn.Module) -> nn.Module:
    """The module layer methods explain by default: :func:`~captum_video.attr.suggest_layer`.

    Args:
        model (nn.Module): a demo model or a torchvision video classifier.

    Returns:
        nn.Module: the last block that still keeps several time steps.

    Example::

        >>> from captum_video.models import C3DSmall
        >>> model = C3DSmall()
        >>> default_layer(model) is model.layer3
        True
    """
    return suggest_layer(model)[1]


def _saliency(model: nn.Module, layer: nn.Module | None) -> Explainer:
    method = Saliency(model)
    return lambda x, target: reduce_channels(method.attribute(x, target=target, abs=True))


def _integrated_gradients(model: nn.Module, layer: nn.Module | None) -> Explainer:
    method = IntegratedGradients(model)

    def explain(x: Tensor, target: Tensor) -> Tensor:
        attr = method.attribute(x, target=target, n_steps=16, internal_batch_size=16)
        return reduce_channels(attr)

    return explain


def _gradcam_tube(model: nn.Module, layer: nn.Module | None) -> Explainer:
    method = GradCAMTube(model, layer or default_layer(model))
    return lambda x, target: method.attribute(x, target=target)  # type: ignore[return-value]


def _saliency_tube(model: nn.Module, layer: nn.Module | None) -> Explainer:
    classifier = getattr(model, "fc", None) or getattr(model, "head", None)
    if not isinstance(classifier, nn.Module):
        raise ValueError("saliency_tube needs a model with a linear head at .fc or .head")
    method = SaliencyTube(model, layer or default_layer(model), classifier)
    return lambda x, target: method.attribute(x, target=target)  # type: ignore[return-value]


def _selective_gradcam_tube(model: nn.Module, layer: nn.Module | None) -> Explainer:
    method = SelectiveRelevance(GradCAMTube(model, layer or default_layer(model)))
    return lambda x, target: method.attribute(x, target=target)  # type: ignore[return-value]


def _deep_taylor(model: nn.Module, layer: nn.Module | None) -> Explainer:
    method = DeepTaylor3D(model)
    return lambda x, target: reduce_channels(method.attribute(x, target=target))  # type: ignore[arg-type]


def _deep_taylor_motion(model: nn.Module, layer: nn.Module | None) -> Explainer:
    """Deep Taylor relevance that is there because of motion: the positive temporal part of
    :class:`~captum_video.attr.SpatioTemporalSplit` (T + 1 passes per clip)."""
    split = SpatioTemporalSplit(DeepTaylor3D(model))

    def explain(x: Tensor, target: Tensor) -> Tensor:
        temporal = split.attribute(x, target=target).temporal
        return reduce_channels(temporal).clamp(min=0)

    return explain


def _temporal_occlusion(model: nn.Module, layer: nn.Module | None) -> Explainer:
    method = TemporalOcclusion(model)

    def explain(x: Tensor, target: Tensor) -> Tensor:
        attr = method.attribute(x, target=target, window=4, stride=2, perturbations_per_eval=8)
        return reduce_channels(attr)  # type: ignore[arg-type]

    return explain


#: Method name -> factory ``(model, layer) -> explain(clips, target)``.
EXPLAINERS: dict[str, Callable[[nn.Module, nn.Module | None], Explainer]] = {
    "gradcam_tube": _gradcam_tube,
    "saliency_tube": _saliency_tube,
    "selective_gradcam_tube": _selective_gradcam_tube,
    "deep_taylor": _deep_taylor,
    "deep_taylor_motion": _deep_taylor_motion,
    "temporal_occlusion": _temporal_occlusion,
    "saliency": _saliency,
    "integrated_gradients": _integrated_gradients,
}


def make_explainer(name: str, model: nn.Module, layer: nn.Module | None = None) -> Explainer:
    """Build the method called ``name`` for ``model``.

    Args:
        name (str): a key of :data:`EXPLAINERS`.
        model (nn.Module): the classifier to explain.
        layer (nn.Module, optional): layer for layer methods; defaults to
            :func:`default_layer` of the model.

    Returns:
        callable: ``explain(clips, target) -> (N, 1, T, H, W)`` relevance.

    Example::

        >>> from captum_video.models import load_demo_model
        >>> explain = make_explainer("saliency", load_demo_model())
        >>> explain(torch.rand(1, 3, 16, 32, 32), torch.tensor([0])).shape
        torch.Size([1, 1, 16, 32, 32])
    """
    if name not in EXPLAINERS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(EXPLAINERS)}")
    return EXPLAINERS[name](model, layer)


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

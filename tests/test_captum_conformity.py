"""What a Captum user expects of every captum-video method, checked on all of them at once."""

from __future__ import annotations

import inspect

import pytest
import torch
from captum.attr import Attribution, LayerGradCam, NoiseTunnel, Saliency
from captum.log import log_usage

import captum_video.attr as cv_attr
from captum_video.attr import (
    DeepTaylor3D,
    GradCAMTube,
    SaliencyTube,
    SelectiveRelevance,
    SpatioTemporalSplit,
    TemporalMask,
    TemporalOcclusion,
)
from captum_video.concept import VideoTCAV

#: The code of Captum's log_usage wrapper: ``attribute.__code__`` is it when log_usage is the
#: outermost decorator (any other decorator outside it has its own code).
LOG_USAGE_CODE = log_usage()(lambda: None).__code__

PUBLIC_METHODS = [
    obj
    for name in cv_attr.__all__
    if inspect.isclass(obj := getattr(cv_attr, name))
    and issubclass(obj, Attribution)
    and not inspect.isabstract(obj)
    and "attribute" in vars(obj)
]


def test_every_public_method_is_listed() -> None:
    names = {cls.__name__ for cls in PUBLIC_METHODS}
    assert {
        "GradCAMTube",
        "SaliencyTube",
        "DeepTaylor3D",
        "SpatioTemporalSplit",
        "SelectiveRelevance",
        "TemporalOcclusion",
        "TemporalMask",
    } <= names


@pytest.mark.parametrize("cls", PUBLIC_METHODS, ids=lambda c: c.__name__)
def test_log_usage_is_the_outermost_decorator(cls: type) -> None:
    # NoiseTunnel and TCAV call attribute.__wrapped__: it must skip log_usage and nothing else.
    assert cls.attribute.__code__ is LOG_USAGE_CODE, (
        f"{cls.__name__}.attribute: put @log_usage(part_of_slo=True) above every other decorator"
    )
    assert VideoTCAV.interpret.__code__ is LOG_USAGE_CODE


def test_the_log_usage_check_can_fail() -> None:
    class Wrong:
        @torch.no_grad()
        @log_usage(part_of_slo=True)
        def attribute(self) -> None:
            pass

    assert hasattr(Wrong.attribute, "__wrapped__")  # what the old check asked: passes anyway
    assert Wrong.attribute.__code__ is not LOG_USAGE_CODE


@pytest.mark.parametrize("cls", PUBLIC_METHODS, ids=lambda c: c.__name__)
def test_every_attribute_docstring_says_what_target_none_means(cls: type) -> None:
    doc = " ".join((inspect.getdoc(cls.attribute) or "").split())
    if "target" not in inspect.signature(cls.attribute).parameters:
        assert "target" in doc  # wrappers pass it on and say so
        return
    assert "predicted class" in doc, f"{cls.__name__}.attribute must document target=None"


def _methods(model):
    layer = model.layer3
    return {
        "GradCAMTube": (GradCAMTube(model, layer), {}),
        "SaliencyTube": (SaliencyTube(model, layer), {}),
        "DeepTaylor3D": (DeepTaylor3D(model), {}),
        "TemporalOcclusion": (TemporalOcclusion(model), {"window": 4, "stride": 4}),
        "SpatioTemporalSplit": (SpatioTemporalSplit(DeepTaylor3D(model)), {}),
        "SelectiveRelevance(GradCAMTube)": (SelectiveRelevance(GradCAMTube(model, layer)), {}),
        "SelectiveRelevance(Saliency)": (SelectiveRelevance(Saliency(model)), {}),
    }


@pytest.mark.parametrize(
    "name",
    [
        "GradCAMTube",
        "SaliencyTube",
        "DeepTaylor3D",
        "TemporalOcclusion",
        "SpatioTemporalSplit",
        "SelectiveRelevance(GradCAMTube)",
        "SelectiveRelevance(Saliency)",
    ],
)
def test_target_none_is_the_predicted_class_everywhere(name: str, demo_model) -> None:
    clips = torch.rand(3, 3, 16, 32, 32, generator=torch.Generator().manual_seed(0))
    predicted = demo_model(clips).argmax(1)
    method, kwargs = _methods(demo_model)[name]
    implicit = method.attribute(clips, **kwargs)
    explicit = method.attribute(clips, target=predicted, **kwargs)
    for a, b in zip(implicit, explicit, strict=True):  # the split returns three parts
        torch.testing.assert_close(a, b)
    mask = TemporalMask(demo_model)
    torch.testing.assert_close(
        mask.attribute(clips, n_iter=2), mask.attribute(clips, target=predicted, n_iter=2)
    )


def test_gradcam_tube_gives_captum_layer_gradcam_map(demo_model) -> None:
    clips = torch.rand(2, 3, 16, 32, 32, generator=torch.Generator().manual_seed(1))
    ours = GradCAMTube(demo_model, demo_model.layer3).attribute(
        clips, target=[1, 2], interpolate=False, relu_attributions=False
    )
    captum = LayerGradCam(demo_model, demo_model.layer3).attribute(clips, target=[1, 2])
    assert ours.shape == captum.shape == (2, 1, 4, 4, 4)
    torch.testing.assert_close(ours, captum, rtol=1e-5, atol=1e-6)


def test_defaults_that_differ_from_captum_are_said_first() -> None:
    first_lines = "\n".join((GradCAMTube.__doc__ or "").strip().splitlines()[:8])
    assert "relu_attributions=True" in first_lines and "LayerGradCam" in first_lines


def test_methods_work_inside_noise_tunnel(demo_model) -> None:
    clips = torch.rand(1, 3, 16, 32, 32)
    for method in (GradCAMTube(demo_model, demo_model.layer3), TemporalOcclusion(demo_model)):
        smooth = NoiseTunnel(method).attribute(clips, target=0, nt_samples=2, stdevs=0.01)
        assert smooth.shape[2:] == clips.shape[2:]

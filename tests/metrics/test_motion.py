"""Motion metrics: spatial_bias and flow_agreement (spec 3.6)."""

from __future__ import annotations

import pytest
import torch

import captum_video.flow as flow_module
from captum_video.attr import GradCAMTube, selective_relevance
from captum_video.datasets import MovingShapes
from captum_video.metrics import flow_agreement, spatial_bias


def moving_square(frames: int = 16, size: int = 32, side: int = 6) -> torch.Tensor:
    relevance = torch.zeros(1, 1, frames, size, size)
    for t in range(frames):
        relevance[0, 0, t, 10 : 10 + side, 4 + t : 4 + side + t] = 1.0
    return relevance


@pytest.fixture(scope="module")
def shapes() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Four motion clips, their object masks and masks of the static white distractors."""
    clips, _, masks = MovingShapes("motion", num_samples=4, seed=7).tensors()
    white = clips.amin(1) > 0.9
    static = white.all(1, keepdim=True).expand_as(white) & ~masks
    return clips, masks, static


# -- spatial_bias --------------------------------------------------------------------------------


def test_spatial_bias_endpoints_and_a_hand_value() -> None:
    relevance = torch.rand(3, 3, 4, 8, 8) + 0.1
    assert torch.allclose(spatial_bias(relevance, relevance), torch.zeros(3))
    assert torch.allclose(spatial_bias(relevance, torch.zeros_like(relevance)), torch.ones(3))
    signed = torch.tensor([1.0, -3.0, 2.0, -4.0]).view(1, 1, 4, 1, 1)
    kept = torch.tensor([0.0, -3.0, 0.0, 0.0]).view(1, 1, 4, 1, 1)
    # Magnitudes: 3 kept of 10.
    assert spatial_bias(signed, kept).item() == pytest.approx(0.7)


def test_spatial_bias_is_per_clip_and_matches_the_moving_square() -> None:
    square = moving_square()
    static = square[:, :, :1].expand_as(square).contiguous()
    batch = torch.cat([square, static])
    selected, _, _ = selective_relevance(batch, sigma=3.0)
    bias = spatial_bias(batch, selected)
    assert bias.shape == (2,)
    assert bias[0].item() == pytest.approx(1 - 0.3125)  # spec 3.7: edges kept, interior not
    assert bias[1].item() == pytest.approx(1.0)  # a static explanation is all appearance
    assert torch.isnan(spatial_bias(torch.zeros(1, 1, 4, 4, 4), torch.zeros(1, 1, 4, 4, 4)))


def test_spatial_bias_rejects_bad_input() -> None:
    relevance = torch.rand(1, 3, 4, 8, 8)
    with pytest.raises(ValueError, match="shape"):
        spatial_bias(relevance, relevance[:, :1])
    with pytest.raises(ValueError, match="5-D"):
        spatial_bias(relevance[0], relevance[0])
    with pytest.raises(TypeError):
        spatial_bias(relevance.long(), relevance.long())


# -- flow_agreement ------------------------------------------------------------------------------


def test_flow_agreement_is_precision_against_a_given_motion_mask() -> None:
    relevance = torch.zeros(1, 1, 2, 2, 2)
    relevance[0, 0, 0] = torch.tensor([[1.0, 0.9], [0.2, 0.0]])
    relevance[0, 0, 1] = torch.tensor([[0.0, 0.6], [0.8, 0.1]])
    motion = torch.zeros(1, 2, 2, 2, dtype=torch.bool)
    motion[0, 0, 0, 0] = True  # relevance 1.0: TP
    motion[0, 1, 1, 1] = True  # relevance 0.1: below the threshold, not counted
    video = torch.rand(1, 3, 2, 2, 2)
    # Explanation above half the peak: 1.0, 0.9, 0.6, 0.8 -> 1 TP, 3 FP.
    assert flow_agreement(relevance, video, motion=motion).item() == pytest.approx(0.25)
    # Mass-weighted variant: (1.0 + 0.1) / 3.6.
    soft = flow_agreement(relevance, video, explanation_threshold=None, motion=motion[:, None])
    assert soft.item() == pytest.approx(1.1 / 3.6)
    assert torch.isnan(flow_agreement(torch.zeros_like(relevance), video, motion=motion))


def test_flow_agreement_with_optical_flow_on_moving_and_static_squares(shapes) -> None:
    clips, masks, static = shapes
    on_object = flow_agreement(masks[:, None].float(), clips)
    on_distractors = flow_agreement(static[:, None].float(), clips)
    assert on_object.shape == (4,)
    assert (on_object > 0.9).all(), on_object
    assert (on_distractors < 0.1).all(), on_distractors
    # A selective explanation of "object + distractors" agrees better with motion.
    both = (masks | static)[:, None].float()
    selected, _, _ = selective_relevance(both, sigma=1.0)
    assert (flow_agreement(selected, clips) > flow_agreement(both, clips)).all()


def test_flow_agreement_uses_the_flow_module(shapes, monkeypatch) -> None:
    clips, masks, _ = shapes
    relevance = masks[:, None].float() + 0.1 * torch.rand(masks[:, None].shape)
    expected = flow_agreement(relevance, clips, motion=flow_module.motion_mask(clips, 0.8))
    calls = []
    real_motion_mask = flow_module.motion_mask

    def spy(video, threshold=0.5, **farneback):
        calls.append((threshold, farneback))
        return real_motion_mask(video, threshold, **farneback)

    monkeypatch.setattr(flow_module, "motion_mask", spy)
    got = flow_agreement(relevance, clips, flow_threshold=0.8, winsize=9)
    assert calls == [(0.8, {"winsize": 9})]
    torch.testing.assert_close(got, expected)


def test_flow_agreement_rejects_bad_input(shapes) -> None:
    clips, masks, _ = shapes
    relevance = masks[:, None].float()
    with pytest.raises(ValueError, match="match"):
        flow_agreement(relevance[:, :, :8], clips)
    with pytest.raises(ValueError, match="explanation_threshold"):
        flow_agreement(relevance, clips, explanation_threshold=1.5)
    with pytest.raises(ValueError, match="flow_threshold"):
        flow_agreement(relevance, clips, flow_threshold=-1.0)
    with pytest.raises(ValueError, match="motion"):
        flow_agreement(relevance, clips, motion=masks[:, :8])


# -- on the demo models --------------------------------------------------------------------------


def test_spatial_bias_is_lower_for_the_motion_model(demo_model, appearance_model) -> None:
    # Each model explains its own held-out task (fixed seed) with Grad-CAM tubes at layer2
    # (T' = T / 2), Grad-CAM being one of Hiley et al.'s base explainers. The motion model's
    # explanation must keep more of its relevance after selection than the colour model's.
    # Checked on six data seeds at sigma 1, 2 and 3 with the same ordering; pixel-space
    # explainers (Saliency, InputXGradient, DeepTaylor3D) do NOT give this ordering on these
    # demo models (the motion model also puts static relevance on its identical static
    # distractors), so the comparison is explainer-specific.
    biases = {}
    for variant, model in (("motion", demo_model), ("appearance", appearance_model)):
        clips, labels, _ = MovingShapes(variant, num_samples=8, seed=4242).tensors()
        tube = GradCAMTube(model, model.layer2).attribute(clips, target=labels)
        selected, _, _ = selective_relevance(tube, sigma=2.0)
        biases[variant] = spatial_bias(tube, selected)
    assert biases["motion"].mean() < biases["appearance"].mean() - 0.02, biases

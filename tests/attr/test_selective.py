"""Selective relevance: the temporal Sobel selection (spec 3.3/3.7) and its Captum wrapper."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import scipy.ndimage as ndimage
import torch
import torch.nn.functional as F
from captum.attr import (
    IntegratedGradients,
    LayerActivation,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from torch import nn

from captum_video.attr import DeepTaylor3D, GradCAMTube, SelectiveRelevance, selective_relevance
from captum_video.attr._selective import sobel_time_kernel
from captum_video.relevance import upsample_to_input
from tests.helpers import assert_model_unchanged, model_snapshot


def moving_square(frames: int = 16, size: int = 32, side: int = 6) -> torch.Tensor:
    """Relevance 1 on a ``side`` x ``side`` square moving right by 1 px per frame."""
    relevance = torch.zeros(1, 1, frames, size, size)
    for t in range(frames):
        relevance[0, 0, t, 10 : 10 + side, 4 + t : 4 + side + t] = 1.0
    return relevance


def mass_on(relevance: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-clip share of |relevance| (summed over channels) inside a (N, T, H, W) mask."""
    magnitude = relevance.abs().sum(1)
    return (magnitude * mask).flatten(1).sum(1) / magnitude.flatten(1).sum(1)


# -- the selection itself ----------------------------------------------------------------------


def test_sobel_kernel_is_the_spec_kernel() -> None:
    kernel = sobel_time_kernel(torch.float64)[0, 0]
    face = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=torch.float64)
    assert torch.equal(kernel[0], face)
    assert torch.equal(kernel[1], torch.zeros(3, 3, dtype=torch.float64))
    assert torch.equal(kernel[2], -face)


def test_derivative_equals_full_3d_sobel_conv_and_scipy() -> None:
    relevance = torch.rand(3, 3, 8, 12, 10, dtype=torch.float64)
    # Zero padding: the reference code's conv3d with the kernel repeated over the 3 channels.
    _, _, signed = selective_relevance(relevance, padding="zeros", signed=True)
    reference = F.conv3d(
        relevance, sobel_time_kernel(torch.float64).repeat(1, 3, 1, 1, 1), padding=1
    )
    torch.testing.assert_close(signed, reference, rtol=0, atol=1e-12)
    _, _, magnitude = selective_relevance(relevance, padding="zeros")
    torch.testing.assert_close(magnitude, reference.abs(), rtol=0, atol=1e-12)
    # Replicate padding: scipy's correlate with mode="nearest", an independent implementation.
    _, _, signed = selective_relevance(relevance, padding="replicate", signed=True)
    kernel = sobel_time_kernel(torch.float64)[0, 0].numpy()
    for i in range(3):
        expected = ndimage.correlate(relevance[i].sum(0).numpy(), kernel, mode="nearest")
        np.testing.assert_allclose(signed[i, 0].numpy(), expected, atol=1e-12)


def test_static_volume_gives_empty_mask_with_replicate_padding() -> None:
    static = (torch.rand(2, 3, 1, 16, 16) ** 2).expand(2, 3, 12, 16, 16).contiguous()
    for sigma in (0.0, 3.0):
        selected, mask, derivative = selective_relevance(static, sigma=sigma)
        assert torch.count_nonzero(derivative) == 0  # exactly, not just small
        assert not mask.any()
        assert torch.count_nonzero(selected) == 0


def test_static_volume_with_zero_padding_marks_only_the_edge_frames() -> None:
    frame = torch.rand(16, 16, dtype=torch.float64) ** 2
    static = frame.expand(1, 1, 12, 16, 16).contiguous()
    _, mask, derivative = selective_relevance(static, sigma=3.0, padding="zeros")
    # The documented artefact: D is zero inside and the smoothed relevance on frames 0, T-1.
    assert torch.count_nonzero(derivative[:, :, 1:-1]) == 0
    smoothed = ndimage.correlate(frame.numpy(), np.outer([1, 2, 1], [1, 2, 1]), mode="constant")
    np.testing.assert_allclose(derivative[0, 0, 0].numpy(), smoothed, atol=1e-12)
    np.testing.assert_allclose(derivative[0, 0, -1].numpy(), smoothed, atol=1e-12)
    assert not mask[:, :, 1:-1].any()
    assert mask[:, :, 0].any() and mask[:, :, -1].any()
    # Where relevance is highest the spurious "motion" is kept.
    peak = torch.as_tensor(smoothed).argmax()
    assert mask[0, 0, 0].flatten()[peak] and mask[0, 0, -1].flatten()[peak]


def test_moving_square_keeps_leading_and_trailing_edges() -> None:
    relevance = moving_square()
    selected, mask, _ = selective_relevance(relevance, sigma=3.0)
    # Spec 3.7: about 31 % of the square's relevance is retained (scipy 'nearest': 0.3125).
    assert float(selected.sum() / relevance.sum()) == pytest.approx(0.3125, abs=1e-6)
    # In frame 8 the square covers columns 12..17: the trailing (12) and leading (17)
    # columns are kept, the interior (13..16) is not.
    kept = mask[0, 0, 8, 12]
    assert kept[12] and kept[17]
    assert not kept[13:17].any()
    # Zero padding adds the edge-frame artefact on top: more is retained.
    selected_zeros, _, _ = selective_relevance(relevance, sigma=3.0, padding="zeros")
    assert float(selected_zeros.sum()) > float(selected.sum())


def test_signed_version_keeps_only_the_trailing_edge() -> None:
    # March-2020 code: the signed response R(t-1) - R(t+1) is positive where relevance drops.
    _, mask, derivative = selective_relevance(moving_square(), sigma=3.0, signed=True)
    assert derivative.min() < 0
    kept = mask[0, 0, 8, 12]
    assert kept[12] and not kept[17]


def test_raising_sigma_keeps_monotonically_fewer_voxels() -> None:
    generator = torch.Generator().manual_seed(0)
    relevance = torch.rand(2, 3, 12, 20, 20, generator=generator)
    relevance = F.avg_pool3d(relevance, 3, stride=1, padding=1)  # some spatial structure
    sigmas = [0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0]
    counts = []
    for sigma in sigmas:
        _, mask, derivative = selective_relevance(relevance, sigma=sigma)
        counts.append(int(mask.sum()))
        if sigma == 0.0:
            assert torch.equal(mask, derivative > 0)  # sigma 0 keeps every non-zero derivative
    assert all(a >= b for a, b in pairwise(counts))
    assert counts[0] > counts[3] > counts[-1]


def test_threshold_is_per_clip_in_a_batch() -> None:
    first, second = torch.rand(1, 3, 8, 16, 16), torch.rand(1, 3, 8, 16, 16)
    _, mask_alone, _ = selective_relevance(first)
    _, mask_batch, derivative = selective_relevance(torch.cat([first, 100.0 * second]))
    assert torch.equal(mask_batch[:1], mask_alone)
    std = derivative[1].std()
    assert torch.equal(mask_batch[1], derivative[1] > 3.0 * std)


def test_channel_reduction_before_the_derivative() -> None:
    moving = moving_square()
    cancelling = torch.cat([moving, -moving, torch.zeros_like(moving)], dim=1)  # sums to 0
    _, mask_sum, _ = selective_relevance(cancelling, channel_reduction="sum")
    selected, mask_abs, _ = selective_relevance(cancelling, channel_reduction="abs_sum")
    assert not mask_sum.any()
    assert mask_abs.any()
    assert selected.shape == cancelling.shape
    assert torch.equal(selected, cancelling * mask_abs)  # mask broadcast over channels


def test_output_device_dtype_and_inputs_untouched(device: torch.device) -> None:
    relevance = moving_square().to(device=device, dtype=torch.float64).repeat(2, 3, 1, 1, 1)
    before = relevance.clone()
    selected, mask, derivative = selective_relevance(relevance)
    assert selected.device == mask.device == derivative.device == relevance.device
    assert selected.dtype == derivative.dtype == torch.float64
    assert mask.dtype == torch.bool and mask.shape == (2, 1, 16, 32, 32)
    assert torch.equal(relevance, before)


@pytest.mark.parametrize(
    ("relevance", "kwargs", "error"),
    [
        (torch.rand(3, 8, 16, 16), {}, ValueError),  # one clip without the batch dimension
        (torch.ones(1, 1, 8, 16, 16, dtype=torch.long), {}, TypeError),
        (torch.full((1, 1, 8, 16, 16), float("nan")), {}, ValueError),
        (torch.rand(1, 1, 8, 16, 16), {"sigma": -1.0}, ValueError),
        (torch.rand(1, 1, 8, 16, 16), {"sigma": float("inf")}, ValueError),
        (torch.rand(1, 1, 8, 16, 16), {"padding": "reflect"}, ValueError),
        (torch.rand(1, 1, 8, 16, 16), {"channel_reduction": "mean"}, ValueError),
    ],
)
def test_bad_input_is_rejected(relevance: torch.Tensor, kwargs: dict, error: type) -> None:
    with pytest.raises(error):
        selective_relevance(relevance, **kwargs)


# -- the Captum wrapper --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clips_and_labels() -> tuple[torch.Tensor, torch.Tensor]:
    from captum_video.datasets import MovingShapes

    clips, labels, _ = MovingShapes("motion", num_samples=2, seed=11).tensors()
    return clips, labels


def test_wrapping_saliency_equals_selecting_its_output(demo_model, clips_and_labels) -> None:
    clips, labels = clips_and_labels
    snapshot = model_snapshot(demo_model)
    explainer = SelectiveRelevance(Saliency(demo_model))
    selected = explainer.attribute(clips, sigma=2.0, target=labels)
    plain = Saliency(demo_model).attribute(clips, target=labels)
    expected, _, _ = selective_relevance(plain, sigma=2.0)
    assert selected.shape == clips.shape
    torch.testing.assert_close(selected, expected)
    assert 0 < torch.count_nonzero(selected) < torch.count_nonzero(plain)
    assert_model_unchanged(snapshot, demo_model)
    assert not clips.requires_grad
    assert explainer.multiplies_by_inputs is False
    assert not explainer.has_convergence_delta()


def test_wrapping_integrated_gradients_passes_keywords_through(demo_model, clips_and_labels):
    clips, labels = clips_and_labels
    baselines = torch.full_like(clips, 0.1)
    ig = IntegratedGradients(demo_model)
    selected = SelectiveRelevance(ig).attribute(
        clips,
        sigma=1.0,
        padding="zeros",
        channel_reduction="abs_sum",
        baselines=baselines,
        target=labels,
        n_steps=4,
    )
    plain = ig.attribute(clips, baselines=baselines, target=labels, n_steps=4)
    expected, _, _ = selective_relevance(plain, 1.0, "zeros", channel_reduction="abs_sum")
    torch.testing.assert_close(selected, expected)
    assert SelectiveRelevance(ig).multiplies_by_inputs is True
    with pytest.raises(ValueError, match="convergence"):
        SelectiveRelevance(ig).attribute(clips, target=labels, return_convergence_delta=True)


def test_wrapping_occlusion(demo_model, clips_and_labels) -> None:
    clips, labels = clips_and_labels
    clips, labels = clips[:1], labels[:1]
    occlusion = Occlusion(demo_model)
    kwargs = dict(
        target=labels,
        sliding_window_shapes=(3, 8, 16, 16),
        strides=(3, 8, 16, 16),
        perturbations_per_eval=8,
    )
    selected = SelectiveRelevance(occlusion).attribute(clips, sigma=1.0, **kwargs)
    expected, _, _ = selective_relevance(occlusion.attribute(clips, **kwargs), sigma=1.0)
    torch.testing.assert_close(selected, expected)


def test_layer_maps_are_upsampled_to_the_clip(demo_model, clips_and_labels) -> None:
    clips, labels = clips_and_labels
    snapshot = model_snapshot(demo_model)
    gradcam = LayerGradCam(demo_model, demo_model.layer2)  # T' = 8 for T = 16
    selected = SelectiveRelevance(gradcam).attribute(clips, target=labels)
    layer_map = gradcam.attribute(clips, target=labels)
    assert layer_map.shape[2:] == (8, 8, 8)
    expected, _, _ = selective_relevance(upsample_to_input(layer_map, (16, 32, 32)))
    assert selected.shape == (2, 1, 16, 32, 32)
    torch.testing.assert_close(selected, expected)
    assert_model_unchanged(snapshot, demo_model)


def test_coarse_layer_maps_warn() -> None:
    model = nn.Sequential(
        nn.Conv3d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool3d((8, 2, 2)),
        nn.Conv3d(4, 4, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )
    with pytest.warns(UserWarning, match="interpolation"):
        out = SelectiveRelevance(LayerGradCam(model, model[3])).attribute(
            torch.rand(1, 3, 16, 8, 8), target=0
        )
    assert out.shape == (1, 1, 16, 8, 8)


def test_layer_without_time_axis_is_rejected_and_model_untouched(demo_model, clips_and_labels):
    clips, _ = clips_and_labels
    snapshot = model_snapshot(demo_model)
    with pytest.raises(ValueError, match="time axis"):
        SelectiveRelevance(LayerActivation(demo_model, demo_model.fc)).attribute(clips)
    assert_model_unchanged(snapshot, demo_model)
    with pytest.raises(ValueError, match="5-D"):
        SelectiveRelevance(Saliency(demo_model)).attribute(clips[0], target=0)
    with pytest.raises(ValueError, match="sigma"):
        SelectiveRelevance(Saliency(demo_model)).attribute(clips, sigma=-2.0, target=0)
    with pytest.raises(TypeError, match="Attribution"):
        SelectiveRelevance(demo_model)
    assert not clips.requires_grad
    assert_model_unchanged(snapshot, demo_model)


def test_tuple_inputs_give_tuple_outputs() -> None:
    class TwoStream(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rgb = nn.Conv3d(3, 2, 3, padding=1)
            self.flow = nn.Conv3d(2, 2, 3, padding=1)

        def forward(self, rgb: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
            return self.rgb(rgb).mean((2, 3, 4)) + self.flow(flow).mean((2, 3, 4))

    model = TwoStream()
    rgb, flow = torch.rand(2, 3, 8, 12, 12), torch.rand(2, 2, 8, 12, 12)
    out = SelectiveRelevance(Saliency(model)).attribute((rgb, flow), sigma=1.0, target=0)
    plain = Saliency(model).attribute((rgb, flow), target=0)
    assert isinstance(out, tuple) and len(out) == 2
    for got, base in zip(out, plain, strict=True):
        torch.testing.assert_close(got, selective_relevance(base, sigma=1.0)[0])
    rgb_only = Saliency(lambda x: model.rgb(x).mean((2, 3, 4)))
    single = SelectiveRelevance(rgb_only).attribute((rgb,), target=0)
    assert isinstance(single, tuple) and single[0].shape == rgb.shape


def test_inside_and_around_noise_tunnel(demo_model, clips_and_labels) -> None:
    clips, labels = clips_and_labels
    explainer = SelectiveRelevance(Saliency(demo_model))
    direct = explainer.attribute(clips, sigma=2.0, target=labels)
    # Zero noise: SmoothGrad of identical samples is the method itself.
    tunnel = NoiseTunnel(explainer)
    smooth = tunnel.attribute(clips, nt_samples=2, stdevs=0.0, sigma=2.0, target=labels)
    torch.testing.assert_close(smooth, direct)
    noisy = tunnel.attribute(clips, nt_samples=3, stdevs=0.05, sigma=2.0, target=labels)
    assert noisy.shape == clips.shape and torch.isfinite(noisy).all()
    assert not torch.equal(noisy, direct)
    # The other way round: selecting a SmoothGrad map.
    around = SelectiveRelevance(NoiseTunnel(Saliency(demo_model))).attribute(
        clips, sigma=2.0, nt_samples=2, stdevs=0.0, target=labels
    )
    torch.testing.assert_close(around, direct)


def test_wrapping_gradcam_tube(demo_model, clips_and_labels) -> None:
    clips, labels = clips_and_labels
    method = GradCAMTube(demo_model, demo_model.layer3)
    selected = SelectiveRelevance(method).attribute(clips, target=labels)
    plain = method.attribute(clips, target=labels)
    if plain.shape[2:] != clips.shape[2:]:
        plain = upsample_to_input(plain, tuple(clips.shape[2:]))
    assert selected.shape[2:] == clips.shape[2:]
    torch.testing.assert_close(selected, selective_relevance(plain)[0])


def test_wrapping_deep_taylor(demo_model, motion_batch) -> None:
    # DTD is the base explainer of Hiley et al.'s code; the selected map must move its mass
    # onto the moving object here too.
    clips, labels, masks = motion_batch
    method = DeepTaylor3D(demo_model)
    snapshot = model_snapshot(demo_model)
    selected = SelectiveRelevance(method).attribute(clips[:4], target=labels[:4])
    plain = method.attribute(clips[:4], target=labels[:4])
    torch.testing.assert_close(selected, selective_relevance(plain)[0])
    assert (mass_on(selected, masks[:4]) > mass_on(plain, masks[:4])).all()
    assert_model_unchanged(snapshot, demo_model)


# -- on the demo model -----------------------------------------------------------------------------


def test_selection_concentrates_the_demo_explanation_on_the_moving_object(
    demo_model, motion_batch
) -> None:
    # MovingShapes("motion"): the labelled square moves, two identical white squares stand
    # still. Selective relevance should move the explanation's mass onto the moving one.
    clips, labels, masks = motion_batch
    plain = Saliency(demo_model).attribute(clips, target=labels)
    selected = SelectiveRelevance(Saliency(demo_model)).attribute(clips, sigma=3.0, target=labels)
    before, after = mass_on(plain, masks), mass_on(selected, masks)
    assert (after > before).all(), (before, after)
    assert float(after.mean() - before.mean()) > 0.2

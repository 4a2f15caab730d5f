"""SpatioTemporalSplit: exact zero on static clips, batching, motion localisation."""

from __future__ import annotations

import pytest
import torch
from captum.attr import InputXGradient, Saliency

from captum_video.attr import DeepTaylor3D, SpatioTemporalRelevance, SpatioTemporalSplit
from captum_video.datasets import MovingShapes
from tests.helpers import assert_model_unchanged, model_snapshot


def test_static_clip_has_exactly_zero_temporal_part(demo_model) -> None:
    clip = torch.rand(2, 3, 1, 16, 16).expand(-1, -1, 8, -1, -1).contiguous()
    for method in (DeepTaylor3D(demo_model), Saliency(demo_model)):
        parts = SpatioTemporalSplit(method).attribute(clip, target=[0, 3])
        assert isinstance(parts, SpatioTemporalRelevance)
        assert torch.equal(parts.temporal, torch.zeros_like(clip))
        assert torch.equal(parts.spatial, parts.joint)


def test_batched_equals_frame_by_frame(demo_model) -> None:
    clip = torch.rand(1, 3, 6, 16, 16)
    dt = DeepTaylor3D(demo_model)
    before = model_snapshot(demo_model)
    parts = SpatioTemporalSplit(dt).attribute(clip, target=2)
    chunked = SpatioTemporalSplit(dt).attribute(clip, target=2, internal_batch_size=4)
    assert_model_unchanged(before, demo_model)
    torch.testing.assert_close(chunked.spatial, parts.spatial, rtol=1e-4, atol=1e-7)
    for t in (0, 3, 5):
        static = clip[:, :, t : t + 1].expand_as(clip)
        expected = dt.attribute(static, target=2)[:, :, t]
        torch.testing.assert_close(parts.spatial[:, :, t], expected, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(parts.joint, dt.attribute(clip, target=2))
    torch.testing.assert_close(parts.temporal, parts.joint - parts.spatial)


def test_options_and_any_captum_method(demo_model) -> None:
    clip = torch.rand(2, 3, 4, 16, 16)
    ixg = InputXGradient(demo_model)
    first = SpatioTemporalSplit(ixg, static="repeat_first").attribute(clip, target=1)
    expected = ixg.attribute(clip[:, :, :1].expand_as(clip).contiguous(), target=1)
    torch.testing.assert_close(first.spatial, expected)
    mean = SpatioTemporalSplit(ixg, reduce="temporal_mean", combine="positive_difference")
    parts = mean.attribute(clip, target=torch.tensor([1, 2]))
    assert bool((parts.temporal >= 0).all()) and parts.spatial.shape == clip.shape
    tupled = SpatioTemporalSplit(ixg).attribute((clip,), target=1)
    assert isinstance(tupled.joint, tuple) and tupled.joint[0].shape == clip.shape


def test_bad_arguments(demo_model) -> None:
    with pytest.raises(TypeError, match="Attribution"):
        SpatioTemporalSplit(demo_model)
    with pytest.raises(ValueError, match="static"):
        SpatioTemporalSplit(Saliency(demo_model), static="freeze")
    split = SpatioTemporalSplit(Saliency(demo_model))
    with pytest.raises(ValueError, match="5"):
        split.attribute(torch.rand(3, 8, 16, 16), target=0)
    with pytest.raises(ValueError, match="internal_batch_size"):
        split.attribute(torch.rand(1, 3, 4, 16, 16), target=0, internal_batch_size=0)


def test_temporal_part_lies_on_the_moving_object(demo_model) -> None:
    """MovingShapes("motion"): the deciding square moves, identical distractors do not. The
    demo model has biases; z+ / z^B ignore them in denominators, so its relevance is still
    conserved and the split is taken as is."""
    clips, labels, masks = MovingShapes("motion", num_samples=2, seed=4242).tensors()
    parts = SpatioTemporalSplit(DeepTaylor3D(demo_model)).attribute(clips, target=labels)
    temporal = parts.temporal.sum(1).abs()  # (N, T, H, W)
    obj = masks.float()
    # The static distractors: bright squares that are never part of the object.
    bright = (clips.min(1).values > 0.8).float() * (1 - obj.amax(1, keepdim=True))
    share_obj = (temporal * obj).flatten(1).sum(1) / temporal.flatten(1).sum(1)
    share_distractors = (temporal * bright).flatten(1).sum(1) / temporal.flatten(1).sum(1)
    density_obj = share_obj / obj.flatten(1).mean(1)
    density_distractors = share_distractors / bright.flatten(1).mean(1)
    # ~3.5 % of the voxels hold ~45 % of the temporal relevance (measured 0.40-0.47), more
    # than the identical static squares (~12 % of the voxels, ~33 %); per voxel the moving
    # square gets ~2.5x what a distractor voxel gets and ~12x the clip's average.
    assert bool((share_obj > 0.3).all()), share_obj
    assert bool((share_obj > share_distractors).all())
    assert bool((density_obj > 2 * density_distractors).all())
    assert bool((density_obj > 8).all())

"""Concept discovery: k-means, tubelets, supervoxel segments and the whole pipeline."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from captum_video.concept import discover_concepts, kmeans, static_twin
from captum_video.concept._discovery import _supervoxel_segmenter, tubelet_segments
from captum_video.datasets import MovingShapes
from tests.helpers import assert_model_unchanged, model_snapshot


def test_kmeans_finds_separated_blobs_and_is_seeded() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([torch.randn(15, 2, generator=g) + c for c in centres])
    labels, found = kmeans(x, 3, seed=4)
    for i in range(3):
        assert len(set(labels[15 * i : 15 * (i + 1)].tolist())) == 1
    assert len(set(labels.tolist())) == 3
    assert torch.cdist(found, centres).min(1).values.max() < 1.0
    again, _ = kmeans(x, 3, seed=4)
    assert torch.equal(labels, again)
    with pytest.raises(ValueError):
        kmeans(x, 0)


def test_tubelets_are_resized_crops() -> None:
    videos = torch.rand(2, 3, 8, 16, 16)
    segs, owner = tubelet_segments(videos, (4, 8, 8), stride=(4, 8, 8))
    assert segs.shape == (2 * 2 * 2 * 2, 3, 8, 16, 16) and owner.tolist() == [0] * 8 + [1] * 8
    expected = F.interpolate(
        videos[1:2, :, 4:8, 0:8, 8:16], size=(8, 16, 16), mode="trilinear", align_corners=False
    )[0]
    # Video 1, grid position (t=1, y=0, x=1) is its 6th tubelet.
    assert torch.allclose(segs[8 + 5], expected)
    with pytest.raises(ValueError):
        tubelet_segments(videos, (9, 8, 8))


def test_supervoxel_segments() -> None:
    segmenter = _supervoxel_segmenter(n_segments=8)
    videos = torch.rand(1, 3, 4, 12, 12)
    segs, owner = segmenter(videos)
    assert segs.shape[1:] == videos.shape[1:] and set(owner.tolist()) == {0}


def test_discovery_separates_motion_from_still_frames(demo_model) -> None:
    """Segments = moving clips of class "right" and their still twins: the clusters follow
    motion, and the moving cluster outscores its own static twin."""
    clips, labels, _ = MovingShapes("motion", num_samples=40, seed=3).tensors()
    right = clips[labels == 0][:8]

    def segmenter(videos: torch.Tensor):
        segs = torch.cat([videos, static_twin(videos)])
        return segs, torch.arange(len(videos)).repeat(2)

    before = model_snapshot(demo_model)
    found = discover_concepts(
        demo_model,
        "layer2",
        right,
        n_concepts=2,
        target=0,
        segments=segmenter,
        n_clusters=2,
        clips_per_concept=6,
        n_random=3,
        seed=0,
    )
    assert_model_unchanged(before, demo_model)
    assert 1 <= len(found) <= 2 and found == sorted(found, key=lambda c: -c.tcav)
    top = found[0]
    moving = top.clips.diff(dim=2).abs().amax(dim=(1, 2, 3, 4)) > 0.2
    assert bool(moving.all()), "the best concept should be the moving segments"
    assert top.members[:, 1].max() < 8  # indices of the moving half
    assert top.tcav > top.static_tcav
    assert torch.equal(top.static_concept.clips, static_twin(top.clips))
    assert top.static_concept.kind == "static" and top.concept.kind == "dynamic"


def test_discovery_with_tubelets_and_bad_arguments(demo_model) -> None:
    clips, labels, _ = MovingShapes("motion", num_samples=24, seed=5).tensors()
    videos = clips[labels == 1][:4]
    found = discover_concepts(
        demo_model,
        "layer3",
        videos,
        n_concepts=1,
        segments="tubelet",
        n_clusters=2,
        clips_per_concept=4,
        n_random=2,
    )
    assert len(found) == 1 and found[0].clips.shape[1:] == videos.shape[1:]
    assert 0.0 <= found[0].tcav <= 1.0 and 0.0 <= found[0].p_value <= 1.0
    with pytest.raises(ValueError):
        discover_concepts(demo_model, "layer3", videos[:, :, 0], n_concepts=1)
    with pytest.raises(ValueError):
        discover_concepts(demo_model, "layer3", videos, segments="slic")
    with pytest.raises(ValueError):
        discover_concepts(demo_model, "layer3", videos, target=9)
    with pytest.raises(ValueError):
        discover_concepts(demo_model, "layer3", videos, n_random=1)

"""MovingShapes: reproducible, masks match frames, labels mean what the variant says."""

from __future__ import annotations

import pytest
import torch

from captum_video.datasets import VARIANTS, MovingShapes
from captum_video.flow import motion_mask


def _centroids(mask: torch.Tensor) -> torch.Tensor:
    """(T, H, W) bool -> (T, 2) centre of mass (y, x)."""
    ys = torch.arange(mask.shape[1], dtype=torch.float32).view(1, -1, 1)
    xs = torch.arange(mask.shape[2], dtype=torch.float32).view(1, 1, -1)
    m = mask.float()
    area = m.sum((1, 2))
    return torch.stack([(m * ys).sum((1, 2)) / area, (m * xs).sum((1, 2)) / area], -1)


@pytest.mark.parametrize("variant", VARIANTS)
def test_shapes_seeding_and_mask_matches_frames(variant: str) -> None:
    data = MovingShapes(variant, num_samples=6, seed=3)
    clip, label, mask = data[2]
    assert clip.shape == (3, 16, 32, 32) and mask.shape == (16, 32, 32)
    assert clip.dtype == torch.float32 and mask.dtype == torch.bool
    assert 0 <= label < data.num_classes == len(data.classes)
    assert 0.0 <= float(clip.min()) and float(clip.max()) <= 1.0
    again = MovingShapes(variant, num_samples=6, seed=3)[2]
    assert torch.equal(clip, again[0]) and label == again[1] and torch.equal(mask, again[2])
    assert not torch.equal(clip, MovingShapes(variant, num_samples=6, seed=4)[2][0])
    # Every masked voxel shows the object's one colour; the object is there in every frame.
    colours = clip[:, mask]
    assert torch.allclose(colours, colours[:, :1].expand_as(colours))
    assert bool((mask.sum((1, 2)) > 0).all())
    # And the object's colour is not the background's: the mask is not a random region.
    assert (clip[:, mask].mean(1) - clip[:, ~mask].mean(1)).abs().max() > 0.3


def test_motion_label_is_direction_and_appearance_is_shared() -> None:
    data = MovingShapes("motion", num_samples=16, seed=0)
    expected = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}
    colours = []
    for clip, label, mask in (data[i] for i in range(len(data))):
        c = _centroids(mask)
        step = (c[-1] - c[0]) / 15
        dy, dx = expected[data.classes[label]]
        assert step[0] * dy + step[1] * dx >= 0.9  # about 1 px/frame or more, the right way
        assert abs(float(step[0] * dx - step[1] * dy)) < 1e-4  # and not sideways
        colours.append(clip[:, mask].mean(1))
    colours_t = torch.stack(colours)
    assert torch.allclose(colours_t, colours_t[:1].expand_as(colours_t))  # identical look


def test_motion_distractors_are_static_copies_of_the_object() -> None:
    clip, _, mask = MovingShapes("motion", num_samples=1, num_distractors=2, noise=0.0, seed=7)[0]
    bright = clip.mean(0) > 0.9  # object and distractors are white
    static = bright.all(0)  # white in every frame: the distractors
    assert int(static.sum()) >= 2 * 25  # two static squares of ~6x6 pixels
    assert not bool((mask & static.unsqueeze(0)).any())


def test_appearance_label_is_colour_and_motion_is_uninformative() -> None:
    data = MovingShapes("appearance", num_samples=40, seed=1)
    clips, labels, masks = data.tensors()
    means = torch.stack([clips[i][:, masks[i]].mean(1) for i in range(len(data))])
    for cls in range(data.num_classes):
        group = means[labels == cls]
        assert torch.allclose(group, group[:1].expand_as(group), atol=1e-5)
    assert len({tuple(m.round(decimals=3).tolist()) for m in means}) == data.num_classes


def test_event_frames_move_only_inside_the_event() -> None:
    data = MovingShapes("motion", num_samples=4, event_frames=(6, 11), seed=2)
    clip, _, mask = data[0]
    assert not bool(mask[:6].any()) and not bool(mask[11:].any())
    assert bool(mask[6:11].flatten(1).any(1).all())
    moving = motion_mask(clip, threshold=0.5)
    inside = moving[6:10].float().mean()
    outside = torch.cat([moving[:5], moving[12:]]).float().mean()
    assert inside > 2 * outside
    # Before the event the object stands still: frames 0 and 5 differ only by noise.
    assert (clip[:, 0] - clip[:, 5]).abs().max() <= data.noise + 1e-6


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="variant"):
        MovingShapes("colour")
    with pytest.raises(ValueError, match="too small"):
        MovingShapes(size=12)
    with pytest.raises(ValueError, match="event_frames"):
        MovingShapes(event_frames=(10, 4))
    with pytest.raises(IndexError):
        MovingShapes(num_samples=2)[2]

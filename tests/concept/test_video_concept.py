"""Concept clips: static tiling, tracked crops and the VideoConcept container."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from captum_video.concept import VideoConcept, dynamic_clip, static_clip, static_twin


def test_static_clip_tiles_one_frame_without_motion() -> None:
    frame = torch.rand(3, 8, 10)
    clip = static_clip(frame, 5)
    assert clip.shape == (3, 5, 8, 10)
    assert torch.equal(clip, frame[:, None].expand(3, 5, 8, 10))
    assert torch.equal(clip.diff(dim=1), torch.zeros(3, 4, 8, 10))  # no motion at all
    batch = static_clip(torch.rand(2, 3, 8, 10), 4)
    assert batch.shape == (2, 3, 4, 8, 10) and batch.is_contiguous()


def test_static_twin_uses_the_middle_frame() -> None:
    clip = torch.rand(2, 3, 6, 4, 4)
    twin = static_twin(clip)
    assert twin.shape == clip.shape
    assert torch.equal(twin[:, :, 0], clip[:, :, 3]) and torch.equal(twin[:, :, 5], clip[:, :, 3])
    assert torch.equal(static_twin(clip[0], frame_index=1)[:, 4], clip[0, :, 1])


def test_dynamic_clip_crops_the_union_box_and_keeps_the_motion() -> None:
    video = torch.rand(3, 10, 40, 40)
    # A 6x6 box moving right by 1 px per frame.
    boxes = torch.tensor([[5.0, 8.0, 11.0, 14.0]]).repeat(10, 1)
    boxes[:, [0, 2]] += torch.arange(10.0)[:, None]
    clip = dynamic_clip(video, boxes, 8, size=(16, 16), start=2, margin=0.0)
    # Union over frames 2..9: x 7..20, y 8..14, the same window in every frame.
    expected = F.interpolate(
        video[:, 2:10, 8:14, 7:20].permute(1, 0, 2, 3),
        size=(16, 16),
        mode="bilinear",
        align_corners=False,
    ).permute(1, 0, 2, 3)
    assert torch.allclose(clip, expected)
    same = dynamic_clip(video, boxes[2:10], 8, size=(16, 16), start=2, margin=0.0)
    assert torch.equal(clip, same)  # boxes for the clip's frames only give the same crop


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: static_clip(torch.rand(3, 4, 8, 8, 8), 4), ValueError),
        (lambda: static_clip(torch.rand(3, 8, 8), 0), ValueError),
        (lambda: static_clip(torch.zeros(3, 8, 8, dtype=torch.long), 2), TypeError),
        (lambda: dynamic_clip(torch.rand(3, 4, 8, 8), torch.rand(4, 3), 4), ValueError),
        (lambda: dynamic_clip(torch.rand(3, 4, 8, 8), torch.zeros(4, 4), 4), ValueError),
        (lambda: dynamic_clip(torch.rand(3, 4, 8, 8), torch.rand(4, 4), 8), ValueError),
        (lambda: dynamic_clip(torch.rand(4, 8, 8), torch.rand(4, 4), 4), ValueError),
    ],
)
def test_bad_clip_inputs_raise(call, error) -> None:
    with pytest.raises(error):
        call()


def test_video_concept_is_a_captum_concept_with_clip_batches() -> None:
    from captum.concept import Concept

    clips = torch.rand(5, 3, 4, 8, 8)
    concept = VideoConcept(3, "ball", clips=clips, batch_size=2, kind="dynamic")
    assert isinstance(concept, Concept) and concept.identifier == "ball-3"
    batches = list(concept.data_iter)
    assert [b.shape[0] for b in batches] == [2, 2, 1]
    assert torch.equal(torch.cat(batches), clips)
    scaled = VideoConcept(4, "scaled", clips=clips, preprocess=lambda x: x * 2 - 1)
    assert torch.equal(scaled.clips, clips * 2 - 1)  # the model's pre-processing, applied once


def test_video_concept_builders() -> None:
    frames = torch.rand(4, 3, 8, 8)
    red = VideoConcept.from_frames(1, "red", frames, 6)
    assert red.kind == "static" and red.clips.shape == (4, 3, 6, 8, 8)
    videos = torch.rand(2, 3, 12, 32, 32)
    track = torch.tensor([[4.0, 4, 12, 12]]).repeat(12, 1)
    dyn = VideoConcept.from_tracks(2, "dyn", list(videos), [track, track], 8, size=(16, 16))
    sta = VideoConcept.from_tracks(
        3, "sta", list(videos), [track, track], 8, size=(16, 16), static=True
    )
    assert dyn.kind == "dynamic" and sta.kind == "static"
    assert torch.equal(sta.clips, static_twin(dyn.clips))  # the twin comes from the same pixels


@pytest.mark.parametrize(
    "kwargs",
    [
        {"id": 0, "name": "a-b", "clips": torch.rand(2, 3, 4, 8, 8)},
        {"id": 0, "name": "a", "clips": torch.rand(2, 3, 8, 8)},
        {"id": 0, "name": "a"},
        {"id": 0, "name": "a", "clips": torch.rand(2, 3, 4, 8, 8), "kind": "weird"},
        {"id": 0, "name": "a", "clips": torch.full((2, 3, 4, 8, 8), float("nan"))},
    ],
)
def test_video_concept_rejects_bad_arguments(kwargs) -> None:
    with pytest.raises(ValueError):
        VideoConcept(**kwargs)
    with pytest.raises(TypeError):
        VideoConcept("0", "a", clips=torch.rand(2, 3, 4, 8, 8))  # type: ignore[arg-type]


def test_video_concept_is_positional_like_captum_concept() -> None:
    from captum.concept import Concept

    clips = torch.rand(4, 3, 4, 8, 8)
    loader = torch.utils.data.DataLoader(clips, batch_size=2)
    captum_concept = Concept(0, "ball", loader)
    ours = VideoConcept(0, "ball", loader)  # the same positional call
    assert (ours.id, ours.name, ours.data_iter) == (
        captum_concept.id,
        captum_concept.name,
        captum_concept.data_iter,
    )
    assert ours.identifier == captum_concept.identifier
    from_tensor = VideoConcept(1, "ball_clips", clips, "dynamic")  # a tensor of clips still works
    assert from_tensor.kind == "dynamic" and torch.equal(from_tensor.clips, clips)
    torch.testing.assert_close(next(iter(from_tensor.data_iter)), clips)
    with pytest.raises(ValueError, match="once"):
        VideoConcept(2, "twice", clips, clips=clips)
    with pytest.raises(TypeError, match="iterable"):
        VideoConcept(3, "number", 5)  # type: ignore[arg-type]

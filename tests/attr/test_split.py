"""SpatioTemporalSplit: exact zero on static clips, batching, motion localisation."""

from __future__ import annotations

import pytest
import torch
from captum.attr import Attribution, InputXGradient, Saliency
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

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
    parts = SpatioTemporalSplit(dt, normalize=None).attribute(clip, target=2)
    chunked = SpatioTemporalSplit(dt, normalize=None).attribute(
        clip, target=2, internal_batch_size=4
    )
    scaled = SpatioTemporalSplit(dt).attribute(clip, target=2, internal_batch_size=4)
    torch.testing.assert_close(scaled.joint, parts.joint)
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
    first = SpatioTemporalSplit(ixg, static="repeat_first", normalize=None)
    first_parts = first.attribute(clip, target=1)
    expected = ixg.attribute(clip[:, :, :1].expand_as(clip).contiguous(), target=1)
    torch.testing.assert_close(first_parts.spatial, expected)
    mean = SpatioTemporalSplit(
        ixg, reduce="temporal_mean", combine="positive_difference", normalize=None
    )
    parts = mean.attribute(clip, target=torch.tensor([1, 2]))
    assert bool((parts.temporal >= 0).all()) and parts.spatial.shape == clip.shape
    tupled = SpatioTemporalSplit(ixg, normalize=None).attribute((clip,), target=1)
    assert isinstance(tupled.joint, tuple) and tupled.joint[0].shape == clip.shape


def test_bad_arguments(demo_model) -> None:
    with pytest.raises(TypeError, match="Attribution"):
        SpatioTemporalSplit(demo_model)
    with pytest.raises(ValueError, match="static"):
        SpatioTemporalSplit(Saliency(demo_model), static="freeze")
    with pytest.raises(ValueError, match="normalize"):
        SpatioTemporalSplit(Saliency(demo_model), normalize="max")
    split = SpatioTemporalSplit(Saliency(demo_model))
    with pytest.raises(ValueError, match="5"):
        split.attribute(torch.rand(3, 8, 16, 16), target=0)
    with pytest.raises(ValueError, match="internal_batch_size"):
        split.attribute(torch.rand(1, 3, 4, 16, 16), target=0, internal_batch_size=0)


def _shares(part: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Per clip, the fraction of ``part`` (N, T, H, W, non-negative) inside ``region``."""
    return (part * region).flatten(1).sum(1) / part.flatten(1).sum(1)


def test_temporal_part_lies_on_the_moving_object(demo_model) -> None:
    """MovingShapes("motion"): the deciding square moves, identical distractors do not.

    Normalised (the default), the temporal part says where motion moves relevance: what it
    adds lies on the moving square (~3.5 % of the voxels; measured 64-73 % of the added
    relevance on 32 clips of eight seeds, ~80 % with a 1-px border, 0-7 % on the
    distractors), and what it takes away comes mostly from the static look-alikes, which are
    as relevant as the object once the clip is frozen (measured 57-76 %)."""
    clips, labels, masks = MovingShapes("motion", num_samples=4, seed=4242).tensors()
    obj = masks.float()
    # The static distractors: bright squares that are never part of the object.
    distractors = (clips.min(1).values > 0.8).float() * (1 - obj.amax(1, keepdim=True))
    dt = DeepTaylor3D(demo_model)
    before = model_snapshot(demo_model)
    parts = SpatioTemporalSplit(dt).attribute(clips, target=labels)
    assert_model_unchanged(before, demo_model)
    torch.testing.assert_close(parts.spatial + parts.temporal, parts.joint)
    # Rescaled to the joint total, the temporal part sums to ~0: motion moves relevance.
    # (Not exactly 0: spatial frame t is frame t of static clip t, and a static clip's
    # frames carry unequal shares of its total because of padding at the ends; measured
    # within 2.3 % of the joint total.)
    totals = parts.temporal.flatten(1).sum(1) / parts.joint.flatten(1).sum(1)
    assert bool((totals.abs() < 0.05).all()), totals
    temporal = parts.temporal.sum(1)  # (N, T, H, W)
    added, taken = temporal.clamp(min=0), (-temporal).clamp(min=0)
    assert bool((_shares(added, obj) > 0.6).all()), _shares(added, obj)
    assert bool((_shares(added, distractors) < 0.1).all()), _shares(added, distractors)
    assert bool((_shares(taken, distractors) > 0.5).all()), _shares(taken, distractors)
    # Keeping only what motion adds, the temporal part is mostly on the moving object.
    positive = SpatioTemporalSplit(dt, combine="positive_difference").attribute(
        clips, target=labels
    )
    torch.testing.assert_close(positive.temporal, parts.temporal.clamp(min=0))
    assert bool((_shares(positive.temporal.sum(1), obj) > 0.6).all())


def test_raw_difference_is_dominated_by_the_collapsed_logit(demo_model) -> None:
    """Why the default normalises: freezing a motion clip drops the target's logit (below
    zero for some clips), and the raw difference then spreads over every bright square."""
    clips, labels, masks = MovingShapes("motion", num_samples=4, seed=4242).tensors()
    frozen = clips[:, :, :1].expand_as(clips)
    with torch.no_grad():
        logit = demo_model(clips).gather(1, labels[:, None])
        frozen_logit = demo_model(frozen).gather(1, labels[:, None])
    assert bool((frozen_logit < logit / 2).all())
    obj = masks.float()
    dt = DeepTaylor3D(demo_model)
    raw = SpatioTemporalSplit(dt, normalize=None).attribute(clips, target=labels)
    scaled = SpatioTemporalSplit(dt).attribute(clips, target=labels)
    torch.testing.assert_close(raw.joint, scaled.joint)
    raw_share = _shares(raw.temporal.sum(1).clamp(min=0), obj)
    scaled_share = _shares(scaled.temporal.sum(1).clamp(min=0), obj)
    assert bool((scaled_share > raw_share).all()), (raw_share, scaled_share)


def test_normalize_total_rescales_each_static_map(demo_model) -> None:
    clip = torch.rand(2, 3, 4, 16, 16)
    dt = DeepTaylor3D(demo_model)
    parts = SpatioTemporalSplit(dt).attribute(clip, target=[1, 2])
    raw = SpatioTemporalSplit(dt, normalize=None).attribute(clip, target=[1, 2])
    target = torch.tensor([1, 2])
    for t in (0, 3):
        static = clip[:, :, t : t + 1].expand_as(clip).contiguous()
        static_rel = dt.attribute(static, target=target)
        factor = parts.joint.flatten(1).sum(1) / static_rel.flatten(1).sum(1)
        expected = static_rel[:, :, t] * factor.view(-1, 1, 1, 1)
        torch.testing.assert_close(parts.spatial[:, :, t], expected, rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(raw.spatial[:, :, t], static_rel[:, :, t])


def test_normalize_total_needs_a_nonzero_total(demo_model) -> None:
    class Zero(Saliency):
        def attribute(self, inputs, **kwargs):  # type: ignore[override]
            if isinstance(inputs, tuple):
                return tuple(torch.zeros_like(x) for x in inputs)
            return torch.zeros_like(inputs)

    split = SpatioTemporalSplit(Zero(demo_model))
    with pytest.raises(ValueError, match="normalize=None"):
        split.attribute(torch.rand(1, 3, 4, 16, 16), target=0)
    parts = SpatioTemporalSplit(Zero(demo_model), normalize=None).attribute(
        torch.rand(1, 3, 4, 16, 16), target=0
    )
    assert torch.equal(parts.temporal, torch.zeros(1, 3, 4, 16, 16))
    with pytest.warns(UserWarning, match="ill-conditioned"):
        SpatioTemporalSplit(InputXGradient(demo_model)).attribute(
            torch.randn(2, 3, 4, 16, 16), target=0
        )


def test_deep_taylor_as_is_barely_reflects_motion(demo_model) -> None:
    """Hiley et al.'s finding (spec 4.3): the relevance of a motion-removed clip looks like
    the relevance of the real clip, although the motion model's decision depends on motion
    (its logit collapses once frozen). Measured per frame on 4 clips: Spearman 0.81-0.96,
    mean 0.91."""
    from captum_video.metrics import spearman_correlation

    clips, labels, _ = MovingShapes("motion", num_samples=4, seed=4242).tensors()
    parts = SpatioTemporalSplit(DeepTaylor3D(demo_model), normalize=None).attribute(
        clips, target=labels
    )
    joint = parts.joint.sum(1).abs().flatten(0, 1).flatten(1)  # (N * T, H * W)
    spatial = parts.spatial.sum(1).abs().flatten(0, 1).flatten(1)
    rho = spearman_correlation(joint, spatial)
    assert rho.shape == (joint.shape[0],)
    assert float(rho.mean()) > 0.85 and float(rho.min()) > 0.7, rho


class _Elementwise(Attribution):
    """A stand-in method whose relevance of a voxel depends only on that voxel, its frame
    index and its row's target, so results cannot depend on how rows are batched; it records
    the rows of every call."""

    def __init__(self) -> None:
        super().__init__(lambda x: x.flatten(1).sum(1, keepdim=True))  # not a module
        self.rows: list[int] = []

    def attribute(self, inputs, target=None, additional_forward_args=None):  # type: ignore[override]  # noqa: ANN001, ANN201
        x = inputs[0] if isinstance(inputs, tuple) else inputs
        self.rows.append(x.shape[0])
        frame = torch.arange(1, x.shape[2] + 1, dtype=x.dtype).view(1, 1, -1, 1, 1)
        scale = torch.as_tensor(target, dtype=x.dtype).reshape(-1, 1, 1, 1, 1) + 1
        rel = (x * x + 0.25 * x) * frame.sqrt() * scale
        return (rel,) if isinstance(inputs, tuple) else rel


def _one_shot_oracle(method, clip, target, static, reduce, normalize):  # noqa: ANN001, ANN202
    """The split computed the way it was before chunking: every static map held at once."""
    n, _, t = clip.shape[:3]
    joint = method.attribute(clip, target=target)
    frames = clip[:, :, :1] if static == "repeat_first" else clip
    k = frames.shape[2]
    statics = frames.transpose(1, 2)[:, :, :, None].expand(n, k, clip.shape[1], t, *clip.shape[3:])
    rows = torch.tensor(target).repeat_interleave(k)
    rel = method.attribute(statics.reshape(n * k, *clip.shape[1:]), target=rows)
    rel = rel.view(n, k, *clip.shape[1:]).double()
    if normalize == "total":
        factor = joint.double().flatten(1).sum(1).view(n, 1) / rel.flatten(2).sum(2)
        rel = rel * factor.view(n, k, 1, 1, 1, 1)
    if reduce == "temporal_mean":
        mean = rel.mean(3)  # (N, K, C, H, W)
        spatial = mean.expand(n, t, *mean.shape[2:]).transpose(1, 2)
    elif k == 1:
        spatial = rel[:, 0]
    else:
        index = torch.arange(t)
        spatial = rel[:, index, :, index].permute(1, 2, 0, 3, 4)
    return spatial.float(), joint


@pytest.mark.parametrize("static", ["repeat_frame", "repeat_first"])
@pytest.mark.parametrize("reduce", ["same_index", "temporal_mean"])
@pytest.mark.parametrize("normalize", ["total", None])
def test_chunked_reduction_equals_the_one_shot_result(static, reduce, normalize) -> None:  # noqa: ANN001
    """Each chunk of static maps is reduced as soon as it is computed; the result does not
    depend on the chunk size (exactly) and equals the all-at-once formula."""
    clip = torch.rand(2, 3, 5, 4, 4)
    target = [1, 2]
    method = _Elementwise()
    split = SpatioTemporalSplit(method, static=static, reduce=reduce, normalize=normalize)
    one_shot = split.attribute(clip, target=target, internal_batch_size=1000)
    for chunk in (1, 2, 3, 7):
        chunked = split.attribute(clip, target=target, internal_batch_size=chunk)
        for part in ("spatial", "temporal", "joint"):
            assert torch.equal(getattr(chunked, part), getattr(one_shot, part)), (chunk, part)
    spatial, joint = _one_shot_oracle(method, clip, target, static, reduce, normalize)
    torch.testing.assert_close(one_shot.joint, joint)
    torch.testing.assert_close(one_shot.spatial, spatial, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(one_shot.temporal, joint - spatial, rtol=1e-6, atol=1e-6)


class _LargestStorage(TorchDispatchMode):
    """Records the largest storage of any tensor an operation returns while active."""

    def __init__(self) -> None:
        super().__init__()
        self.nbytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                self.nbytes = max(self.nbytes, value.untyped_storage().nbytes())
        return out


@pytest.mark.parametrize("reduce", ["same_index", "temporal_mean"])
def test_buffers_do_not_grow_with_the_square_of_the_frames(reduce) -> None:  # noqa: ANN001
    """The largest tensor the split creates is a few batches of clips, for 8 or 32 frames
    (it held all N x T motion-removed maps, T times the batch, before chunking)."""
    ratios = []
    for t in (8, 32):
        clip = torch.rand(2, 3, t, 8, 8)
        method = _Elementwise()
        for chunk in (1, None):  # None: a model-free method gets N static clips per call
            with _LargestStorage() as spy:
                SpatioTemporalSplit(method, reduce=reduce).attribute(
                    clip, target=[0, 1], internal_batch_size=chunk
                )
            ratios.append(spy.nbytes / (clip.nelement() * clip.element_size()))
        assert max(method.rows) == 2  # the joint pass and N static clips per call
    # float64 totals of one chunk: twice a batch of float32 clips.
    assert max(ratios) <= 2.0, ratios


def test_default_chunk_follows_the_memory_budget(demo_model, monkeypatch) -> None:  # noqa: ANN001
    """internal_batch_size=None: as many static clips as fit in the default budget, at least
    the batch's clips."""
    from captum_video.attr import _split

    calls: list[int] = []

    class Spy(Saliency):
        def attribute(self, inputs, **kwargs):  # type: ignore[override]  # noqa: ANN001, ANN202
            calls.append((inputs[0] if isinstance(inputs, tuple) else inputs).shape[0])
            return super().attribute(inputs, **kwargs)

    clip = torch.rand(2, 3, 8, 16, 16)
    split = SpatioTemporalSplit(Spy(demo_model))
    split.attribute(clip, target=[0, 1])
    assert calls == [2, 16]  # the default budget holds all 16 static clips
    calls.clear()
    monkeypatch.setattr(_split, "default_budget", lambda device: 1)
    split.attribute(clip, target=[0, 1])
    assert calls == [2] * 9  # joint, then 8 calls of N = 2 static clips

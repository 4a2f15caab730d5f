"""ROAR / KAR: the voxel removal itself (exact counts, the mean, the ranking, random ties), a
synthetic task whose deciding region is known (a perfect map against a random map), the
curve helper and bad-input errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from captum_video.metrics.roar import RoarResult, ablate_top, remove_and_retrain, roar_curve

T, H, W = 4, 8, 8
REGION = (slice(None), slice(0, 2), slice(0, 3))  # all frames, rows 0-1, columns 0-2: 24 voxels


def _region_task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise clips whose label is the sign of a zero-mean pattern inside :data:`REGION` only.

    The pattern (+a on the region's first row, -a on its second, or the reverse) sums to zero,
    so the clip's per-channel mean, which replaces removed voxels, carries no label: once the
    region is gone, nothing in the clip tells the classes apart.
    """
    gen = torch.Generator().manual_seed(seed)
    clips = torch.rand(n, 3, T, H, W, generator=gen)
    labels = torch.randint(2, (n,), generator=gen)
    sign = (2.0 * labels - 1.0).view(n, 1, 1, 1)
    pattern = torch.tensor([0.1, -0.1]).view(1, 1, 2, 1) * sign
    clips[:, :, :, 0:2, 0:3] += pattern.unsqueeze(1)
    truth = torch.zeros(n, 1, T, H, W)
    truth[(slice(None), slice(None), *REGION)] = 1.0
    return clips, labels, truth


def _linear() -> nn.Module:
    return nn.Sequential(nn.Flatten(1), nn.Linear(3 * T * H * W, 2))


def _fit(model: nn.Module, clips: torch.Tensor, labels: torch.Tensor, seed: int) -> None:
    # Full-batch Adam on a linear model: a second, not a minute.
    opt = torch.optim.Adam(model.parameters(), lr=0.02, weight_decay=1e-3)
    for _ in range(150):
        loss = nn.functional.cross_entropy(model(clips), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.fixture(scope="module")
def region_task():
    train = _region_task(600, seed=1)
    test = _region_task(400, seed=2)
    gen = torch.Generator().manual_seed(3)
    random_maps = (
        torch.rand(train[2].shape, generator=gen),
        torch.rand(test[2].shape, generator=gen),
    )
    return train, test, random_maps


def _accuracy(task, perfect: bool, mode: str) -> float:
    (x, y, truth), (xt, yt, truth_t), (rand, rand_t) = task
    maps, maps_t = (truth, truth_t) if perfect else (rand, rand_t)
    result = remove_and_retrain(
        x, y, maps, xt, yt, maps_t, _linear, _fit, fractions=(0.1,), mode=mode, seeds=(0,)
    )
    return result.accuracy[0]


def test_roar_with_the_perfect_map_hurts_more_than_with_a_random_map(region_task):
    # The region is 24 of 256 voxels, under 10 %: the perfect map removes all of it.
    perfect, random = _accuracy(region_task, True, "roar"), _accuracy(region_task, False, "roar")
    assert perfect < 0.62, perfect  # about chance (0.5): the label is gone
    assert random > perfect + 0.25, (random, perfect)


def test_kar_with_the_perfect_map_keeps_more_than_with_a_random_map(region_task):
    perfect, random = _accuracy(region_task, True, "kar"), _accuracy(region_task, False, "kar")
    assert perfect > 0.9, perfect
    assert perfect > random + 0.1, (perfect, random)


def test_retraining_on_unmodified_data_learns_the_task(region_task):
    # k = 0 removes nothing: the oracle for how much there was to lose.
    (x, y, truth), (xt, yt, truth_t), _ = region_task
    result = remove_and_retrain(x, y, truth, xt, yt, truth_t, _linear, _fit, fractions=(0.0,))
    assert result.accuracy[0] > 0.9


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.37, 1.0])
def test_roar_replaces_exactly_k_percent_of_voxels_by_the_per_channel_mean(fraction):
    gen = torch.Generator().manual_seed(0)
    clips = torch.rand(3, 3, T, H, W, generator=gen)
    relevance = torch.randn(3, 3, T, H, W, generator=gen)
    before = clips.clone(), relevance.clone()
    out = ablate_top(clips, relevance, fraction, generator=gen)
    torch.testing.assert_close((clips, relevance), before, rtol=0, atol=0)  # inputs untouched
    changed = (out != clips).any(1)
    expected = round(fraction * T * H * W)
    assert changed.flatten(1).sum(1).tolist() == [expected] * 3
    mean = clips.mean(dim=(2, 3, 4), keepdim=True).expand_as(clips)
    mask = changed.unsqueeze(1).expand_as(clips)
    torch.testing.assert_close(out[mask], mean[mask], rtol=0, atol=0)
    # The replaced voxels are the most relevant ones (channel sum; no ties in Gaussian noise).
    top = relevance.sum(1).flatten(1).topk(expected, dim=1).indices
    chosen = torch.zeros_like(changed.flatten(1)).scatter_(1, top, True)
    assert torch.equal(changed.flatten(1), chosen)


def test_kar_keeps_exactly_k_percent_of_voxels():
    gen = torch.Generator().manual_seed(1)
    clips = torch.rand(2, 3, T, H, W, generator=gen)
    relevance = torch.randn(2, 1, T, H, W, generator=gen)
    out = ablate_top(clips, relevance, 0.3, mode="kar", generator=gen)
    kept = (out == clips).all(1).flatten(1)
    assert kept.sum(1).tolist() == [round(0.3 * T * H * W)] * 2
    top = relevance.flatten(1).topk(round(0.3 * T * H * W), dim=1).indices
    assert bool(kept.gather(1, top).all())


def test_ties_are_broken_at_random():
    # A constant map: which voxels go depends only on the generator, spread over the clip.
    clips = torch.rand(64, 1, T, H, W, generator=torch.Generator().manual_seed(2))
    flat = torch.zeros(64, 1, T, H, W)
    first = ablate_top(clips, flat, 0.1, generator=torch.Generator().manual_seed(3))
    again = ablate_top(clips, flat, 0.1, generator=torch.Generator().manual_seed(3))
    other = ablate_top(clips, flat, 0.1, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)
    removed = (first != clips).flatten(1).float()
    # Raster order would put every removed voxel among the first 10 %; random ties spread
    # them: their mean flat index is near the middle and every frame loses some.
    positions = torch.arange(T * H * W, dtype=torch.float32)
    mean_index = float((removed * positions).sum() / removed.sum())
    assert abs(mean_index - (T * H * W - 1) / 2) < 10
    assert bool((removed.view(64, T, H * W).sum((0, 2)) > 0).all())


def test_return_mask_marks_exactly_the_replaced_voxels():
    gen = torch.Generator().manual_seed(5)
    clips = torch.rand(2, 3, T, H, W, generator=gen)
    relevance = torch.randn(2, 1, T, H, W, generator=gen)
    for mode in ("roar", "kar"):
        out = ablate_top(clips, relevance, 0.2, mode=mode, generator=torch.Generator())
        mask = ablate_top(
            clips, relevance, 0.2, mode=mode, generator=torch.Generator(), return_mask=True
        )
        assert mask.shape == (2, 1, T, H, W) and mask.dtype == torch.bool
        assert torch.equal(mask, (out != clips).any(1, keepdim=True))


def test_mask_only_detects_labels_leaking_through_the_mask(region_task):
    # The perfect map is the same region for every clip: its mask says nothing about the
    # label. A map whose region moves with the label leaks it through the mask alone.
    (x, y, truth), (xt, yt, truth_t), _ = region_task

    def leaky(labels):
        maps = torch.zeros(len(labels), 1, T, H, W)
        maps[labels == 1, :, :, 4:6, 4:7] = 1.0
        maps[labels == 0, :, :, 0:2, 0:3] = 1.0
        return maps

    def accuracy(train_maps, test_maps):
        result = remove_and_retrain(
            x, y, train_maps, xt, yt, test_maps, _linear, _fit, fractions=(0.1,), mask_only=True
        )
        return result.accuracy[0]

    assert accuracy(truth, truth_t) < 0.62
    assert accuracy(leaky(y), leaky(yt)) > 0.95


def test_roar_curve_anchors_the_reference():
    result = RoarResult("kar", (0.5, 0.1), (0.8, 0.4), ((0.8, 0.4),), (0,))
    assert roar_curve(result) == ([0.1, 0.5], [0.4, 0.8])
    assert roar_curve(result, reference=0.95) == ([0.1, 0.5, 1.0], [0.4, 0.8, 0.95])
    assert result.spread == (0.0, 0.0)


def test_spread_over_seeds(region_task):
    (x, y, truth), (xt, yt, truth_t), _ = region_task
    calls = []

    def fit(model, clips, labels, seed):
        calls.append(seed)
        _fit(model, clips[: 20 + 200 * seed], labels[: 20 + 200 * seed], seed)

    result = remove_and_retrain(
        x, y, truth, xt, yt, truth_t, _linear, fit, fractions=(0.0, 0.5), seeds=(0, 1)
    )
    assert calls == [0, 1, 0, 1] and result.seeds == (0, 1)
    assert len(result.accuracy_per_seed) == 2
    for i in range(2):
        runs = [run[i] for run in result.accuracy_per_seed]
        assert result.accuracy[i] == pytest.approx(sum(runs) / 2)
        assert result.spread[i] == pytest.approx(max(runs) - min(runs))


def _args(**changes):
    x, y = torch.rand(4, 3, T, H, W), torch.tensor([0, 1, 0, 1])
    maps = torch.rand(4, 1, T, H, W)
    args = {
        "train_clips": x,
        "train_labels": y,
        "train_attributions": maps,
        "test_clips": x,
        "test_labels": y,
        "test_attributions": maps,
        "model_factory": _linear,
        "train_fn": lambda *a: None,
    }
    args.update(changes)
    return args


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"fractions": (1.5,)}, ValueError, "fraction must be in"),
        ({"fractions": ()}, ValueError, "fractions must hold"),
        ({"fractions": ("10%",)}, TypeError, "fraction must be a number"),
        ({"seeds": ()}, ValueError, "seeds must hold"),
        ({"mode": "keep"}, ValueError, "mode must be 'roar'"),
        ({"train_labels": torch.tensor([0, 1])}, ValueError, "train_labels has 2 entries"),
        ({"test_labels": torch.rand(4)}, TypeError, "test_labels must be a 1-D integer"),
        ({"train_attributions": torch.rand(4, 1, T, H, 5)}, ValueError, "train_attributions"),
        (
            {"test_attributions": torch.full((4, 1, T, H, W), float("nan"))},
            ValueError,
            "test_attributions",
        ),
        ({"train_clips": torch.rand(4, 3, H, W)}, ValueError, "train_clips"),
        ({"model_factory": lambda: "model"}, TypeError, "model_factory must return"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(changes, error, message):
    with pytest.raises(error, match=message):
        remove_and_retrain(**_args(**changes))


def test_bad_input_of_ablate_top():
    clips = torch.rand(2, 3, T, H, W)
    with pytest.raises(ValueError, match="fraction must be in"):
        ablate_top(clips, clips, -0.1)
    with pytest.raises(ValueError, match="channel_reduction"):
        ablate_top(clips, clips, 0.1, channel_reduction="max")
    with pytest.raises(ValueError, match="attributions must have shape"):
        ablate_top(clips, clips[:1], 0.1)
    with pytest.raises(TypeError, match="attributions must be a Tensor"):
        ablate_top(clips, clips.numpy(), 0.1)
    with pytest.raises(ValueError, match="mode must be"):
        ablate_top(clips, clips, 0.1, mode="remove")
    with pytest.raises(TypeError, match="clips"):
        ablate_top((clips * 255).to(torch.uint8), clips, 0.1)


def test_bad_input_of_roar_curve():
    result = RoarResult("roar", (0.1,), (0.5,), ((0.5,),), (0,))
    with pytest.raises(TypeError, match="result must be the RoarResult"):
        roar_curve({"fractions": (0.1,)})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reference must be an accuracy"):
        roar_curve(result, reference=95.0)
    with pytest.raises(TypeError, match="reference must be an accuracy"):
        roar_curve(result, reference="0.9")  # type: ignore[arg-type]

"""Model-randomisation sanity check: Spearman against scipy, exact model restoration, a
model-independent map fails, a gradient map passes."""

from __future__ import annotations

import pytest
import scipy.stats
import torch
from captum.attr import Saliency

from captum_video.metrics import randomization_sanity, spearman_correlation
from tests.helpers import assert_model_unchanged, model_snapshot


def test_spearman_matches_scipy_with_ties():
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (3, 40), generator=gen).float()  # many ties
    b = a + torch.randint(0, 4, (3, 40), generator=gen).float()
    ours = spearman_correlation(a, b)
    for i in range(3):
        ref = scipy.stats.spearmanr(a[i].numpy(), b[i].numpy()).statistic
        assert ours[i].item() == pytest.approx(ref, abs=1e-6)
    assert spearman_correlation(a, -a).tolist() == pytest.approx([-1.0] * 3)


def test_gradient_map_decorrelates_and_model_is_restored(demo_model, motion_batch):
    clips, labels, _ = motion_batch
    clips, labels = clips[:2], labels[:2]
    before = model_snapshot(demo_model)
    saliency = Saliency(demo_model)
    result = randomization_sanity(
        lambda x, t: saliency.attribute(x, target=t), demo_model, clips, labels, seed=1
    )
    assert result.layers == ["fc", "layer3.conv", "layer2.conv", "layer1.conv", "stem.conv"]
    assert result.correlation.shape == (5, 2)
    # Destroying all the weights changes a faithful gradient map a lot.
    assert (result.correlation[-1] < 0.6).all()
    assert result.correlation[-1].mean() < result.correlation[0].mean()
    assert_model_unchanged(before, demo_model)
    again = randomization_sanity(
        lambda x, t: saliency.attribute(x, target=t),
        demo_model,
        clips,
        labels,
        seed=1,
        layers=["fc", "layer3.conv"],
    )
    torch.testing.assert_close(again.correlation, result.correlation[:2])


def test_a_model_independent_map_fails_the_check(demo_model, motion_batch):
    clips, labels, _ = motion_batch
    fixed = torch.rand(clips[:2].shape, generator=torch.Generator().manual_seed(0))
    result = randomization_sanity(
        lambda x, t: fixed,
        demo_model,
        clips[:2],
        labels[:2],
        layers=["fc", "layer3.conv"],
        cascading=False,
    )
    assert result.correlation.tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_model_is_restored_when_the_explanation_raises(demo_model, motion_batch):
    clips, labels, _ = motion_batch
    before = model_snapshot(demo_model)
    calls = []

    def explain(x, t):
        calls.append(1)
        if len(calls) == 3:  # after two layers were randomised
            raise RuntimeError("boom")
        return x

    with pytest.raises(RuntimeError, match="boom"):
        randomization_sanity(explain, demo_model, clips[:1], labels[:1])
    assert_model_unchanged(before, demo_model)
    with pytest.raises(ValueError, match="not modules"):
        randomization_sanity(explain, demo_model, clips[:1], layers=["head"])
    assert_model_unchanged(before, demo_model)

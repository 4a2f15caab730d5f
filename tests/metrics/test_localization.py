"""Pointing game, relevance mass and relevance rank: analytic cases, the tolerance edge, and a
trained model against a uniform map."""

from __future__ import annotations

import pytest
import torch
from captum.attr import Saliency

from captum_video.metrics import pointing_game, relevance_mass, relevance_rank


def _point_map(t: int, h: int, w: int, points: list[tuple[int, int]]) -> torch.Tensor:
    """A map with its maximum at ``points[f] = (y, x)`` in frame f."""
    attr = torch.zeros(1, 1, t, h, w)
    for f, (y, x) in enumerate(points):
        attr[0, 0, f, y, x] = 1.0
    return attr


def test_perfect_mask_scores_one_and_uniform_scores_the_mask_share(device):
    mask = torch.zeros(2, 4, 8, 8, dtype=torch.bool, device=device)
    mask[:, 1:3, 2:5, 2:6] = True
    perfect = mask.unsqueeze(1).float() * torch.rand(2, 1, 4, 8, 8, device=device).add(0.1)
    torch.testing.assert_close(relevance_mass(perfect, mask), torch.ones(2, device=device))
    torch.testing.assert_close(relevance_rank(perfect, mask), torch.ones(2, device=device))
    uniform = torch.ones(2, 3, 4, 8, 8, device=device)
    share = mask.float().mean()
    torch.testing.assert_close(relevance_mass(uniform, mask), share.expand(2))
    inverted = 1.0 - perfect
    torch.testing.assert_close(relevance_rank(inverted, mask), torch.zeros(2, device=device))


def test_relevance_modes_treat_negative_relevance_as_documented():
    mask = torch.zeros(1, 1, 1, 2, 2, dtype=torch.bool)
    mask[..., 0, 0] = True
    attr = torch.tensor([1.0, -3.0, 1.0, 0.0]).view(1, 1, 1, 2, 2)
    assert relevance_mass(attr, mask).item() == pytest.approx(0.5)  # positive: 1 / (1 + 1)
    assert relevance_mass(attr, mask, "absolute").item() == pytest.approx(0.2)  # 1 / 5
    assert relevance_mass(attr, mask, "signed").item() == pytest.approx(-1.0)  # 1 / -1
    assert torch.isnan(relevance_mass(torch.zeros(1, 1, 1, 2, 2), mask)).all()


def test_pointing_game_hits_exactly_at_the_tolerance_edge():
    mask = torch.zeros(1, 4, 20, 20, dtype=torch.bool)
    mask[:, :, 5, 5] = True  # a one-pixel object at (y=5, x=5) in every frame
    # distances 3 (edge), 4 (beyond), 5 = (3, 4) diagonal, 0
    attr = _point_map(4, 20, 20, [(5, 8), (5, 9), (8, 9), (5, 5)])
    tol3 = pointing_game(attr, mask, tolerance=3)
    assert tol3.hits.tolist() == [[True, False, False, True]]
    tol5 = pointing_game(attr, mask, tolerance=5)
    assert tol5.hits.tolist() == [[True, True, True, True]]
    assert tol3.accuracy.item() == pytest.approx(0.5)
    # the same with boxes: enlarged by the tolerance on each side, so (3, 4) is inside at 4
    boxes = torch.tensor([[5.0, 5.0, 5.0, 5.0]]).expand(1, 4, 4)
    assert pointing_game(attr, boxes, tolerance=3).hits.tolist() == [[True, False, False, True]]
    assert pointing_game(attr, boxes, tolerance=4).hits.tolist() == [[True, True, True, True]]


def test_pointing_game_skips_frames_without_ground_truth():
    mask = torch.zeros(2, 3, 6, 6, dtype=torch.bool)
    mask[0, 0, 1, 1] = True
    mask[0, 2, 4, 4] = True
    attr = torch.cat([_point_map(3, 6, 6, [(1, 1), (0, 0), (0, 0)])] * 2)
    result = pointing_game(attr, mask, tolerance=0)
    assert result.valid.tolist() == [[True, False, True], [False, False, False]]
    assert result.accuracy[0].item() == pytest.approx(0.5)
    assert torch.isnan(result.accuracy[1])
    boxes = torch.tensor([[[1.0, 1.0, 1.0, 1.0], [float("nan")] * 4, [4.0, 4.0, 4.0, 4.0]]])
    by_box = pointing_game(attr[:1], boxes, tolerance=0)
    assert by_box.valid.tolist() == [[True, False, True]]
    assert by_box.hits.tolist() == result.hits[:1].tolist()


def test_a_trained_model_explains_inside_the_object_more_than_a_uniform_map(
    demo_model, motion_batch
):
    clips, labels, masks = motion_batch
    attr = Saliency(demo_model).attribute(clips, target=labels)
    uniform = torch.ones_like(attr)
    assert relevance_mass(attr, masks).mean() > 1.5 * relevance_mass(uniform, masks).mean()
    assert relevance_rank(attr, masks).mean() > 3 * masks.float().mean()
    hits = pointing_game(attr, masks, tolerance=2).accuracy.mean()
    random_hits = pointing_game(
        torch.rand(attr.shape, generator=torch.Generator().manual_seed(0)), masks, tolerance=2
    ).accuracy.mean()
    assert hits > random_hits


def test_bad_ground_truth_raises():
    attr = torch.rand(1, 1, 4, 8, 8)
    with pytest.raises(ValueError, match="shape"):
        relevance_mass(attr, torch.ones(1, 4, 8, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match="\\(N, C, T, H, W\\)"):
        relevance_rank(attr[0], torch.ones(1, 4, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game(attr, torch.ones(1, 4, 8, 8, dtype=torch.bool), tolerance=-1)
    with pytest.raises(TypeError):
        pointing_game(attr, [[0, 0, 1, 1]])  # type: ignore[arg-type]

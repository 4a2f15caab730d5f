"""temporal_sensitivity: exact drops against a hand computation, and the motion model relying
on time far more than the appearance model."""

from __future__ import annotations

import pytest
import torch

from captum_video.baselines import freeze, reverse
from captum_video.datasets import MovingShapes
from captum_video.metrics import temporal_sensitivity
from captum_video.models import C3DSmall
from tests.helpers import assert_model_unchanged, model_snapshot


def test_drops_match_a_hand_computation() -> None:
    torch.manual_seed(0)
    model = C3DSmall().eval()
    x = torch.rand(3, 3, 8, 16, 16)
    target = torch.tensor([0, 2, 3])
    before = model_snapshot(model)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    drops = temporal_sensitivity(
        model, x, target, ops=("freeze", "reverse", "shuffle"), generator=g1
    )
    assert list(drops) == ["freeze", "reverse", "shuffle"]
    with torch.no_grad():
        p = model(x).softmax(1).gather(1, target[:, None]).squeeze(1)
        for name, op in (("freeze", freeze), ("reverse", reverse)):
            expected = p - model(op(x)).softmax(1).gather(1, target[:, None]).squeeze(1)
            assert torch.allclose(drops[name], expected, atol=1e-6)
    again = temporal_sensitivity(model, x, target, ops=("shuffle",), generator=g2)
    assert torch.equal(again["shuffle"], drops["shuffle"])  # the generator makes it repeat
    assert_model_unchanged(before, model)


def test_defaults_custom_ops_and_errors() -> None:
    torch.manual_seed(0)
    model = C3DSmall().eval()
    x = torch.rand(2, 3, 8, 16, 16)
    drops = temporal_sensitivity(model, x)  # predicted class, default ops
    assert set(drops) == {"freeze", "shuffle", "reverse"}
    assert all(d.shape == (2,) for d in drops.values())
    identity = temporal_sensitivity(model, x, 1, ops={"same": lambda v: v.clone()})
    assert torch.allclose(identity["same"], torch.zeros(2), atol=1e-7)
    named = temporal_sensitivity(model, x, 1, ops=("jumble", "subsample", "temporal_blur", "mean"))
    assert set(named) == {"jumble", "subsample", "temporal_blur", "mean"}
    with pytest.raises(ValueError, match="unknown perturbation"):
        temporal_sensitivity(model, x, 1, ops=("rewind",))
    with pytest.raises(ValueError, match="out of range"):
        temporal_sensitivity(model, x, 4)
    with pytest.raises(ValueError, match="5-D"):
        temporal_sensitivity(model, x[0], 1)
    with pytest.raises(ValueError, match="shaped like x"):
        temporal_sensitivity(model, x, 1, ops={"short": lambda v: v[:, :, :4]})


def test_motion_model_relies_on_time_far_more_than_appearance_model(
    demo_model,
    appearance_model,  # noqa: ANN001
) -> None:
    g = torch.Generator().manual_seed(0)
    motion_clips, motion_labels, _ = MovingShapes("motion", num_samples=8, seed=11).tensors()
    app_clips, app_labels, _ = MovingShapes("appearance", num_samples=8, seed=11).tensors()
    motion = temporal_sensitivity(demo_model, motion_clips, motion_labels, generator=g)
    appearance = temporal_sensitivity(appearance_model, app_clips, app_labels, generator=g)
    for op in ("freeze", "shuffle"):
        assert motion[op].mean() > 0.5, (op, motion[op])
        assert appearance[op].mean() < 0.15, (op, appearance[op])
        assert motion[op].mean() > 5 * appearance[op].mean().clamp_min(0.01)

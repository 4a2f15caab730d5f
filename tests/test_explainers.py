"""The method registry used by the CLI and explain_dataset: every entry gives one map per clip."""

from __future__ import annotations

import pytest
import torch

from captum_video.attr import DeepTaylor3D, SpatioTemporalSplit
from captum_video.explainers import EXPLAINERS, build_method, make_explainer, predict
from captum_video.relevance import reduce_channels
from tests.helpers import assert_model_unchanged, model_snapshot


@pytest.mark.parametrize("name", sorted(EXPLAINERS))
def test_every_explainer_gives_one_map_per_clip(name, demo_model) -> None:
    clips = torch.rand(2, 3, 8, 32, 32)
    before = model_snapshot(demo_model)
    relevance = make_explainer(name, demo_model)(clips, torch.tensor([0, 2]))
    assert_model_unchanged(before, demo_model)
    assert relevance.shape in ((2, 1, 8, 32, 32), (2, 3, 8, 32, 32))
    assert bool(torch.isfinite(relevance).all()) and bool(relevance.abs().sum() > 0)


def test_deep_taylor_motion_is_the_positive_temporal_part(demo_model) -> None:
    clips = torch.rand(2, 3, 4, 32, 32)
    target = torch.tensor([1, 3])
    relevance = make_explainer("deep_taylor_motion", demo_model)(clips, target)
    parts = SpatioTemporalSplit(DeepTaylor3D(demo_model)).attribute(clips, target=target)
    torch.testing.assert_close(relevance, reduce_channels(parts.temporal).clamp(min=0))
    static = clips[:, :, :1].expand_as(clips).contiguous()
    assert torch.equal(
        make_explainer("deep_taylor_motion", demo_model)(static, target),
        torch.zeros(2, 1, 4, 32, 32),
    )


def test_every_entry_declares_its_memory(demo_model) -> None:
    """The memory fields make_explainer plans with: a positive factor per row, and a chunk
    keyword that the built method's ``attribute`` accepts (directly or passed through)."""
    import inspect

    for name, entry in EXPLAINERS.items():
        assert entry.memory_factor > 0 and entry.parameter_copies >= 0, name
        assert entry.chunk_keyword in (None, "internal_batch_size", "perturbations_per_eval")
        if entry.chunk_keyword is not None:
            method = build_method(name, demo_model)
            wrapped = getattr(method, "attribution_method", method)  # selective: passed on
            accepted = {
                *inspect.signature(method.attribute).parameters,
                *inspect.signature(wrapped.attribute).parameters,
            }
            assert entry.chunk_keyword in accepted, name
    assert not EXPLAINERS["temporal_mask"].per_clip  # its stopping rule couples the clips
    explain = make_explainer("saliency", demo_model, None, "64MiB")  # positional max_memory
    assert explain(torch.rand(1, 3, 8, 32, 32), torch.tensor([1])).shape == (1, 3, 8, 32, 32)


def test_unknown_method_and_predict(demo_model) -> None:
    with pytest.raises(ValueError, match="deep_taylor_motion"):
        make_explainer("deep_taylor_splits", demo_model)
    label, prob = predict(demo_model, torch.rand(3, 3, 8, 32, 32))
    assert label.shape == prob.shape == (3,) and bool(((prob > 0) & (prob <= 1)).all())


def test_readme_lists_every_method() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    missing = [name for name in EXPLAINERS if f"`{name}`" not in readme]
    assert not missing, f"README's --method list lacks {missing}"

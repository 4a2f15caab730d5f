"""Memory budgets: parsing, the activation probe, chunk sizes, and make_explainer's chunking,
which must not change any method's relevance."""

from __future__ import annotations

import math
import os
import warnings

import pytest
import torch
from torch import nn

from captum_video import _memory
from captum_video._memory import (
    CPU_CAP,
    activation_bytes,
    chunk_size,
    default_budget,
    format_bytes,
    parse_memory,
)
from captum_video.explainers import EXPLAINERS, build_method, make_explainer, plan_chunks
from captum_video.models import C3DSmall
from tests.helpers import assert_model_unchanged, model_snapshot


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2GiB", 2 * 2**30),
        ("512MB", 512 * 10**6),
        ("1.5 GB", 1_500_000_000),
        ("64kib", 64 * 1024),
        (" 100 B ", 100),
        ("4096", 4096),
        (4096, 4096),
        (2e9, 2_000_000_000),
        (None, None),
    ],
)
def test_parse_memory(value, expected) -> None:  # noqa: ANN001
    assert parse_memory(value) == expected


@pytest.mark.parametrize("value", ["2 parsecs", "GiB", "", "-1GiB", "1e9", "2GiBs"])
def test_parse_memory_rejects_unreadable_sizes(value) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=r"max_memory must be .*'2GiB'") as err:
        parse_memory(value)
    assert repr(value) in str(err.value)


@pytest.mark.parametrize("value", [0, -5, "0MB", 0.5, math.inf, math.nan])
def test_parse_memory_rejects_sizes_that_are_not_positive(value) -> None:  # noqa: ANN001
    with pytest.raises(
        ValueError, match=r"max_memory must be a (positive|finite) memory size such as '2GiB'"
    ):
        parse_memory(value)


def test_parse_memory_types_and_the_argument_name() -> None:
    for value in (True, [1], b"1GiB"):
        with pytest.raises(TypeError, match="max_memory must be a memory size such as '2GiB'"):
            parse_memory(value)
    with pytest.raises(ValueError, match="--budget must be"):
        parse_memory("lots", name="--budget")
    with pytest.raises(ValueError, match="max_memory"):
        make_explainer("saliency", C3DSmall(), max_memory="lots")


def test_default_budget_on_the_cpu(monkeypatch) -> None:  # noqa: ANN001
    # This machine's physical memory, read independently: a quarter of it, capped.
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert default_budget("cpu") == min(CPU_CAP, physical // 4)
    assert default_budget() == default_budget(torch.device("cpu"))
    monkeypatch.setattr(_memory, "_physical_memory", lambda: 2 * 2**30)
    assert default_budget("cpu") == 2**29  # a quarter, under the cap
    monkeypatch.setattr(_memory, "_physical_memory", lambda: 64 * 2**30)
    assert default_budget("cpu") == CPU_CAP


def test_default_budget_on_cuda_is_half_of_free_plus_cached(monkeypatch) -> None:  # noqa: ANN001
    """The rule itself, with the driver's and the allocator's answers replaced (no GPU needed)."""
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index=None: (6 * 2**30, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda index=None: 3 * 2**30)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda index=None: 1 * 2**30)
    assert default_budget(torch.device("cuda", 0)) == 4 * 2**30  # half of 6 + (3 - 1) GiB
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index=None: (0, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda index=None: 0)
    assert default_budget(torch.device("cuda", 0)) == 1  # never zero


@pytest.mark.gpu
def test_default_budget_on_cuda() -> None:
    free, _ = torch.cuda.mem_get_info()
    cached = torch.cuda.memory_reserved() - torch.cuda.memory_allocated()
    budget = default_budget("cuda")
    # The free figure moves between the two readings by what others allocate meanwhile.
    assert abs(budget - (free + cached) / 2) <= 64 * 2**20


def test_chunk_size() -> None:
    assert chunk_size(100, 1) == 1  # not even one fits: one at a time
    assert chunk_size(100, 1000) == 10
    assert chunk_size(100, 1099) == 10
    assert chunk_size(100, 10**12, total=7) == 7
    assert chunk_size(100, 10**12) == 10**10
    assert chunk_size(0, 10, total=3) == 3
    assert format_bytes(3 * 2**30) == "3.0 GiB" and format_bytes(10) == "10 B"


def _leaf_output_bytes(t: int, h: int, w: int) -> int:
    """C3DSmall's leaf outputs for one clip, from its documented layout (float32)."""
    stem = 8 * t * h * w * 2  # conv, relu
    l1 = 8 * t * (h // 2) * (w // 2) + 16 * t * (h // 2) * (w // 2) * 2  # pool, conv, relu
    l2 = 16 * (t // 2) * (h // 4) * (w // 4) + 32 * (t // 2) * (h // 4) * (w // 4) * 2
    l3 = 32 * (t // 4) * (h // 8) * (w // 8) + 32 * (t // 4) * (h // 8) * (w // 8) * 2
    head = 32 + 32 + 4  # avgpool, flatten, fc
    return 4 * (stem + l1 + l2 + l3 + head)


def test_activation_bytes_sums_leaf_outputs_once_per_shape() -> None:
    model = C3DSmall()
    calls = []
    model.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape))
    model.train()
    before = model_snapshot(model)
    clips = torch.rand(3, 3, 16, 32, 32)
    assert activation_bytes(model, clips) == _leaf_output_bytes(16, 32, 32)
    assert calls == [torch.Size([1, 3, 16, 32, 32])]  # one probe of one clip
    assert activation_bytes(model, torch.rand(5, 3, 16, 32, 32)) == _leaf_output_bytes(16, 32, 32)
    assert len(calls) == 1  # cached per model and clip shape
    assert activation_bytes(model, torch.rand(1, 3, 8, 32, 32)) == _leaf_output_bytes(8, 32, 32)
    assert len(calls) == 2
    assert_model_unchanged(before, model)  # modes restored, no hooks of ours left
    assert model.training


def test_activation_probe_leaves_batch_norm_alone() -> None:
    model = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.BatchNorm3d(4), nn.Flatten(1)).train()
    before = model_snapshot(model)
    assert activation_bytes(model, torch.rand(1, 3, 4, 8, 8)) == 3 * 4 * 4 * 4 * 8 * 8
    assert_model_unchanged(before, model)  # running statistics did not move


def test_activation_probe_removes_its_hooks_on_error() -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv3d(3, 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.conv(x)
            raise RuntimeError("boom")

    model = Broken()
    before = model_snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        activation_bytes(model, torch.rand(1, 3, 4, 8, 8))
    assert_model_unchanged(before, model)


def test_plan_chunks_tiny_and_large_budgets(demo_model) -> None:
    clips = torch.rand(4, 3, 16, 32, 32)
    for name, entry in EXPLAINERS.items():
        per_call, opts, note = plan_chunks(entry, demo_model, clips, 1, entry.kwargs)
        assert per_call == (1 if entry.per_clip else 4), name
        if entry.chunk_keyword is not None:
            assert opts[entry.chunk_keyword] == 1, name
        assert note, name  # says the budget cannot be kept
        per_call, opts, note = plan_chunks(entry, demo_model, clips, 2**40, entry.kwargs)
        assert per_call == 4 and note == "", name
        if entry.chunk_keyword is not None:
            cap = entry.kwargs.get(entry.chunk_keyword)
            assert opts[entry.chunk_keyword] == (
                cap if cap is not None else opts[entry.chunk_keyword]
            )
    split = EXPLAINERS["deep_taylor_motion"]
    assert plan_chunks(split, demo_model, clips, 2**40, {})[1]["internal_batch_size"] >= 4 * 16


def test_plan_chunks_keeps_the_callers_chunk_size(demo_model) -> None:
    clips = torch.rand(4, 3, 16, 32, 32)
    volume = EXPLAINERS["occlusion"].memory_factor * (
        activation_bytes(demo_model, clips) + clips[0].nelement() * 4
    )
    entry = EXPLAINERS["occlusion"]
    options = {**entry.kwargs, "perturbations_per_eval": 3}
    # 6 rows fit: the caller's 3 perturbations per eval leave room for 2 clips per call.
    per_call, opts, _ = plan_chunks(
        entry, demo_model, clips, int(6 * volume), options, {"perturbations_per_eval": 3}
    )
    assert (per_call, opts["perturbations_per_eval"]) == (2, 3)
    per_call, opts, _ = plan_chunks(entry, demo_model, clips, int(6 * volume), entry.kwargs)
    assert (per_call, opts["perturbations_per_eval"]) == (4, 1)
    ig = EXPLAINERS["integrated_gradients"]
    per_call, opts, _ = plan_chunks(ig, demo_model, clips, 2**40, ig.kwargs)
    assert opts["internal_batch_size"] == 16 and per_call == 4  # the entry's cap
    per_call, opts, _ = plan_chunks(
        ig,
        demo_model,
        clips,
        2**40,
        {**ig.kwargs, "internal_batch_size": 2},
        {"internal_batch_size": 2},
    )
    assert opts["internal_batch_size"] == 2


@pytest.mark.parametrize("name", sorted(EXPLAINERS))
def test_a_budget_does_not_change_the_relevance(name, demo_model) -> None:  # noqa: ANN001
    """Every method with every chunk size 1 (a 1-byte budget) against one plain call, equal up
    to the rounding of batched kernels (8 frames: the demo model's last block keeps 2 time
    steps; with 1 the tubes are constant in time and selection thresholds rounding noise)."""
    clips = torch.rand(2, 3, 8, 16, 16)
    target = torch.tensor([1, 3])
    entry = EXPLAINERS[name]
    before = model_snapshot(demo_model)
    expected = entry.output(
        build_method(name, demo_model).attribute(clips, target=target, **entry.kwargs), clips
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiny = make_explainer(name, demo_model, max_memory=1)(clips, target)
    assert any("memory budget" in str(w.message) for w in caught), name
    default = make_explainer(name, demo_model)(clips, target)
    assert_model_unchanged(before, demo_model)
    assert tiny.shape == expected.shape == default.shape
    # Occlusion drops are differences of logits: their rounding is the logits', ~1e-6.
    atol = 1e-5 * float(expected.abs().max())
    torch.testing.assert_close(tiny, expected, rtol=1e-5, atol=atol)
    torch.testing.assert_close(default, expected, rtol=1e-5, atol=atol)


def test_the_budget_warning_comes_once_per_explainer(demo_model) -> None:
    clips = torch.rand(2, 3, 8, 16, 16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        explain = make_explainer("saliency", demo_model, max_memory="1KiB")
        explain(clips, torch.tensor([0, 1]))
        explain(clips, torch.tensor([0, 1]))
    messages = [str(w.message) for w in caught if "memory budget" in str(w.message)]
    assert len(messages) == 1, messages
    assert "saliency: one clip needs about" in messages[0] and "1.0 KiB" in messages[0]


def test_clips_are_split_into_calls(demo_model) -> None:
    calls = []
    explain = make_explainer("saliency", demo_model, max_memory=1)
    method_attribute = type(build_method("saliency", demo_model)).attribute

    def spy(self, inputs, **kwargs):  # noqa: ANN001, ANN202
        calls.append((inputs.shape[0], kwargs["target"].tolist()))
        return method_attribute(self, inputs, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(build_method("saliency", demo_model)), "attribute", spy)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            explain(torch.rand(3, 3, 4, 16, 16), torch.tensor([0, 1, 2]))
        assert calls == [(1, [0]), (1, [1]), (1, [2])]
        calls.clear()
        make_explainer("saliency", demo_model)(torch.rand(3, 3, 4, 16, 16), torch.tensor([0, 1, 2]))
        assert calls == [(3, [0, 1, 2])]


def test_benchmark_smoke(tmp_path) -> None:  # noqa: ANN001
    """benchmarks.memory at a tiny size: the structure of what it reports, no thresholds."""
    from benchmarks import memory

    out = tmp_path / "memory.json"
    payload = memory.main(
        [
            "--quick",
            "--frames",
            "4",
            "8",
            "--clips",
            "1",
            "--methods",
            "saliency",
            "deep_taylor_motion",
            "--split-frames",
            "8",
            "--dataset-frames",
            "4",
            "--dataset-clips",
            "2",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert out.exists() and payload["benchmark"] == "memory"
    for t in ("4", "8"):
        for name in ("saliency", "deep_taylor_motion"):
            runs = payload["methods"][t][name]
            assert set(runs) == {"default", "budget", "unbounded"}
            assert all(run["peak_mib"] > 0 for run in runs.values())
    split = payload["split_256"]
    for key in ("deep_taylor_one_pass", "split_default"):
        assert split[key]["peak_mib"] > 0
    assert "split_internal_batch_size_1" not in split  # --full only
    assert payload["explain_dataset"]["peak_mib"] > 0
    assert payload["growth"]["frames"] == [4, 8]

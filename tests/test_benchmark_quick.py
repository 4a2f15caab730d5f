"""The quality benchmark at a small size: it runs every method that exists, and the properties
that must hold on ground truth do hold (the random map loses where a method should win)."""

from __future__ import annotations

import json

import pytest

from benchmarks import quality
from benchmarks.__main__ import main as run_all

SMALL = quality.Settings(
    num_clips=4,
    n_steps=4,
    sanity_clips=1,
    ig_steps=4,
    temporal_mask_iters=5,
    skip_sanity={"TemporalMask (freeze)"},
)
#: The methods run in the test (the cheap ones; the others are built but not run, below).
RUN = [
    "GradCAMTube (layer3, clip)",
    "SaliencyTube (layer3)",
    "DeepTaylor3D",
    "Selective(GradCAMTube)",
    "TemporalOcclusion (w=4, freeze)",
    "Captum Saliency",
    "random map",
]


@pytest.fixture(scope="module")
def motion_results():
    return quality.run_quality(["motion"], SMALL, RUN, log=lambda line: None)


def test_every_method_runs_without_error(motion_results):
    methods = motion_results["variants"]["motion"]["methods"]
    assert methods["ground-truth mask (oracle)"]["relevance_mass"] == pytest.approx(1.0)
    assert methods["ground-truth mask (oracle)"]["relevance_rank"] == pytest.approx(1.0)
    for name in RUN:
        entry = methods[name]
        assert "error" not in entry, f"{name}: {entry.get('error')}"
        assert entry["available"], entry
        for metric in ("relevance_mass", "pointing_game", "deletion_fade", "insertion_blur"):
            assert 0.0 <= entry[metric] <= 1.0, (name, metric, entry[metric])


def test_the_other_methods_build_on_the_demo_model(demo_model):
    # The expensive methods are not run here; building them proves their names and imports.
    for name, (build, _) in quality.method_builders(SMALL).items():
        assert callable(build(demo_model)), name


def test_random_map_loses_on_localisation_and_sanity(motion_results):
    methods = motion_results["variants"]["motion"]["methods"]
    rand = methods["random map"]
    # A fixed random map ignores the model: the randomisation check must flag it.
    assert rand["sanity_fc"] == pytest.approx(1.0) and rand["sanity_all"] == pytest.approx(1.0)
    cam = methods["GradCAMTube (layer3, clip)"]
    assert cam["relevance_mass"] > rand["relevance_mass"]
    assert cam["relevance_rank"] > rand["relevance_rank"]
    assert cam["insertion_blur"] > rand["insertion_blur"]
    assert cam["sanity_all"] < 0.9


def test_gradient_and_relevance_methods_beat_the_random_map(motion_results):
    methods = motion_results["variants"]["motion"]["methods"]
    rand = methods["random map"]
    saliency = methods["Captum Saliency"]
    assert saliency["relevance_mass"] > rand["relevance_mass"]
    assert saliency["pointing_game"] > rand["pointing_game"]
    assert saliency["insertion_blur"] > rand["insertion_blur"]
    lrp = methods["DeepTaylor3D"]
    assert lrp["relevance_mass"] > rand["relevance_mass"]
    assert lrp["pointing_game"] > rand["pointing_game"]


def test_markdown_lists_every_method_and_marks_losses(motion_results):
    text = quality.to_markdown(motion_results, "python -m benchmarks.quality --quick")
    for name in [*RUN, "ground-truth mask (oracle)"]:
        assert f"| {name} |" in text
    assert "0.280" in text and "0.204" in text  # the literature's fade-deletion caveat
    assert "mass ↑" in text and "del fade ↓" in text


def test_runner_records_missing_modules_and_runs_quality(tmp_path, monkeypatch):
    monkeypatch.setattr(quality, "QUICK", SMALL)
    calls = []
    real = quality.run_quality

    def small_run(variants, settings, methods=None, log=print):
        calls.append(list(variants))
        return real(["motion"], settings, ["random map"], log=lambda line: None)

    monkeypatch.setattr(quality, "run_quality", small_run)
    status = run_all(["--quick", "--out", str(tmp_path), "--only", "no_such_bench", "quality"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert status == 0
    assert summary["benchmarks"]["no_such_bench"]["status"] == "missing"
    assert summary["benchmarks"]["quality"]["status"] == "ok"
    assert calls and (tmp_path / "quality.md").is_file() and (tmp_path / "quality.json").is_file()


def test_lrp_benchmark_times_the_split_batched_and_sequential(demo_model):
    import torch

    from benchmarks.lrp import _split_costs
    from captum_video.attr import DeepTaylor3D

    out = _split_costs(DeepTaylor3D(demo_model), torch.rand(1, 3, 4, 16, 16), 0, "cpu", 1)
    assert out["passes"] == 5
    for name in ("one_pass", "batched", "sequential"):
        assert out[name]["median_s"] > 0 and out[name]["peak_mib"] > 0, out[name]
    assert out["one_pass"]["x_one_pass"] == 1.0 and out["batched_speedup"] > 0

"""The benchmarks at small sizes.

The quality benchmark runs every method that exists, and the properties that must hold on
ground truth do hold (the random map loses where a method should win). The speed benchmarks
run each contender through the interleaved timer at tiny sizes; only the structure of what
they report is checked (keys present, ratios finite and positive), never a time.
"""

from __future__ import annotations

import importlib
import json
import math

import pytest
import torch

from benchmarks import batch, lrp, quality, selective, tcav, temporal, tubes, visualization
from benchmarks.__main__ import SPEED_BENCHMARKS
from benchmarks.__main__ import main as run_all
from benchmarks._common import interleaved_times, ratio

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


def test_runner_records_failures_and_runs_quality(tmp_path, monkeypatch):
    monkeypatch.setattr(quality, "QUICK", SMALL)
    calls = []
    real = quality.run_quality

    def small_run(variants, settings, methods=None, log=print):
        calls.append(list(variants))
        return real(["motion"], settings, ["random map"], log=lambda line: None)

    monkeypatch.setattr(quality, "run_quality", small_run)
    status = run_all(["--quick", "--out", str(tmp_path), "--only", "no_such_bench", "quality"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert status == 1  # a benchmark that cannot be imported is a failure
    assert summary["benchmarks"]["no_such_bench"]["status"] == "failed"
    assert "import" in summary["benchmarks"]["no_such_bench"]["error"]
    assert summary["benchmarks"]["quality"]["status"] == "ok"
    assert calls and (tmp_path / "quality.md").is_file() and (tmp_path / "quality.json").is_file()


# -- the speed benchmarks ----------------------------------------------------------------------

CPU = torch.device("cpu")


def assert_ratio(stats: dict) -> None:
    """A round-by-round ratio of ``benchmarks._common.ratio``: finite, positive, ordered."""
    assert set(stats) == {"median", "min", "max"}, stats
    for value in stats.values():
        assert math.isfinite(value) and value > 0, stats
    assert stats["min"] <= stats["median"] <= stats["max"], stats


def assert_timing(entry: dict, repeats: int) -> None:
    """One contender's entry of ``benchmarks._common.interleaved_times``."""
    for key in ("median_s", "min_s", "median_cpu_s", "repeats", "times_s", "cpu_times_s"):
        assert key in entry, (key, entry)
    assert entry["repeats"] == repeats
    assert len(entry["times_s"]) == len(entry["cpu_times_s"]) == repeats
    assert all(t > 0 for t in entry["times_s"]) and entry["min_s"] <= entry["median_s"]


def test_every_speed_benchmark_imports_and_has_a_main():
    for name in SPEED_BENCHMARKS:
        module = importlib.import_module(f"benchmarks.{name}")
        assert callable(module.main), name


def test_interleaved_timer_runs_every_contender_once_per_round_after_a_warm_up():
    calls: list[str] = []

    def work(name: str) -> int:
        calls.append(name)
        return sum(range(20_000))  # enough CPU time for a CPU-time ratio

    fns = {name: (lambda name=name: work(name)) for name in ("a", "b", "c")}
    times = interleaved_times(fns, "cpu", repeats=3)
    # Warm-up round, then 3 recorded rounds; the order is reversed every other round.
    assert calls == ["c", "b", "a", "a", "b", "c", "c", "b", "a", "a", "b", "c"]
    for entry in times.values():
        assert_timing(entry, 3)
    assert_ratio(ratio(times, "a", "b"))
    assert_ratio(ratio(times, "a", "b", cpu=True))
    assert ratio(times, "a", "a") == {"median": 1.0, "min": 1.0, "max": 1.0}
    with pytest.raises(ValueError, match="repeats"):
        interleaved_times(fns, "cpu", repeats=0)


def test_selective_benchmark_times_the_whole_wrapped_call():
    out = selective.run(4, 16, repeats=2, device=CPU, memory=False)
    assert set(out["timings"]) == {"tube", "selective_tube", "tube_control", "selection"}
    for entry in out["timings"].values():
        assert_timing(entry, 2)
    for kind in ("whole_call", "control", "selection"):
        assert_ratio(out[f"{kind}_over_tube"])
    for kind in ("whole_call", "control"):
        assert_ratio(out[f"{kind}_over_tube_cpu"])
    json.dumps(out)


def test_tubes_benchmark_names_and_ratios():
    out = tubes.bench_case("r3d_18", 4, 16, batch=1, device=CPU, repeats=1, memory=False)
    contenders = {
        "forward",
        "forward_backward_to_layer",
        "forward_backward_to_input",
        "captum",
        "tube_clip",
        "tube_per_step",
    }
    assert contenders <= set(out["times"])
    assert set(out["ratios"]) == {
        "vs_forward_backward_to_layer",
        "vs_forward_backward_to_layer_cpu",
        "vs_captum",
        "vs_captum_cpu",
    }
    for by_contender in out["ratios"].values():
        assert contenders <= set(by_contender)
        for stats in by_contender.values():
            assert_ratio(stats)
    assert out["ratios"]["vs_captum"]["captum"]["median"] == 1.0


def test_lrp_benchmark_times_every_method_against_forward_backward_to_input():
    out = lrp.run(2, 16, repeats=1, device=CPU, skip=[], split=False)
    methods = ("deep_taylor_3d", "zennit", "captum_lrp_rules_by_hand")
    for name in ("forward_backward_to_input", *methods):
        assert_timing(out[name], 1)
        assert_ratio(out[name]["over_forward_backward_to_input"])
    for name in methods:
        assert math.isfinite(out[name]["relevance_sum"]) and out[name]["relative_delta"] >= 0
    # DeepTaylor3D conserves the logit (the point of its canonizers).
    assert out["deep_taylor_3d"]["relative_delta"] < 1e-3


def test_lrp_benchmark_times_the_split_batched_and_sequential(demo_model):
    from captum_video.attr import DeepTaylor3D

    out = lrp._split_costs(DeepTaylor3D(demo_model), torch.rand(1, 3, 4, 16, 16), 0, "cpu", 1)
    assert out["passes"] == 5
    for name in ("one_pass", "batched", "sequential"):
        assert out[name]["median_s"] > 0 and out[name]["peak_mib"] > 0, out[name]
        assert_ratio(out[name]["x_one_pass"])
    assert out["one_pass"]["x_one_pass"]["median"] == 1.0
    assert_ratio(out["batched_speedup"])


def test_tcav_benchmark_on_the_demo_model(demo_model, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the benchmark reports what appears in the working directory
    config = {"frames": 8, "size": 16, "n_clips": 4, "n_random": 2, "n_inputs": 2, "batch": 2}
    out = tcav.run(config, ["layer3"], repeats=1, memory=False, model=demo_model)
    assert set(out["results"]) == {"captum_tcav", "captum_tcav_torch_classifier", "video_tcav"}
    for entry in out["results"].values():
        assert_timing(entry, 1)
        assert_ratio(entry["speedup_vs_captum"])
        assert entry["new_entries_in_cwd"] == []
    assert out["results"]["video_tcav"]["files_written_per_run"] == 0
    assert out["results"]["captum_tcav"]["files_written_per_run"] > 0
    assert out["max_score_diff_video_vs_captum_same_classifier"] == 0.0


def test_visualization_benchmark_ratios():
    out = visualization.run(4, 32, repeats=1)
    assert set(out["gradcamtube"]) == set(out["render_mp4_faster_than_gradcamtube"])
    assert set(out["render"]) == {"overlay_only", "mp4", "webm", "gif"}
    assert len(out["ratios"]) == 3 * len(out["gradcamtube"])
    for stats in out["ratios"].values():
        assert_ratio(stats)


def test_temporal_benchmark_at_a_tiny_size(monkeypatch, tmp_path):
    tiny = {"frames": 4, "size": 16, "window": 2, "stride": 1, "ppe": 3, "repeats": 1}
    monkeypatch.setitem(temporal.SIZES, "quick", tiny)
    out = temporal.main(["--quick", "--no-memory", "--out", str(tmp_path / "temporal.json")])
    assert json.loads((tmp_path / "temporal.json").read_text())["windows"] == out["windows"] == 3
    assert set(out["timings"]) == {"floor", "captum_occlusion", "temporal_occlusion"}
    for key in ("captum_occlusion_over_floor", "temporal_occlusion_over_floor"):
        assert_ratio(out["ratios"][key])
    assert out["max_abs_diff_vs_captum"] < 1e-4


def test_batch_benchmark_speedups():
    out = batch.run(num_clips=2, batch_size=2, method="gradcam_tube", repeats=1)
    assert set(out["timings"]) == {
        "loop",
        "loop_with_metrics",
        "explain_dataset",
        "explain_dataset_no_metrics",
    }
    for key in (
        "speedup_vs_loop",
        "speedup_vs_loop_with_metrics",
        "speedup_no_metrics_vs_loop",
        "cpu_time_speedup_vs_loop",
        "cpu_time_speedup_no_metrics_vs_loop",
    ):
        assert_ratio(out[key])

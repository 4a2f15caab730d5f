"""Throughput of explain_dataset against a plain Python loop over the same clips (issue 11).

On the bundled demo model (C3DSmall, MovingShapes clips 3 x 16 x 32 x 32) and the same clips,
rendered once beforehand (a ``TensorDataset`` of ``(clip, label, mask)``) so that neither side
pays for making synthetic videos:

- ``loop``: for each clip, predict its class and call the method on that one clip, the way a
  script without batching does it (nothing is written);
- ``loop_with_metrics``: the same loop also computing what explain_dataset computes per clip
  (temporal sensitivity with freeze and shuffle, spatial bias via selective relevance,
  relevance mass);
- ``explain_dataset``: the full pipeline in batches: attributions + all metrics + compressed
  shards on disk (report, TensorBoard and clip export off, as they are a fixed cost);
- ``explain_dataset_no_metrics``: the same without the metrics, attributions and shards only.

The figure of merit is ``speedup_vs_loop`` = time of the loop / time of explain_dataset on
the same clips (target >= 2 on a CPU); ``speedup_vs_loop_with_metrics`` compares equal work.
Each configuration is timed as a whole call, all four together by
:func:`~benchmarks._common.interleaved_times` (alternated round by round, so load changes of a
shared machine hit all alike); speedups are taken round by round (median, min and max over
the rounds), and ``cpu_time_*`` speedups use the process's CPU time, which other processes on
a shared machine disturb far less than wall time. Torch runs on one thread by default
(``--threads``) for the same reason.

Run ``python -m benchmarks.batch --quick`` (32 clips, batches of 16, three rounds; a minute or
two on a 2-core CPU) or ``--full`` (256 clips, batches of 32) with ``--out FILE.json``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import TensorDataset

from benchmarks._common import emit, interleaved_times, ratio
from captum_video.attr import selective_relevance
from captum_video.datasets import MovingShapes
from captum_video.explainers import make_explainer, predict
from captum_video.metrics import relevance_mass, spatial_bias, temporal_sensitivity
from captum_video.models import load_demo_model
from captum_video.pipeline import explain_dataset


def _loop(model: torch.nn.Module, data: TensorDataset, method: str, metrics: bool) -> None:
    explain = make_explainer(method, model)
    for i in range(len(data)):
        clip, _, mask = data[i]
        x = clip[None]
        cls, _ = predict(model, x)
        relevance = explain(x, cls)
        if metrics:
            temporal_sensitivity(
                model, x, cls, ops=("freeze", "shuffle"), generator=torch.Generator().manual_seed(i)
            )
            spatial_bias(relevance, selective_relevance(relevance, sigma=3.0)[0])
            relevance_mass(relevance, mask[None])


def run(num_clips: int, batch_size: int, method: str, repeats: int) -> dict[str, Any]:
    """Time the four configurations on ``num_clips`` clips; returns the results dict."""
    model = load_demo_model("motion")
    scratch = Path(tempfile.mkdtemp(prefix="captum-video-bench-batch-"))
    quiet = {"progress": False, "highlights": 0, "tensorboard": False, "report": False}
    data = TensorDataset(*MovingShapes("motion", num_samples=num_clips, seed=123).tensors())

    def dataset_run(metrics: bool) -> Callable[[], Any]:
        extra: dict[str, Any] = {} if metrics else {"temporal_ops": (), "selective_sigma": None}
        return lambda: explain_dataset(
            model,
            data,
            [method],
            scratch / ("m" if metrics else "n"),
            batch_size=batch_size,
            shard_size=batch_size,  # shards written while the next batch runs
            overwrite=True,  # every round computes everything again
            **quiet,
            **extra,
        )

    fns: dict[str, Callable[[], Any]] = {
        "loop": lambda: _loop(model, data, method, metrics=False),
        "loop_with_metrics": lambda: _loop(model, data, method, metrics=True),
        "explain_dataset": dataset_run(True),
        "explain_dataset_no_metrics": dataset_run(False),
    }
    try:
        times = interleaved_times(fns, "cpu", repeats)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for entry in times.values():
        entry["clips_per_s"] = num_clips / entry["median_s"]
        entry["clips_per_cpu_s"] = num_clips / max(entry["median_cpu_s"], 1e-9)
    return {
        "method": method,
        "num_clips": num_clips,
        "batch_size": batch_size,
        "clip_shape": [3, 16, 32, 32],
        "repeats": repeats,
        "timings": times,
        "speedup_vs_loop": ratio(times, "loop", "explain_dataset"),
        "speedup_vs_loop_with_metrics": ratio(times, "loop_with_metrics", "explain_dataset"),
        "speedup_no_metrics_vs_loop": ratio(times, "loop", "explain_dataset_no_metrics"),
        "cpu_time_speedup_vs_loop": ratio(times, "loop", "explain_dataset", cpu=True),
        "cpu_time_speedup_no_metrics_vs_loop": ratio(
            times, "loop", "explain_dataset_no_metrics", cpu=True
        ),
        "threads": torch.get_num_threads(),
        "target": "speedup_vs_loop median >= 2 (CPU)",
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; prints (and optionally writes) the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="32 clips, batches of 16 (default)")
    size.add_argument("--full", action="store_true", help="256 clips, batches of 32")
    parser.add_argument("--method", default="gradcam_tube")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1, the least noisy on a shared machine; 0 keeps "
        "torch's default)",
    )
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    num_clips, batch_size, repeats = (256, 32, 3) if args.full else (32, 16, 3)
    results = run(num_clips, batch_size, args.method, args.repeats or repeats)
    return emit("batch", results, args.out)


if __name__ == "__main__":
    main()

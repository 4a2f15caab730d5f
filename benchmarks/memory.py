"""Peak memory of every registered method against the clip length, with and without a budget.

The issue: the spatio-temporal split held the relevance of every motion-removed clip,
``(N, T, C, T, H, W)``, so its memory grew with ``T**2 x batch`` (8 GB for
``deep_taylor_motion`` in ``explain_dataset`` at batch 8, 64 frames; over 12 GiB for one
256-frame clip). Now every method's memory is bounded by a budget
(:func:`captum_video.explainers.make_explainer`'s ``max_memory``).

What is measured (peak tensor memory of one whole call above what was live before it,
:func:`benchmarks._common.peak_memory`; on a CPU rebuilt from the profiler's allocation events):

- ``methods``: for every method of :data:`captum_video.explainers.EXPLAINERS` on the demo
  model (``load_demo_model("motion")``, 32 x 32 frames, a batch of ``clips``) and every ``T``:
  ``default`` (``max_memory=None``: the device's default budget), ``budget``
  (``max_memory=--budget``) and ``unbounded`` (``max_memory="1TiB"``: one call, each entry's
  own chunk sizes, as ``make_explainer`` ran before budgets; skipped where the planner
  estimates it above ``--unbounded-cap``, recorded with that estimate).
- ``split_256``: ``SpatioTemporalSplit(DeepTaylor3D(model))`` on one clip of 256 frames with
  its defaults (and, with ``--full``, ``internal_batch_size=1``: 8 minutes on a 2-core CPU),
  beside one ``DeepTaylor3D`` pass on the same clip (target: under 1 GiB).
- ``explain_dataset``: the whole call ``explain_dataset(model, MovingShapes("motion",
  num_samples=8, num_frames=64, speed=(0.25, 0.375)), ["deep_taylor_motion"], out,
  batch_size=8)`` (target: under 1.5 GiB; the speed keeps the object inside 32 x 32 frames
  for 64 frames).
- ``factors`` (``--factors``): each method on one clip with every chunk size 1
  (``max_memory=1``), its peak divided by one activation volume
  (:func:`captum_video._memory.activation_bytes` plus the clip): how the entries'
  ``memory_factor`` were measured.

Run ``python -m benchmarks.memory --quick`` (T = 16, 64; minutes on a 2-core CPU) or
``--full`` (T = 16, 64, 256; long on a CPU: occlusion at 256 frames is ~1000 forwards per clip)
with ``--out FILE.json``; ``--methods`` and ``--frames`` narrow a run.
"""

from __future__ import annotations

import argparse
import functools
import math
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

from benchmarks._common import emit, peak_memory
from captum_video._memory import activation_bytes, parse_memory
from captum_video.explainers import EXPLAINERS, make_explainer, plan_chunks

SIZES: dict[str, dict[str, Any]] = {
    "quick": {"frames": [16, 64], "clips": 2},
    "full": {"frames": [16, 64, 256], "clips": 2},
}
UNBOUNDED = "1TiB"


def _measure(fn: Callable[[], Any], device: torch.device) -> dict[str, float]:
    tic = time.perf_counter()
    peak = peak_memory(fn, device)["peak_mib"]
    return {"peak_mib": round(peak, 2), "seconds": round(time.perf_counter() - tic, 2)}


def _unbounded_estimate_mib(name: str, model: torch.nn.Module, clips: torch.Tensor) -> float:
    """The planner's estimate of one unbounded pass: every row of the batch at once."""
    entry = EXPLAINERS[name]
    _, opts, _ = plan_chunks(entry, model, clips, parse_memory(UNBOUNDED), entry.kwargs)
    volume = activation_bytes(model, clips) + clips[:1].nelement() * clips.element_size()
    n, t = clips.shape[0], clips.shape[2]
    if entry.chunk_keyword == "perturbations_per_eval":
        rows = n * opts["perturbations_per_eval"]
    elif entry.chunk_keyword == "internal_batch_size":
        # IntegratedGradients: n_steps rows per clip; the split: T motion-removed clips.
        rows = min(opts["internal_batch_size"], n * opts.get("n_steps", t))
    else:
        rows = n
    return rows * entry.memory_factor * volume / 2**20


def methods_table(
    model: torch.nn.Module,
    frames: list[int],
    clips: int,
    budget: str,
    names: list[str],
    unbounded_cap_mib: float,
    device: torch.device,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Peak MiB of every method at every clip length, with the default, a set and no budget."""
    table: dict[str, Any] = {}
    for t in frames:
        torch.manual_seed(0)
        x = torch.rand(clips, 3, t, 32, 32, device=device)
        target = torch.arange(clips, device=device) % 4
        row: dict[str, Any] = {}
        for name in names:
            runs: dict[str, Any] = {}
            for label, limit in (("default", None), ("budget", budget), ("unbounded", UNBOUNDED)):
                if label == "unbounded":
                    estimate = _unbounded_estimate_mib(name, model, x)
                    if estimate > unbounded_cap_mib:
                        runs[label] = {"skipped": f"estimated {estimate:.0f} MiB"}
                        continue
                explain = make_explainer(name, model, max_memory=limit)
                runs[label] = _measure(functools.partial(explain, x, target), device)
            row[name] = runs
            log(f"T={t} {name}: {runs}")
        table[str(t)] = row
    return table


def split_256(
    model: torch.nn.Module, device: torch.device, frames: int = 256, single: bool = True
) -> dict[str, Any]:
    """The split on one long clip with its defaults (and with one static clip per call)."""
    from captum_video.attr import DeepTaylor3D, SpatioTemporalSplit

    torch.manual_seed(0)
    x = torch.rand(1, 3, frames, 32, 32, device=device)
    dt = DeepTaylor3D(model)
    split = SpatioTemporalSplit(dt)
    one_pass = _measure(lambda: dt.attribute(x, target=0), device)
    default = _measure(lambda: split.attribute(x, target=0), device)
    result = {
        "clip": [1, 3, frames, 32, 32],
        "deep_taylor_one_pass": one_pass,
        "split_default": default,
        "target": "split_default peak_mib < 1024",
    }
    if single:
        one = _measure(lambda: split.attribute(x, target=0, internal_batch_size=1), device)
        result["split_internal_batch_size_1"] = one
        result["split_1_over_one_pass"] = round(one["peak_mib"] / one_pass["peak_mib"], 3)
    return result


def dataset_run(
    model: torch.nn.Module, device: torch.device, frames: int = 64, num: int = 8
) -> dict[str, Any]:
    """The whole ``explain_dataset`` call of the issue. At 64 frames of 32 x 32 the object
    must move slower than MovingShapes' default 1-1.5 px/frame to stay in the frame: the
    speed range is scaled down to fit (0.25-0.375 px/frame at 64 frames)."""
    from captum_video.datasets import MovingShapes
    from captum_video.pipeline import explain_dataset

    # A 6 px object and 1 px margins: at most 24 px of travel, in steps of 1/8 px/frame.
    top = min(1.5, math.floor(8 * 24 / (frames - 1)) / 8)
    speed = (top / 1.5, top)
    data = MovingShapes("motion", num_samples=num, num_frames=frames, speed=speed)
    with tempfile.TemporaryDirectory() as out:
        result = _measure(
            lambda: explain_dataset(
                model, data, ["deep_taylor_motion"], out, batch_size=num, progress=False
            ),
            device,
        )
    return {
        "call": f'explain_dataset(model, MovingShapes("motion", num_samples={num}, '
        f'num_frames={frames}, speed={speed}), ["deep_taylor_motion"], out, batch_size={num})',
        **result,
        "target": "peak_mib < 1536",
    }


def factors(
    model: torch.nn.Module, frames: list[int], names: list[str], device: torch.device
) -> dict[str, Any]:
    """Each method's peak on one clip with every chunk size 1, in activation volumes."""
    table: dict[str, Any] = {}
    for t in frames:
        x = torch.rand(1, 3, t, 32, 32, device=device)
        volume = activation_bytes(model, x) + x.nelement() * x.element_size()
        row: dict[str, Any] = {"volume_mib": round(volume / 2**20, 3)}
        for name in names:
            explain = make_explainer(name, model, max_memory=1)
            one = torch.tensor([1], device=device)
            peak = peak_memory(functools.partial(explain, x, one), device)
            measured = peak["peak_mib"] * 2**20 / volume
            row[name] = {
                "peak_mib": round(peak["peak_mib"], 2),
                "measured": round(measured, 2),
                "memory_factor": EXPLAINERS[name].memory_factor,
            }
        table[str(t)] = row
    return table


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print (and optionally write) its JSON.

    Args:
        argv (list of str, optional): command-line arguments; ``sys.argv`` when None.

    Returns:
        dict: the JSON payload.

    Example::

        >>> main(["--quick", "--out", "results/memory.json"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="T = 16, 64 (default)")
    mode.add_argument("--full", action="store_true", help="T = 16, 64, 256")
    parser.add_argument("--out", default=None, help="write the JSON here too")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--frames", type=int, nargs="+", default=None, help="clip lengths")
    parser.add_argument("--clips", type=int, default=None, help="clips per batch")
    parser.add_argument("--methods", nargs="+", default=None, help="registry names")
    parser.add_argument("--budget", default="128MiB", help="the set budget (max_memory)")
    parser.add_argument(
        "--unbounded-cap",
        default="4GiB",
        help="skip an unbounded run whose estimated peak is above this",
    )
    parser.add_argument("--no-methods", action="store_true", help="skip the per-method table")
    parser.add_argument("--no-split", action="store_true", help="skip split_256")
    parser.add_argument("--no-dataset", action="store_true", help="skip explain_dataset")
    parser.add_argument("--split-frames", type=int, default=256, help="frames of split_256")
    parser.add_argument("--dataset-frames", type=int, default=64, help="frames of the dataset")
    parser.add_argument("--dataset-clips", type=int, default=8, help="clips (and batch size)")
    parser.add_argument("--factors", action="store_true", help="measure memory factors")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    cfg = dict(SIZES["full" if args.full else "quick"])
    frames = args.frames or cfg["frames"]
    clips = args.clips or cfg["clips"]
    names = args.methods or sorted(EXPLAINERS)
    unknown = sorted(set(names) - set(EXPLAINERS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {sorted(EXPLAINERS)}")
    cap = parse_memory(args.unbounded_cap, name="--unbounded-cap")
    assert cap is not None
    device = torch.device(args.device)
    from captum_video.models import load_demo_model

    model = load_demo_model("motion", device=device)

    def log(line: str) -> None:
        if not args.quiet:
            print(line, flush=True)

    results: dict[str, Any] = {
        "mode": "full" if args.full else "quick",
        "model": "demo C3DSmall (motion), 32 x 32 frames",
        "frames": frames,
        "clips": clips,
        "budget": args.budget,
        "unbounded": UNBOUNDED,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not args.no_split:
            results["split_256"] = split_256(model, device, args.split_frames, args.full)
            log(f"split_256: {results['split_256']}")
        if not args.no_dataset:
            results["explain_dataset"] = dataset_run(
                model, device, args.dataset_frames, args.dataset_clips
            )
            log(f"explain_dataset: {results['explain_dataset']}")
        if not args.no_methods:
            results["methods"] = methods_table(
                model, frames, clips, args.budget, names, cap / 2**20, device, log
            )
        if args.factors:
            results["factors"] = factors(model, frames, names, device)
    results["growth"] = _growth(results.get("methods", {}))
    return emit("memory", results, args.out)


def _growth(table: dict[str, Any]) -> dict[str, Any]:
    """Per method and run, peak at the longest clip over peak at the shortest, and the
    length ratio: memory linear in ``T`` grows like the lengths, ``T**2`` like their square."""
    if len(table) < 2:
        return {}
    lengths = sorted(table, key=int)
    short, long = lengths[0], lengths[-1]
    growth: dict[str, Any] = {"frames": [int(short), int(long)]}
    for name, runs in table[long].items():
        growth[name] = {
            label: round(run["peak_mib"] / max(table[short][name][label]["peak_mib"], 1e-9), 2)
            for label, run in runs.items()
            if "peak_mib" in run and "peak_mib" in table[short][name].get(label, {})
        }
    growth["length_ratio"] = int(long) / int(short)
    growth["length_ratio_squared"] = math.pow(int(long) / int(short), 2)
    return growth


if __name__ == "__main__":
    main()

"""Timing and memory helpers shared by the benchmarks.

Every benchmark compares methods against a baseline run *in the same process*, so the ratios
hold on any machine; absolute seconds are reported for context only.
"""

from __future__ import annotations

import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def sync(device: torch.device | str) -> None:
    """Wait for queued CUDA work so timings are honest."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_fn(
    fn: Callable[[], Any], device: torch.device | str = "cpu", repeats: int = 5, warmup: int = 1
) -> dict[str, float]:
    """Median and min wall time of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": repeats}


def interleaved_times(
    fns: dict[str, Callable[[], Any]], device: torch.device | str, repeats: int
) -> dict[str, dict[str, float]]:
    """Median and min seconds of each function over ``repeats`` rounds after one warm-up round.

    The functions run in turn within each round, in reversed order every other round, so a
    load change on a shared machine hits all of them alike and ratios between them stay fair.
    """
    times: dict[str, list[float]] = {key: [] for key in fns}
    for round_ in range(repeats + 1):
        order = list(fns.items()) if round_ % 2 else list(fns.items())[::-1]
        for key, fn in order:
            start = time.perf_counter()
            fn()
            sync(device)
            if round_ > 0:
                times[key].append(time.perf_counter() - start)
    return {
        key: {"median_s": statistics.median(t), "min_s": min(t), "repeats": repeats}
        for key, t in times.items()
    }


def peak_memory(fn: Callable[[], Any], device: torch.device | str = "cpu") -> dict[str, float]:
    """Peak tensor memory of one ``fn()`` call above what was live before it, in MiB.

    On CUDA this is the caching allocator's peak; on the CPU it is rebuilt from
    ``torch.profiler``'s allocation events (``tracemalloc`` does not see torch's allocator).
    """
    device = torch.device(device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        sync(device)
        return {"peak_mib": (torch.cuda.max_memory_allocated(device) - base) / 2**20}
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # Peak of live CPU tensor memory over the call, rebuilt from allocation events.
    events = sorted(
        (e for e in prof.events() if getattr(e, "self_cpu_memory_usage", 0) != 0),
        key=lambda e: e.time_range.start,
    )
    live = peak = 0
    for event in events:
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return {"peak_mib": peak / 2**20}


def environment() -> dict[str, Any]:
    """Where the numbers were measured."""
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }


def emit(name: str, results: dict[str, Any], out: str | Path | None = None) -> dict[str, Any]:
    """Print ``results`` as JSON (and write it to ``out`` when given)."""
    payload = {"benchmark": name, "environment": environment(), **results}
    text = json.dumps(payload, indent=2, default=float)
    print(text)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    return payload

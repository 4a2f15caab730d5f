"""Timing, memory and model helpers shared by the benchmarks.

Every benchmark times its contenders with :func:`interleaved_times`: all contenders of one
case in one call, in turn, round by round. Ratios (:func:`ratio`) are taken round by round
against a baseline measured in the same call, so a load change on a shared machine hits both
sides of each ratio alike and the ratios hold on any machine; absolute seconds are reported
for context only.
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
from torch import nn


def sync(device: torch.device | str) -> None:
    """Wait for queued CUDA work so timings are honest."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleaved_times(
    fns: dict[str, Callable[[], Any]], device: torch.device | str, repeats: int
) -> dict[str, dict[str, Any]]:
    """Wall and process CPU seconds of each whole ``fn()`` call over ``repeats`` rounds.

    One warm-up round (not recorded) comes first. Within each round the functions run in
    turn, in reversed order every other round, so a load change on a shared machine hits all
    of them alike and neither side of a ratio always runs first. The CPU time is the
    process's (all threads), which other processes on a shared machine disturb far less than
    the wall time; on CUDA it counts only the host's share of the work.

    Args:
        fns (dict): name -> zero-argument callable; each call is one timed run.
        device (torch.device or str): where the work runs (CUDA is synchronised per run).
        repeats (int): recorded rounds, at least 1.

    Returns:
        dict: per name, ``median_s``, ``min_s``, ``median_cpu_s``, ``repeats`` and the
        per-round lists ``times_s`` and ``cpu_times_s`` (in round order, for :func:`ratio`).

    Example::

        >>> t = interleaved_times({"a": lambda: sum(range(100)), "b": lambda: 0}, "cpu", 3)
        >>> len(t["a"]["times_s"]), t["b"]["repeats"]
        (3, 3)
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    wall: dict[str, list[float]] = {key: [] for key in fns}
    cpu: dict[str, list[float]] = {key: [] for key in fns}
    for round_ in range(repeats + 1):
        order = list(fns.items()) if round_ % 2 else list(fns.items())[::-1]
        for key, fn in order:
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            sync(device)
            if round_ > 0:
                wall[key].append(time.perf_counter() - start)
                cpu[key].append(time.process_time() - start_cpu)
    return {
        key: {
            "median_s": statistics.median(wall[key]),
            "min_s": min(wall[key]),
            "median_cpu_s": statistics.median(cpu[key]),
            "repeats": repeats,
            "times_s": wall[key],
            "cpu_times_s": cpu[key],
        }
        for key in fns
    }


def ratio(
    timings: dict[str, dict[str, Any]], key: str, baseline: str, cpu: bool = False
) -> dict[str, float]:
    """Round-by-round ratio ``key / baseline`` of one :func:`interleaved_times` result.

    Each round's ratio compares two runs made back to back under the same load; the median
    over rounds is the figure to quote, ``min`` and ``max`` its spread.

    Args:
        timings (dict): what :func:`interleaved_times` returned.
        key (str): the contender.
        baseline (str): the contender it is compared with.
        cpu (bool, optional): use process CPU times instead of wall times. Default: False

    Returns:
        dict: ``{"median": ..., "min": ..., "max": ...}``.

    Example::

        >>> t = {"a": {"times_s": [2.0, 4.0, 3.0]}, "b": {"times_s": [1.0, 2.0, 1.0]}}
        >>> ratio(t, "a", "b")
        {'median': 2.0, 'min': 2.0, 'max': 3.0}
    """
    field = "cpu_times_s" if cpu else "times_s"
    # A floor of 1 ns keeps a CPU-time ratio finite when a tiny call reads 0 CPU seconds.
    per_round = [
        a / max(b, 1e-9) for a, b in zip(timings[key][field], timings[baseline][field], strict=True)
    ]
    return {
        "median": statistics.median(per_round),
        "min": min(per_round),
        "max": max(per_round),
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


def video_model(name: str, num_classes: int = 400, device: torch.device | str = "cpu") -> nn.Module:
    """A torchvision video classifier (``"r3d_18"``, ``"r2plus1d_18"``, ...) in eval mode.

    Weights are random (seed torch first for repeatable ones): speed does not depend on them,
    and nothing can be downloaded where the benchmarks run.
    """
    from torchvision.models import video

    model: nn.Module = getattr(video, name)(weights=None, num_classes=num_classes)
    return model.eval().to(device)


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

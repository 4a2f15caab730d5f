"""Live streams: throughput, latency and the pipeline's own cost, and memory over a long source.

On a synthetic 30 fps source (a square moving over a textured background), windows of 16
frames at stride 8, for torchvision's ``r3d_18`` at 112 x 112 (random weights: speed does not
depend on them) and the bundled demo model (C3DSmall, 32 x 32), with ``gradcam_tube`` and
``selective_gradcam_tube``:

- **throughput** (``realtime=False``: every window explained, the file read as fast as the
  explainer goes). Four contenders on the same ``N`` windows, timed as whole calls by
  :func:`~benchmarks._common.interleaved_times` (round by round, so load changes of a shared
  machine hit all alike): ``inference`` (the model's forward pass on each window, the
  floor), ``method`` (prediction + the method on each window, what the stream's explainer
  does, with the clips already in memory; both in a worker thread, like the explainer),
  ``stream_no_outputs`` (the :class:`~captum_video.stream.StreamExplainer` run from the
  video file, writing nothing: decoding, ring buffer, threads) and ``stream`` (the same
  with every output: overlay rendering and H.264 encoding, a TensorBoard step per window,
  ``windows.jsonl`` and ``stream.json``). Reported: windows per second, ``method /
  inference`` and ``stream / inference`` (round-by-round ratios), the wall overheads
  ``stream / method - 1`` (target: under 5 %, since the pipeline overlaps the compute), and
  the pipeline's own work (its read, render, encode, TensorBoard and JSON stages, in
  seconds, measured inside the stream) as a share of its explain stage, before overlap.
- **real time** (``realtime=True``: the file played at 30 fps) per policy: explained windows
  per second, windows skipped, the adapted stride, latency p50 / p95 (last frame in to
  explanation out) and the same latencies divided by one window's plain inference time.
- **memory**: the demo model streamed from a generated source of two lengths (``--full``:
  1 and 10 minutes at 30 fps; ``--quick``: 20 and 60 seconds), every window explained, with
  the overlay video and TensorBoard on: the peak resident memory (RSS, sampled every 50 ms)
  of each run above its start, its growth from the shorter run to the longer one, and RSS
  samples along the longer run (target: no growth beyond the allocator's noise).

Torch runs on one thread (``--threads``), the stream's rendering and encoding overlapping it
on another core. Run ``python -m benchmarks.stream --quick`` (3 r3d_18 and 24 demo windows per
contender, two rounds, 12 s played live; about ten minutes on a loaded 2-core CPU) or
``--full`` (8 and 64 windows, three rounds, 30 s live, the 10-minute source), with
``--out FILE.json``.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._common import emit, interleaved_times, ratio, video_model
from captum_video.explainers import make_explainer
from captum_video.models import load_demo_model
from captum_video.registry import normalization_of
from captum_video.stream import StreamExplainer
from captum_video.visualization import VideoEncoder

FPS, CLIP, STRIDE = 30.0, 16, 8
METHODS = ("gradcam_tube", "selective_gradcam_tube")
PIPELINE_STAGES = ("read", "render", "encode", "tensorboard", "json")


def synthetic_frames(count: int, size: int) -> Iterator[tuple[float, np.ndarray]]:
    """``(time, frame)`` pairs at 30 fps: a square moving right over a fixed random texture."""
    texture = np.random.default_rng(0).integers(0, 90, (size, size, 3), dtype=np.uint8)
    side = max(4, size // 5)
    for t in range(count):
        frame = texture.copy()
        x = (t * max(1, size // 40)) % (size - side)
        frame[size // 3 : size // 3 + side, x : x + side] = (220, 50, 40)
        yield t / FPS, frame


def write_source(path: Path, frames: int, size: int) -> Path:
    """A 30 fps H.264 file of the synthetic source at twice the model's size (to be resized)."""
    with VideoEncoder(path, fps=FPS) as encoder:
        for _, frame in synthetic_frames(frames, 2 * size):
            encoder.write(frame)
    return path


def _models() -> dict[str, tuple[torch.nn.Module, int]]:
    return {"r3d_18": (video_model("r3d_18"), 112), "demo": (load_demo_model("motion"), 32)}


def _windows(size: int, count: int) -> list[torch.Tensor]:
    frames = [f for _, f in synthetic_frames(CLIP + STRIDE * (count - 1), size)]
    clips = []
    for w in range(count):
        stack = np.stack(frames[w * STRIDE : w * STRIDE + CLIP])
        clips.append(torch.from_numpy(stack).permute(3, 0, 1, 2)[None].float() / 255.0)
    return clips


def _prepare(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    from captum_video.io import normalize_video

    preset = normalization_of(model)
    if preset in (None, "none"):
        return lambda x: x
    return lambda x: normalize_video(x, preset)


def _in_thread(fn: Callable[[], Any]) -> Callable[[], None]:
    """``fn`` run in a fresh worker thread, as the stream's explainer runs: the baselines and
    the stream then compute in the same kind of thread."""

    def run() -> None:
        worker = threading.Thread(target=fn)
        worker.start()
        worker.join()

    return run


def throughput(
    model: torch.nn.Module, size: int, method: str, count: int, repeats: int, scratch: Path
) -> dict[str, Any]:
    """Inference vs method vs the whole stream on ``count`` windows from a file."""
    source = write_source(scratch / f"source_{size}.mp4", CLIP + STRIDE * (count - 1), size)
    clips = _windows(size, count)
    prepare = _prepare(model)
    explain = make_explainer(method, model)
    summaries: list[Any] = []

    def inference() -> None:
        with torch.no_grad():
            for clip in clips:
                model(prepare(clip))

    def method_only() -> None:
        for clip in clips:
            x = prepare(clip)
            with torch.no_grad():
                target = model(x).argmax(1)
            explain(x, target)

    def stream() -> None:
        out = scratch / "throughput"
        shutil.rmtree(out, ignore_errors=True)
        runner = StreamExplainer(model, method, out, stride=STRIDE, warmup=False)
        summaries.append(runner.explain(source, realtime=False))

    def stream_bare() -> None:
        runner = StreamExplainer(model, method, None, stride=STRIDE, warmup=False)
        runner.explain(source, realtime=False)

    contenders = {
        "inference": _in_thread(inference),
        "method": _in_thread(method_only),
        "stream_no_outputs": stream_bare,
        "stream": stream,
    }
    times = interleaved_times(contenders, "cpu", repeats)
    last = summaries[-1]
    assert last.windows_explained == count, last
    explain_s = [s.stage_s.get("explain", 0.0) for s in summaries[1:]]
    own_s = [sum(s.stage_s.get(k, 0.0) for k in PIPELINE_STAGES) for s in summaries[1:]]
    shares = [own / max(e, 1e-9) for own, e in zip(own_s, explain_s, strict=True)]
    wall_overhead = ratio(times, "stream", "method")
    bare_overhead = ratio(times, "stream_no_outputs", "method")
    return {
        "windows": count,
        "seconds": {k: times[k]["median_s"] for k in times},
        "windows_per_s": {k: count / times[k]["median_s"] for k in times},
        "method_over_inference": ratio(times, "method", "inference"),
        "stream_over_inference": ratio(times, "stream", "inference"),
        "stream_wall_overhead": {k: v - 1.0 for k, v in wall_overhead.items()},
        "stream_no_outputs_wall_overhead": {k: v - 1.0 for k, v in bare_overhead.items()},
        "pipeline_work_share_of_method": {
            "median": float(np.median(shares)),
            "min": min(shares),
            "max": max(shares),
        },
        "pipeline_stage_s": {k: last.stage_s.get(k, 0.0) for k in (*PIPELINE_STAGES, "explain")},
        "pipeline_work_under_5_percent": float(np.median(shares)) < 0.05,
        "timings": times,
    }


def realtime(
    model: torch.nn.Module,
    size: int,
    method: str,
    seconds: float,
    inference_s: float,
    scratch: Path,
) -> dict[str, Any]:
    """Play the source at 30 fps for ``seconds`` with each policy."""
    source = write_source(scratch / f"live_{size}.mp4", int(seconds * FPS), size)
    results = {}
    for policy in ("skip", "adapt"):
        out = scratch / f"live_{policy}"
        shutil.rmtree(out, ignore_errors=True)
        summary = StreamExplainer(model, method, out, stride=STRIDE, policy=policy).explain(
            source, realtime=True
        )
        latency = summary.latency_s
        results[policy] = {
            "windows_formed": summary.windows_formed,
            "windows_explained": summary.windows_explained,
            "windows_skipped": summary.windows_skipped,
            "explained_per_s": summary.explained_per_s,
            "stride_max": summary.stride_max,
            "latency_p50_s": latency["p50"],
            "latency_p95_s": latency["p95"],
            "latency_p50_over_inference": (latency["p50"] or 0.0) / inference_s,
            "latency_p95_over_inference": (latency["p95"] or 0.0) / inference_s,
        }
    return results


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _peak_rss(fn: Callable[[], Any]) -> tuple[int, int, Any]:
    """Resident memory before ``fn()`` and its peak while it runs (sampled every 50 ms)."""
    gc.collect()
    before, peak, done = _rss_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], _rss_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        value = fn()
    finally:
        done.set()
        sampler.join()
    return before, max(peak[0], _rss_bytes()), value


def memory(lengths_s: tuple[float, float], scratch: Path) -> dict[str, Any]:
    """Resident memory of streaming the demo model over two source lengths (every window
    explained): the peak above the start of each run, and samples along the longer one."""
    model = load_demo_model("motion")
    runs = {}
    for seconds in lengths_s:
        out = scratch / f"memory_{int(seconds)}"
        shutil.rmtree(out, ignore_errors=True)
        samples: list[tuple[int, float]] = []

        def sample(result: Any, samples: list[tuple[int, float]] = samples) -> None:
            if result.window_index % 20 == 0:
                samples.append((result.window_index, _rss_bytes() / 2**20))

        # Small overlays and a TensorBoard step every 25 windows keep the disk writing cheap;
        # what grows in memory would grow the same with more of them.
        runner = StreamExplainer(model, "gradcam_tube", out, stride=STRIDE, overlay_pixels=64,
                                 tensorboard_every=25, on_window=sample)  # fmt: skip
        frames = synthetic_frames(int(seconds * FPS), 32)
        start = time.perf_counter()
        before, peak, summary = _peak_rss(lambda: runner.explain(frames, realtime=False))  # noqa: B023
        half = samples[len(samples) // 2][1]
        runs[f"{seconds:g}s"] = {
            "frames": summary.frames_read,
            "windows_explained": summary.windows_explained,
            "wall_s": time.perf_counter() - start,
            "rss_start_mib": before / 2**20,
            "rss_peak_above_start_mib": (peak - before) / 2**20,
            "rss_second_half_growth_mib": samples[-1][1] - half,
            "rss_samples_mib": [(w, round(m, 1)) for w, m in samples[:: max(1, len(samples) // 8)]],
            "video_mib": Path(summary.files["overlay"]).stat().st_size / 2**20,
        }
    short, long = (runs[f"{s:g}s"] for s in lengths_s)
    growth = long["rss_peak_above_start_mib"] - short["rss_peak_above_start_mib"]
    return {
        "runs": runs,
        "peak_growth_mib": growth,
        "peak_growth_mib_per_source_minute": growth / ((lengths_s[1] - lengths_s[0]) / 60),
        "flat": growth < 16.0 and long["rss_second_half_growth_mib"] < 16.0,
    }


def run(
    counts: dict[str, int], repeats: int, live_s: float, lengths_s: tuple[float, float]
) -> dict[str, Any]:
    """All measurements; ``counts``: windows per throughput contender, per model."""
    torch.manual_seed(0)
    scratch = Path(tempfile.mkdtemp(prefix="captum-video-bench-stream-"))
    results: dict[str, Any] = {"fps": FPS, "clip_frames": CLIP, "stride": STRIDE, "models": {}}
    try:
        for name, (model, size) in _models().items():
            entry: dict[str, Any] = {"size": size, "methods": {}}
            for method in METHODS:
                count = counts[name]
                speed = throughput(model, size, method, count, repeats, scratch)
                inference_s = speed["seconds"]["inference"] / count
                entry["methods"][method] = {
                    "throughput": speed,
                    "realtime": realtime(model, size, method, live_s, inference_s, scratch),
                }
            results["models"][name] = entry
        results["memory"] = memory(lengths_s, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; prints (and optionally writes) the JSON results.

    Args:
        argv (list of str, optional): ``--quick`` (default) or ``--full``, ``--repeats N``,
            ``--out FILE.json``. Default: ``sys.argv``

    Returns:
        dict: the emitted payload.

    Example::

        >>> payload = main(["--quick"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="few windows, short sources (default)")
    mode.add_argument("--full", action="store_true", help="more windows, a 10-minute source")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: with more, a loaded machine makes OpenMP's waiting "
        "threads dominate, and differently in the main thread and the stream's worker)",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.full:
        settings = {"counts": {"r3d_18": 8, "demo": 64}, "repeats": args.repeats or 3,
                    "live_s": 30.0, "lengths_s": (60.0, 600.0)}  # fmt: skip
    else:
        settings = {"counts": {"r3d_18": 3, "demo": 24}, "repeats": args.repeats or 2,
                    "live_s": 12.0, "lengths_s": (20.0, 60.0)}  # fmt: skip
    results = run(**settings)  # type: ignore[arg-type]
    return emit("stream", {"mode": "full" if args.full else "quick", **results}, args.out)


if __name__ == "__main__":
    main()

"""TemporalOcclusion against Captum ``Occlusion`` with the same windows and against the floor
(issue 4).

Three contenders on the same clip and model, each timed as a whole call, all together by
:func:`~benchmarks._common.interleaved_times` (alternated round by round, so that load changes
on a shared machine hit all of them alike):

- ``floor``: the forward passes any temporal occlusion must make, on batches built
  beforehand: one clean forward plus ``ceil(windows / ppe)`` forwards of ``ppe`` clips;
- ``captum_occlusion``: ``captum.attr.Occlusion`` with ``sliding_window_shapes=(C, w, H, W)``,
  ``strides=(C, s, H, W)``, ``baselines=0`` and the same ``perturbations_per_eval``;
- ``temporal_occlusion``: ``TemporalOcclusion(..., baselines="zero")``, which gives the same
  numbers (``max_abs_diff`` in the JSON).

Ratios to the floor are taken round by round (median, min and max over the rounds).

Memory: the peak tensor memory of ``TemporalOcclusion`` at a fixed ``perturbations_per_eval``
for a growing number of windows stays at one batch (``memory.growth`` close to 1).
Target (issue 4): ``temporal_occlusion / floor <= 1.05`` (Captum measured at 1.12).

Run ``python -m benchmarks.temporal --quick`` (r3d_18, 1 clip of 8 x 56 x 56, 7 windows,
a minute or two on a 2-core CPU) or ``--full`` (16 x 112 x 112, 15 windows) with
``--out FILE.json``. Weights are random: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import functools
import math
from typing import Any

import torch
from captum.attr import Occlusion

from benchmarks._common import emit, interleaved_times, peak_memory, ratio, video_model
from captum_video.attr import TemporalOcclusion

SIZES = {
    "quick": {"frames": 8, "size": 56, "window": 2, "stride": 1, "ppe": 7, "repeats": 3},
    "full": {"frames": 16, "size": 112, "window": 2, "stride": 1, "ppe": 5, "repeats": 3},
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print (and optionally write) its JSON.

    Args:
        argv (list of str, optional): command-line arguments; ``sys.argv`` when None.

    Returns:
        dict: the JSON payload.

    Example::

        >>> main(["--quick", "--out", "results/temporal.json"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes (default)")
    mode.add_argument("--full", action="store_true", help="the issue's sizes")
    parser.add_argument("--out", default=None, help="write the JSON here too")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--ppe", type=int, default=None, help="perturbations_per_eval")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument(
        "--memory-ppe", type=int, default=2, help="perturbations_per_eval of the memory profile"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory profile")
    parser.add_argument(
        "--overhead-only", action="store_true", help="only time the work outside the model"
    )
    args = parser.parse_args(argv)
    cfg = dict(SIZES["full" if args.full else "quick"])
    for key in ("ppe", "repeats"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = video_model("r3d_18", device=device)
    t, s, w, stride, ppe = cfg["frames"], cfg["size"], cfg["window"], cfg["stride"], cfg["ppe"]
    x = torch.rand(1, 3, t, s, s, device=device)
    windows = math.ceil((t - w) / stride) + 1
    chunks = [min(ppe, windows - i) for i in range(0, windows, ppe)]
    prebuilt = [x.repeat(k, 1, 1, 1, 1) for k in chunks]

    @torch.no_grad()
    def floor() -> None:
        model(x)[:, 0]
        for batch in prebuilt:
            model(batch)[:, 0]

    captum_occ, ours = Occlusion(model), TemporalOcclusion(model)

    def captum_run() -> torch.Tensor:
        return captum_occ.attribute(
            x,
            sliding_window_shapes=(3, w, s, s),
            strides=(3, stride, s, s),
            baselines=0,
            target=0,
            perturbations_per_eval=ppe,
        )

    def ours_run(window: int = w, step: int = stride, per_eval: int = ppe) -> torch.Tensor:
        return ours.attribute(
            x,
            window=window,
            stride=step,
            baselines="zero",
            target=0,
            perturbations_per_eval=per_eval,
        )

    # Work outside the model: the same calls with a forward that costs ~nothing. This part
    # is small and steady, so it can be measured even where the model timings are noisy.
    def cheap_forward(v: torch.Tensor) -> torch.Tensor:
        return v.mean(dim=(2, 3, 4))

    cheap_captum, cheap_ours = Occlusion(cheap_forward), TemporalOcclusion(cheap_forward)
    overhead = interleaved_times(
        {
            "captum_occlusion": lambda: cheap_captum.attribute(
                x,
                sliding_window_shapes=(3, w, s, s),
                strides=(3, stride, s, s),
                baselines=0,
                target=0,
                perturbations_per_eval=ppe,
            ),
            "temporal_occlusion": lambda: cheap_ours.attribute(
                x,
                window=w,
                stride=stride,
                baselines="zero",
                target=0,
                perturbations_per_eval=ppe,
            ),
        },
        device,
        10,
    )
    if args.overhead_only:
        return emit(
            "temporal",
            {
                "mode": "full" if args.full else "quick",
                "clip": [1, 3, t, s, s],
                "windows": windows,
                "perturbations_per_eval": ppe,
                "overhead_without_model": overhead,
            },
            args.out,
        )

    diff = float((captum_run() - ours_run()).abs().max())
    timings = interleaved_times(
        {"floor": floor, "captum_occlusion": captum_run, "temporal_occlusion": ours_run},
        device,
        cfg["repeats"],
    )
    # The floor plus the work outside the model, both from their least disturbed runs.
    floor_min = timings["floor"]["min_s"]
    estimated = {
        f"{key}_over_floor_estimated": (floor_min + overhead[key]["min_s"]) / floor_min
        for key in ("captum_occlusion", "temporal_occlusion")
    }
    ratios = {
        f"{key}_over_floor": ratio(timings, key, "floor")
        for key in ("captum_occlusion", "temporal_occlusion")
    }
    results: dict[str, Any] = {
        "mode": "full" if args.full else "quick",
        "model": "torchvision r3d_18 (random weights)",
        "clip": [1, 3, t, s, s],
        "window": w,
        "stride": stride,
        "windows": windows,
        "perturbations_per_eval": ppe,
        "forward_passes": 1 + len(chunks),
        "max_abs_diff_vs_captum": diff,
        "timings": timings,
        "ratios": ratios,
        "overhead_without_model": overhead,
        "ratios_from_overhead": estimated,
        "target": "temporal_occlusion_over_floor median <= 1.05",
    }
    if not args.no_memory:
        # Same ppe, growing number of windows (>= ppe; window length does not change memory).
        mem_ppe = args.memory_ppe
        configs = [(t // 2, t // 2), (2, 2), (2, 1)]
        peaks = {}
        for window, step in configs:
            count = math.ceil((t - window) / step) + 1
            run = functools.partial(ours_run, window, step, mem_ppe)
            peaks[count] = peak_memory(run, device)["peak_mib"]
        floor_peak = peak_memory(floor, device)["peak_mib"]
        captum_peak = peak_memory(captum_run, device)["peak_mib"]
        results["memory"] = {
            "temporal_occlusion_peak_mib_by_windows": peaks,
            "perturbations_per_eval": mem_ppe,
            "growth": max(peaks.values()) / max(min(peaks.values()), 1e-9),
            "floor_peak_mib_at_timing_ppe": floor_peak,
            "captum_occlusion_peak_mib_at_timing_ppe": captum_peak,
        }
    return emit("temporal", results, args.out)


if __name__ == "__main__":
    main()

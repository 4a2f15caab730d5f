"""ClipVisualization: time per optimisation step against a forward + backward of the model.

One optimisation step of :class:`~captum_video.units.ClipVisualization` is one forward and
one backward pass of the model on the transformed clips, plus the Fourier parametrisation
(an inverse FFT and its gradient), the random transforms and the total-variation penalties.
A layer unit stops the forward pass at its layer, so it can cost less than a class logit.

Per model, every contender runs ``steps`` steps as one whole call, all of them together by
:func:`~benchmarks._common.interleaved_times` on the same model:

* ``forward_backward``: ``steps`` times a forward + backward to the input of ``N`` clips
  (the baseline every ratio is taken against);
* ``logit``: ``optimize(target=[...], n_steps=steps)`` with the defaults;
* ``logit_no_transforms``: the same with ``transforms=[]`` (the cost of the robustness);
* ``channel``: ``optimize(layer=..., channel=[...], n_steps=steps)`` on a middle layer.

The optimiser's calls include their fixed costs (argument checks, one probe forward pass),
spread over ``steps``. Ratios are round by round (median, min, max), also with process CPU
time on the CPU (``*_cpu``).

Run ``python -m benchmarks.units --quick`` (the demo C3D, 4 clips of 16x32x32) or ``--full``
(also torchvision's r3d_18 on 16x112x112, random weights), ``--out FILE.json``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from benchmarks._common import emit, interleaved_times, ratio, video_model
from captum_video.models import load_demo_model
from captum_video.units import ClipVisualization

BASELINE = "forward_backward"


def forward_backward(
    model: nn.Module, clips: int, size: tuple[int, int, int], steps: int
) -> Callable[[], None]:
    """``steps`` forwards + backwards to the input, one target logit per clip."""
    x = torch.rand(clips, 3, *size, device=next(model.parameters()).device)
    rows = torch.arange(clips, device=x.device)
    target = rows % 4

    def run() -> None:
        for _ in range(steps):
            inp = x.detach().requires_grad_()
            torch.autograd.grad(model(inp)[rows, target].sum(), inp)

    return run


def bench_case(
    name: str,
    model: nn.Module,
    layer: str,
    clips: int,
    size: tuple[int, int, int],
    steps: int,
    device: torch.device,
    repeats: int,
) -> dict[str, Any]:
    """Time every contender on one model; returns timings and ratios."""
    vis = ClipVisualization(model)
    targets = [i % 4 for i in range(clips)]
    channels = list(range(clips))
    common = {"n_steps": steps, "clip_size": size, "seed": 0}
    fns: dict[str, Callable[[], Any]] = {
        BASELINE: forward_backward(model, clips, size, steps),
        "logit": lambda: vis.optimize(target=targets, **common),
        "logit_no_transforms": lambda: vis.optimize(target=targets, transforms=[], **common),
        "channel": lambda: vis.optimize(layer=layer, channel=channels, **common),
    }
    times = interleaved_times(fns, device, repeats)
    ratios = {f"vs_{BASELINE}": {key: ratio(times, key, BASELINE) for key in fns}}
    if device.type == "cpu":
        ratios[f"vs_{BASELINE}_cpu"] = {key: ratio(times, key, BASELINE, cpu=True) for key in fns}
    return {
        "model": name,
        "layer": layer,
        "clips": [clips, 3, *size],
        "steps": steps,
        "seconds_per_step": {key: t["median_s"] / steps for key, t in times.items()},
        "times": times,
        "ratios": ratios,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print JSON.

    Args:
        argv (list of str, optional): command-line arguments; ``--quick`` (the demo model),
            ``--full`` (also r3d_18 at 16x112x112), ``--device``, ``--repeats``,
            ``--steps``, ``--out FILE.json``.

    Returns:
        dict: the emitted payload.

    Example::

        >>> payload = main(["--quick", "--repeats", "1"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the demo C3D, 16x32x32 (default)")
    mode.add_argument("--full", action="store_true", help="also r3d_18 at 16x112x112")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds")
    parser.add_argument("--steps", type=int, default=None, help="optimisation steps per call")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    repeats = args.repeats or 3
    steps = args.steps or 4
    cases = [
        bench_case(
            "demo_c3d_motion",
            load_demo_model("motion", device=device),
            "layer2",
            4,
            (16, 32, 32),
            steps,
            device,
            repeats,
        )
    ]
    if args.full:
        torch.manual_seed(0)
        r3d = video_model("r3d_18", device=device)
        cases.append(bench_case("r3d_18", r3d, "layer2", 1, (16, 112, 112), steps, device, repeats))
    return emit("units", {"mode": "full" if args.full else "quick", "cases": cases}, args.out)


if __name__ == "__main__":
    main()

"""Benchmark GradCAMTube against its floor, Captum and pytorch-grad-cam.

The floor of a layer method is one forward pass plus the backward from the target score down
to the layer only (``torch.autograd.grad`` w.r.t. the layer output), with an ordinary forward
that records the whole graph. Every method runs in the same process on the same model and
clips, so the ratios hold on any machine; seconds are for context.

Compared per model and batch size:

* ``forward``: a plain forward under ``no_grad`` (context);
* ``floor``: forward + backward to the layer;
* ``full_backward``: forward + backward to the input (what a naive implementation pays);
* ``captum``: ``LayerGradCam`` + ``LayerAttribution.interpolate(..., "trilinear")``;
* ``tube_clip`` / ``tube_per_step``: :class:`~captum_video.attr.GradCAMTube`;
* ``pytorch_grad_cam``: ``pytorch_grad_cam.GradCAM`` when the package is installed (it
  min-max normalises and up-samples on the CPU with ``scipy.ndimage.zoom``).

Run ``python -m benchmarks.tubes --quick`` (16x32x32, batch 1 and 2) or ``--full``
(r3d_18 and r2plus1d_18, 16x112x112, batch 1 and 8). On the CPU, process CPU time is reported
next to wall time (``*_cpu`` ratios): on a shared machine wall times are dominated by load.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import Tensor, nn

from benchmarks._common import emit, peak_memory, time_fn
from captum_video.attr import GradCAMTube
from captum_video.models import load_torchvision_model


def floor_fn(model: nn.Module, layer: nn.Module, x: Tensor, target: list[int]) -> Callable:
    """One forward + the backward from the target scores down to ``layer`` only."""
    rows = torch.arange(len(target), device=x.device)

    def run() -> Tensor:
        saved: list[Tensor] = []
        handle = layer.register_forward_hook(lambda _m, _i, out: saved.append(out))
        try:
            out = model(x)
        finally:
            handle.remove()
        return torch.autograd.grad(out[rows, target].sum(), saved[0])[0]

    return run


def full_backward_fn(model: nn.Module, x: Tensor, target: list[int]) -> Callable:
    rows = torch.arange(len(target), device=x.device)

    def run() -> Tensor:
        inp = x.detach().requires_grad_()
        return torch.autograd.grad(model(inp)[rows, target].sum(), inp)[0]

    return run


def captum_fn(model: nn.Module, layer: nn.Module, x: Tensor, target: list[int]) -> Callable:
    method = LayerGradCam(model, layer)

    def run() -> Tensor:
        cam = method.attribute(x, target=target, relu_attributions=True)
        return LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="trilinear")

    return run


def grad_cam_fn(
    model: nn.Module, layer: nn.Module, x: Tensor, target: list[int]
) -> Callable | None:
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        return None
    cam = GradCAM(model=model, target_layers=[layer])
    targets = [ClassifierOutputTarget(t) for t in target]
    return lambda: cam(input_tensor=x, targets=targets)


def cpu_time_fn(fn: Callable, repeats: int) -> dict[str, float]:
    """Median process CPU time of ``fn()`` (all threads): the work done, which a busy shared
    machine distorts far less than wall time. CPU only; on CUDA use the wall times."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return {"median_cpu_s": statistics.median(times)}


def bench_case(
    name: str, frames: int, size: int, batch: int, device: torch.device, repeats: int, memory: bool
) -> dict[str, Any]:
    torch.manual_seed(0)
    model = load_torchvision_model(name, num_classes=400, device=device)
    layer = model.layer4
    x = torch.rand(batch, 3, frames, size, size, device=device)
    target = [(7 * i) % 400 for i in range(batch)]
    tube = GradCAMTube(model, layer)
    fns: dict[str, Callable | None] = {
        "forward": lambda: torch.no_grad()(model)(x),
        "floor": floor_fn(model, layer, x, target),
        "full_backward": full_backward_fn(model, x, target),
        "captum": captum_fn(model, layer, x, target),
        "tube_clip": lambda: tube.attribute(x, target=target, temporal_weights="clip"),
        "tube_per_step": lambda: tube.attribute(x, target=target, temporal_weights="per_step"),
        "pytorch_grad_cam": grad_cam_fn(model, layer, x, target),
    }
    results: dict[str, Any] = {}
    for key, fn in fns.items():
        if fn is None:
            results[key] = "not installed"
            continue
        entry = time_fn(fn, device, repeats=repeats, warmup=1)
        if device.type == "cpu":
            entry.update(cpu_time_fn(fn, repeats))
        if memory:
            entry.update(peak_memory(fn, device))
        results[key] = entry
    floor = results["floor"]["median_s"]
    captum = results["captum"]["median_s"]
    ratios: dict[str, float] = {}
    for key, entry in results.items():
        if isinstance(entry, dict):
            ratios[f"{key}/floor"] = entry["median_s"] / floor
            ratios[f"{key}/captum"] = entry["median_s"] / captum
            if "median_cpu_s" in entry:
                cpu_floor = results["floor"]["median_cpu_s"]
                cpu_captum = results["captum"]["median_cpu_s"]
                ratios[f"{key}/floor_cpu"] = entry["median_cpu_s"] / cpu_floor
                ratios[f"{key}/captum_cpu"] = entry["median_cpu_s"] / cpu_captum
    return {
        "model": name,
        "layer": "layer4",
        "clip": [batch, 3, frames, size, size],
        "times": results,
        "ratios": ratios,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print JSON.

    Args:
        argv (list of str, optional): command-line arguments; ``--quick`` (small clips),
            ``--full`` (16x112x112, batch 1 and 8), ``--device``, ``--repeats``,
            ``--no-memory``, ``--out FILE.json``.

    Returns:
        dict: the emitted payload.

    Example::

        >>> payload = main(["--quick", "--repeats", "1", "--no-memory"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="16x32x32 clips (default)")
    mode.add_argument("--full", action="store_true", help="16x112x112, batch 1 and 8")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--models", nargs="+", default=["r3d_18", "r2plus1d_18"])
    parser.add_argument("--no-memory", action="store_true", help="skip peak-memory runs")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.full:
        frames, size, batches, repeats = 16, 112, (1, 8), args.repeats or 5
    else:
        frames, size, batches, repeats = 16, 32, (1, 2), args.repeats or 3
    cases = []
    with warnings.catch_warnings():
        # layer4 keeps 2 of 16 frames: the tube warns once per call; not what is measured here
        warnings.simplefilter("ignore")
        for name in args.models:
            for batch in batches:
                cases.append(
                    bench_case(
                        name, frames, size, batch, device, repeats, memory=not args.no_memory
                    )
                )
    return emit("tubes", {"mode": "full" if args.full else "quick", "cases": cases}, args.out)


if __name__ == "__main__":
    main()

"""GradCAMTube against a forward + backward to the layer, Captum and pytorch-grad-cam.

Per model and batch size, every contender is timed as a whole call, all of them together by
:func:`~benchmarks._common.interleaved_times` on the same model and clips:

* ``forward``: a plain forward under ``no_grad`` (context);
* ``forward_backward_to_layer``: one forward that records the whole autograd graph, then the
  backward from the target scores down to the layer only (``torch.autograd.grad`` w.r.t. the
  layer output), what a plain implementation of a layer method pays. It is not a lower bound:
  GradCAMTube records the graph above the layer only, so it may run faster;
* ``forward_backward_to_input``: one forward + the backward down to the input;
* ``captum``: ``LayerGradCam`` + ``LayerAttribution.interpolate(..., "trilinear")``;
* ``tube_clip`` / ``tube_per_step``: :class:`~captum_video.attr.GradCAMTube` with
  ``temporal_weights="clip"`` / ``"per_step"``;
* ``pytorch_grad_cam``: ``pytorch_grad_cam.GradCAM`` when that package is installed (it
  min-max normalises and up-samples on the CPU with ``scipy.ndimage.zoom``).

Ratios are round by round against ``forward_backward_to_layer`` and against ``captum``
(median, min and max over the rounds); on the CPU also with process CPU time (``*_cpu``),
which a busy shared machine distorts far less than wall time.

Run ``python -m benchmarks.tubes --quick`` (16x32x32, batch 1 and 2) or ``--full`` (r3d_18
and r2plus1d_18, 16x112x112, batch 1 and 8), ``--out FILE.json``.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable
from typing import Any

import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import Tensor, nn

from benchmarks._common import emit, interleaved_times, peak_memory, ratio, video_model
from captum_video.attr import GradCAMTube

#: The contenders every ratio is taken against.
BASELINES = ("forward_backward_to_layer", "captum")


def forward_backward_to_layer(
    model: nn.Module, layer: nn.Module, x: Tensor, target: list[int]
) -> Callable[[], Tensor]:
    """One forward recording the whole graph + the backward from the targets to ``layer``."""
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


def forward_backward_to_input(
    model: nn.Module, x: Tensor, target: list[int]
) -> Callable[[], Tensor]:
    """One forward + the backward from the target scores down to the input."""
    rows = torch.arange(len(target), device=x.device)

    def run() -> Tensor:
        inp = x.detach().requires_grad_()
        return torch.autograd.grad(model(inp)[rows, target].sum(), inp)[0]

    return run


def captum_grad_cam(
    model: nn.Module, layer: nn.Module, x: Tensor, target: list[int]
) -> Callable[[], Tensor]:
    """Captum's ``LayerGradCam`` (with ReLU) up-sampled trilinearly to the clip."""
    method = LayerGradCam(model, layer)

    def run() -> Tensor:
        cam = method.attribute(x, target=target, relu_attributions=True)
        return LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="trilinear")

    return run


def pytorch_grad_cam(
    model: nn.Module, layer: nn.Module, x: Tensor, target: list[int]
) -> Callable[[], Any] | None:
    """``pytorch_grad_cam.GradCAM``, or None where that optional package is not installed."""
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        return None
    cam = GradCAM(model=model, target_layers=[layer])
    targets = [ClassifierOutputTarget(t) for t in target]
    return lambda: cam(input_tensor=x, targets=targets)


def bench_case(
    name: str,
    frames: int,
    size: int,
    batch: int,
    device: torch.device,
    repeats: int,
    memory: bool,
) -> dict[str, Any]:
    """Time every contender on one model and clip batch; returns timings and ratios."""
    torch.manual_seed(0)
    model = video_model(name, device=device)
    layer = model.layer4
    x = torch.rand(batch, 3, frames, size, size, device=device)
    target = [(7 * i) % 400 for i in range(batch)]
    tube = GradCAMTube(model, layer)
    fns: dict[str, Callable[[], Any]] = {
        "forward": lambda: torch.no_grad()(model)(x),
        "forward_backward_to_layer": forward_backward_to_layer(model, layer, x, target),
        "forward_backward_to_input": forward_backward_to_input(model, x, target),
        "captum": captum_grad_cam(model, layer, x, target),
        "tube_clip": lambda: tube.attribute(x, target=target, temporal_weights="clip"),
        "tube_per_step": lambda: tube.attribute(x, target=target, temporal_weights="per_step"),
    }
    not_installed = []
    grad_cam = pytorch_grad_cam(model, layer, x, target)
    if grad_cam is None:
        not_installed.append("pytorch_grad_cam")
    else:
        fns["pytorch_grad_cam"] = grad_cam
    times = interleaved_times(fns, device, repeats)
    ratios: dict[str, dict[str, dict[str, float]]] = {}
    for baseline in BASELINES:
        ratios[f"vs_{baseline}"] = {key: ratio(times, key, baseline) for key in fns}
        if device.type == "cpu":
            ratios[f"vs_{baseline}_cpu"] = {
                key: ratio(times, key, baseline, cpu=True) for key in fns
            }
    peaks = {key: peak_memory(fn, device) for key, fn in fns.items()} if memory else {}
    return {
        "model": name,
        "layer": "layer4",
        "clip": [batch, 3, frames, size, size],
        "times": times,
        "ratios": ratios,
        "peak_memory": peaks,
        "not_installed": not_installed,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print JSON.

    Args:
        argv (list of str, optional): command-line arguments; ``--quick`` (small clips),
            ``--full`` (16x112x112, batch 1 and 8), ``--device``, ``--repeats``,
            ``--models``, ``--batches``, ``--no-memory``, ``--out FILE.json``.

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
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds")
    parser.add_argument("--models", nargs="+", default=["r3d_18", "r2plus1d_18"])
    parser.add_argument("--batches", nargs="+", type=int, default=None, help="batch sizes")
    parser.add_argument("--no-memory", action="store_true", help="skip peak-memory runs")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.full:
        frames, size, batches, repeats = 16, 112, (1, 8), 5
    else:
        frames, size, batches, repeats = 16, 32, (1, 2), 3
    cases = []
    with warnings.catch_warnings():
        # layer4 keeps 2 of 16 frames: the tube warns once per call; not what is measured here
        warnings.simplefilter("ignore")
        for name in args.models:
            for batch in args.batches or batches:
                cases.append(
                    bench_case(
                        name,
                        frames,
                        size,
                        batch,
                        device,
                        args.repeats or repeats,
                        memory=not args.no_memory,
                    )
                )
    return emit("tubes", {"mode": "full" if args.full else "quick", "cases": cases}, args.out)


if __name__ == "__main__":
    main()

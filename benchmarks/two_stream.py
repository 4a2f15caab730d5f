"""Per-stream explanations of a two-stream model against its forward + backward.

The model is :class:`~captum_video.models.TwoStreamSmall` (an RGB stream of per-frame 2-D
convolutions and a flow stream of 3-D convolutions whose logits are added). Every contender
is timed as a whole call on the same ``(rgb, flow)`` batch, all together by
:func:`~benchmarks._common.interleaved_times`:

* ``forward``: a plain forward under ``no_grad`` (context);
* ``forward_backward``: one forward + the backward of the target scores down to both inputs
  (the baseline of every ratio);
* ``optical_flow``: :func:`~captum_video.models.two_stream_inputs`, the Farneback flow the
  flow stream needs (OpenCV on the CPU; a pre-processing, not part of any explanation);
* ``saliency``, ``input_x_gradient``, ``integrated_gradients`` (16 steps): Captum with the
  tuple input, one attribution per stream;
* ``deep_taylor``: :class:`~captum_video.attr.DeepTaylor3D` (z+ / z^B with bounds
  ``(-1, 1)``, which hold the clip and the scaled flow);
* ``gradcam_rgb`` / ``gradcam_flow``: :class:`~captum_video.attr.GradCAMTube` on
  ``rgb.layer3`` / ``flow.layer3``; ``saliency_tube_rgb`` / ``saliency_tube_flow``:
  :class:`~captum_video.attr.SaliencyTube` with the stream's own head;
* ``selective_saliency``: :class:`~captum_video.attr.SelectiveRelevance` around Saliency;
* ``stream_ablation``: :func:`~captum_video.metrics.streams.stream_ablation` (4 forward
  passes: every coalition of the two streams, exact Shapley values).

Ratios are round by round against ``forward_backward`` (median, min and max over the
rounds); on the CPU also with process CPU time (``*_cpu``).

Run ``python -m benchmarks.two_stream --quick`` (the bundled motion model on 16x32x32 clips,
batch 1 and 2) or ``--full`` (random weights, 16x112x112, batch 1 and 8), ``--out FILE.json``.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable
from typing import Any

import torch
from captum.attr import InputXGradient, IntegratedGradients, Saliency
from torch import Tensor, nn

from benchmarks._common import emit, interleaved_times, ratio
from captum_video.attr import DeepTaylor3D, GradCAMTube, SaliencyTube, SelectiveRelevance
from captum_video.metrics.streams import stream_ablation
from captum_video.models import TwoStreamSmall, load_demo_model, two_stream_inputs

BASELINE = "forward_backward"


def forward_backward(model: nn.Module, x: tuple[Tensor, Tensor], target: list[int]) -> Callable:
    """One forward + the backward from the target scores down to both inputs."""
    rows = torch.arange(len(target), device=x[0].device)

    def run() -> tuple[Tensor, ...]:
        leaves = tuple(t.detach().requires_grad_() for t in x)
        return torch.autograd.grad(model(*leaves)[rows, target].sum(), leaves)

    return run


def contenders(
    model: Any, clips: Tensor, x: tuple[Tensor, Tensor], target: list[int]
) -> dict[str, Callable[[], Any]]:
    """Every timed call on one model and batch, by name."""
    ig = IntegratedGradients(model)
    deep_taylor = DeepTaylor3D(model, first_layer_bounds=(-1.0, 1.0))
    tubes = {
        "gradcam_rgb": GradCAMTube(model, model.rgb.layer3),
        "gradcam_flow": GradCAMTube(model, model.flow.layer3),
        "saliency_tube_rgb": SaliencyTube(model, model.rgb.layer3, model.rgb.fc),
        "saliency_tube_flow": SaliencyTube(model, model.flow.layer3, model.flow.fc),
    }
    fns: dict[str, Callable[[], Any]] = {
        "forward": lambda: torch.no_grad()(model)(*x),
        BASELINE: forward_backward(model, x, target),
        "optical_flow": lambda: two_stream_inputs(clips),
        "saliency": lambda: Saliency(model).attribute(x, target=target),
        "input_x_gradient": lambda: InputXGradient(model).attribute(x, target=target),
        "integrated_gradients": lambda: ig.attribute(x, target=target, n_steps=16),
        "deep_taylor": lambda: deep_taylor.attribute(x, target=target),
        "selective_saliency": lambda: SelectiveRelevance(Saliency(model)).attribute(
            x, target=target
        ),
        "stream_ablation": lambda: stream_ablation(model, x, target=target),
    }
    for name, tube in tubes.items():
        fns[name] = lambda tube=tube: tube.attribute(x, target=target)
    return fns


def bench_case(
    model: nn.Module, frames: int, size: int, batch: int, device: torch.device, repeats: int
) -> dict[str, Any]:
    """Time every contender on one batch; returns timings and ratios."""
    generator = torch.Generator().manual_seed(batch)
    clips = torch.rand(batch, 3, frames, size, size, generator=generator).to(device)
    x = tuple(t.to(device) for t in two_stream_inputs(clips.cpu()))
    target = [i % 4 for i in range(batch)]
    fns = contenders(model, clips.cpu(), (x[0], x[1]), target)
    times = interleaved_times(fns, device, repeats)
    ratios = {f"vs_{BASELINE}": {key: ratio(times, key, BASELINE) for key in fns}}
    if device.type == "cpu":
        ratios[f"vs_{BASELINE}_cpu"] = {key: ratio(times, key, BASELINE, cpu=True) for key in fns}
    return {"clip": [batch, 3, frames, size, size], "times": times, "ratios": ratios}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print JSON.

    Args:
        argv (list of str, optional): command-line arguments; ``--quick`` (the bundled
            motion model, 16x32x32, batch 1 and 2), ``--full`` (random weights, 16x112x112,
            batch 1 and 8), ``--device``, ``--repeats``, ``--batches``, ``--out FILE.json``.

    Returns:
        dict: the emitted payload.

    Example::

        >>> payload = main(["--quick", "--repeats", "1", "--batches", "1"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="16x32x32 clips (default)")
    mode.add_argument("--full", action="store_true", help="16x112x112, batch 1 and 8")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds")
    parser.add_argument("--batches", nargs="+", type=int, default=None, help="batch sizes")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.full:
        torch.manual_seed(0)
        model: nn.Module = TwoStreamSmall().eval().to(device)
        frames, size, batches, repeats = 16, 112, (1, 8), 5
    else:
        model = load_demo_model("two_stream_motion", device=device)
        frames, size, batches, repeats = 16, 32, (1, 2), 3
    cases = []
    with warnings.catch_warnings():
        # Captum's "required_grads has been set automatically": not what is measured here.
        warnings.simplefilter("ignore")
        for batch in args.batches or batches:
            cases.append(bench_case(model, frames, size, batch, device, args.repeats or repeats))
    payload = {"mode": "full" if args.full else "quick", "model": type(model).__name__}
    return emit("two_stream", {**payload, "cases": cases}, args.out)


if __name__ == "__main__":
    main()

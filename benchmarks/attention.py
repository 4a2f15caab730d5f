"""Attention rollout and gradient-weighted attention relevance against the model's own passes.

Per model and batch size, every contender is timed as a whole call, all of them together by
:func:`~benchmarks._common.interleaved_times` on the same model and clips:

* ``forward``: a plain forward under ``no_grad``, the model as loaded (Hugging Face models
  with their default fused "sdpa" attention);
* ``rollout``: :class:`~captum_video.attr.AttentionRollout` (one forward recording the
  attention probabilities, the fused attention computed explicitly, then one vector-matrix
  product per attention step); target <= 1.1x ``forward``;
* ``forward_backward``: one forward recording the graph and the backward from the target
  scores to the input;
* ``gradient_weighted``: :class:`~captum_video.attr.GradientWeightedAttention` (forward
  recording the graph, backward from the target scores to the attention probabilities, one
  vector-matrix product per step); target <= 1.1x ``forward_backward``.

Ratios are round by round (median, min, max over rounds), with wall time and, on the CPU,
process CPU time (``*_cpu``), which a busy shared machine distorts far less.

Models: the bundled demo transformer (16x32x32), and Hugging Face VideoMAE (mean pooling,
joint attention) and TimeSformer (divided space-time attention) with random weights:
``--quick`` 4 layers of width 64 on 64x64 clips, ``--full`` 6 layers of width 192 on 112x112
clips (ViT-tiny widths). Run ``python -m benchmarks.attention --quick`` or ``--full``,
``--out FILE.json``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from benchmarks._common import emit, interleaved_times, ratio
from captum_video.attr import AttentionRollout, GradientWeightedAttention
from captum_video.models import VideoTransformerSmall, load_demo_model
from captum_video.registry import adapt

#: contender -> the baseline its ratio is taken against
RATIOS = {"rollout": "forward", "gradient_weighted": "forward_backward"}


def hf_model(kind: str, full: bool) -> tuple[nn.Module, tuple[int, int, int]]:
    """A random Hugging Face VideoMAE or TimeSformer classifier (adapted) and its clip size."""
    import transformers

    width, layers, heads, side = (192, 6, 3, 112) if full else (64, 4, 4, 64)
    common = dict(
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * width,
        image_size=side,
        patch_size=16,
        num_labels=10,
    )
    torch.manual_seed(0)
    if kind == "videomae":
        frames = 16 if full else 8
        model = transformers.VideoMAEForVideoClassification(
            transformers.VideoMAEConfig(num_frames=frames, tubelet_size=2, **common)
        )
    else:
        frames = 8 if full else 4
        model = transformers.TimesformerForVideoClassification(
            transformers.TimesformerConfig(num_frames=frames, **common)
        )
    return adapt(model.eval()), (frames, side, side)


def demo_transformer() -> tuple[nn.Module, tuple[int, int, int]]:
    """The bundled demo transformer (random weights of its architecture if not bundled)."""
    try:
        model = load_demo_model("transformer")
    except FileNotFoundError:
        torch.manual_seed(0)
        model = VideoTransformerSmall().eval()
    return model, (16, 32, 32)


def forward_backward(model: nn.Module, x: Tensor, target: list[int]) -> Callable[[], Tensor]:
    """One forward recording the graph + the backward from the target scores to the input."""
    rows = torch.arange(len(target), device=x.device)

    def run() -> Tensor:
        inp = x.detach().requires_grad_()
        return torch.autograd.grad(model(inp)[rows, target].sum(), inp)[0]

    return run


def bench_case(
    model: nn.Module,
    size: tuple[int, int, int],
    batch: int,
    device: torch.device,
    repeats: int,
) -> dict[str, Any]:
    """Time every contender on one model and clip batch; returns timings and ratios."""
    model = model.to(device)
    x = torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(0)).to(device)
    classes = int(model(x[:1]).shape[1])
    target = [(3 * i) % classes for i in range(batch)]
    rollout, weighted = AttentionRollout(model), GradientWeightedAttention(model)
    fns: dict[str, Callable[[], Any]] = {
        "forward": lambda: torch.no_grad()(model)(x),
        "rollout": lambda: rollout.attribute(x, target=target),
        "forward_backward": forward_backward(model, x, target),
        "gradient_weighted": lambda: weighted.attribute(x, target=target),
    }
    timings = interleaved_times(fns, device, repeats)
    ratios: dict[str, Any] = {}
    for key, base in RATIOS.items():
        ratios[f"{key}/{base}"] = ratio(timings, key, base)
        if device.type == "cpu":
            ratios[f"{key}/{base}_cpu"] = ratio(timings, key, base, cpu=True)
    return {
        "clip": [batch, 3, *size],
        "seconds": {k: v["median_s"] for k, v in timings.items()},
        "ratios": ratios,
    }


def run(
    full: bool, repeats: int, device: torch.device, models: list[str] | None = None
) -> dict[str, Any]:
    """Every model at every batch size; returns ``{"cases": {...}}``."""
    builders: dict[str, Callable[[], tuple[nn.Module, tuple[int, int, int]]]] = {
        "demo_transformer": demo_transformer,
        "videomae": lambda: hf_model("videomae", full),
        "timesformer": lambda: hf_model("timesformer", full),
    }
    batches = (1, 8) if full else (1, 4)
    cases: dict[str, Any] = {}
    for name, build in builders.items():
        if models is not None and name not in models:
            continue
        model, size = build()
        for batch in batches:
            cases[f"{name}/batch{batch}"] = bench_case(model, size, batch, device, repeats)
    return {
        "cases": cases,
        "targets": {"rollout/forward": 1.1, "gradient_weighted/forward_backward": 1.1},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print (and optionally write) its JSON.

    Args:
        argv (list of str, optional): ``--quick`` (default) or ``--full``, ``--repeats``,
            ``--device``, ``--models NAME ...``, ``--out FILE.json``. Default: ``sys.argv``

    Returns:
        dict: the emitted payload.

    Example::

        >>> payload = main(["--quick", "--repeats", "1", "--models", "demo_transformer"])
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small configurations (default)")
    size.add_argument("--full", action="store_true", help="ViT-tiny widths, 112x112 clips")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (after 1 warm-up)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--models",
        nargs="*",
        default=None,
        choices=["demo_transformer", "videomae", "timesformer"],
        help="default: all",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    repeats = args.repeats or (7 if args.full else 5)
    results = run(args.full, repeats, torch.device(args.device), args.models)
    return emit("attention", {"mode": "full" if args.full else "quick", **results}, args.out)


if __name__ == "__main__":
    main()

"""Overhead of selective relevance over the attribution method it wraps (issue 5).

The wrapped method is ``GradCAMTube`` on torchvision's ``r3d_18`` (random weights; speed does
not depend on them) when :mod:`captum_video.attr._tubes` is available, else Captum's
``LayerGradCam`` followed by trilinear up-sampling (the JSON says which). Three timings are
taken in the same process on the same clip:

- ``base``: the wrapped method alone;
- ``wrapped``: ``SelectiveRelevance(method).attribute(...)``;
- ``selection``: :func:`~captum_video.attr.selective_relevance` alone on the base map.

``selection_over_base`` (selection time / base time) is the overhead that matters and the
least noisy figure; ``wrapped_over_base - 1`` measures the same thing end to end but carries
the run-to-run noise of the base method (base and wrapped are timed alternately, round by
round, so load changes on a shared machine hit both alike).
Target (issue 5): selection < 5 % of GradCAMTube.

Run ``python -m benchmarks.selective --quick`` (1 clip of 8 x 56 x 56, about a minute on a
2-core CPU) or ``--full`` (16 x 112 x 112, the issue's size) with ``--out FILE.json``.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from benchmarks._common import emit, interleaved_times, peak_memory, time_fn
from captum_video.attr import SelectiveRelevance, selective_relevance, upsample_to_input


def wrapped_method(model: nn.Module, layer: nn.Module) -> tuple[Any, str]:
    """GradCAMTube when it exists, else Captum LayerGradCam + trilinear up-sampling."""
    try:
        from captum_video.attr._tubes import GradCAMTube
    except ImportError:
        from captum.attr import LayerGradCam

        return LayerGradCam(model, layer), "captum.LayerGradCam + upsample_to_input (trilinear)"
    return GradCAMTube(model, layer), "captum_video GradCAMTube (up-sampled to the clip)"


def run(frames: int, size: int, batch: int, repeats: int, device: torch.device) -> dict[str, Any]:
    """Time base, wrapped and selection-only on one clip size; returns a results dict."""
    from captum_video.models import load_torchvision_model

    model = load_torchvision_model("r3d_18", num_classes=400).to(device).eval()
    # layer3 keeps T / 4 frames: the finest layer that still avoids the coarse-time warning.
    layer = model.layer3
    assert isinstance(layer, nn.Module)
    method, name = wrapped_method(model, layer)
    clip = torch.rand(batch, 3, frames, size, size, device=device)
    target = 0

    def base() -> Tensor:
        attr = method.attribute(clip, target=target)
        if attr.shape[2:] != clip.shape[2:]:  # LayerGradCam gives the layer's resolution
            frames_, height, width = clip.shape[2:]
            attr = upsample_to_input(attr, (frames_, height, width))
        return attr

    selective = SelectiveRelevance(method)

    def wrapped() -> Tensor:
        return selective.attribute(clip, sigma=3.0, target=target)  # type: ignore[return-value]

    base_map = base()

    def selection() -> Tensor:
        return selective_relevance(base_map, sigma=3.0)[0]

    fns: dict[str, Callable[[], Any]] = {"base": base, "wrapped": wrapped}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        timings = interleaved_times(fns, device, repeats)
        timings["selection"] = time_fn(selection, device, repeats=20, warmup=2)
        memory = {"base": peak_memory(base, device), "selection": peak_memory(selection, device)}
    base_s = timings["base"]["median_s"]
    return {
        "wrapped_method": name,
        "model": "torchvision r3d_18 (random weights), layer3",
        "clip": [batch, 3, frames, size, size],
        "device": str(device),
        "timings": timings,
        "peak_memory": memory,
        "selection_over_base": timings["selection"]["median_s"] / base_s,
        "wrapped_over_base": timings["wrapped"]["median_s"] / base_s,
        # Minima are the least disturbed runs on a shared machine.
        "selection_over_base_min": timings["selection"]["min_s"] / timings["base"]["min_s"],
        "wrapped_over_base_min": timings["wrapped"]["min_s"] / timings["base"]["min_s"],
        "target_selection_over_base": 0.05,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; prints the JSON results and returns them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="1 clip of 8x56x56 (default)")
    mode.add_argument("--full", action="store_true", help="1 clip of 16x112x112 (issue size)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", default=None, help="write the JSON here too")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads; 1 avoids thread wake-up latency on an oversubscribed machine",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    frames, size, repeats = (16, 112, 5) if args.full else (8, 56, 3)
    results = run(frames, size, 1, args.repeats or repeats, device)
    results["mode"] = "full" if args.full else "quick"
    return emit("selective", results, args.out)


if __name__ == "__main__":
    main()

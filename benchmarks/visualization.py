"""Rendering relevance to a video file vs computing the relevance, on the same clip.

The issue's bar: writing a 16-frame 112x112 clip to MP4 (normalisation, overlay, original |
overlay side by side, encoding) must take less time than the GradCAMTube attribution of it
on the CPU. Both are timed in one process, so the ratio ``render / attribution`` holds on any
machine; seconds are context only. GradCAMTube runs on torchvision's ``r3d_18`` (random
weights: speed does not depend on them; the usual model at 112x112) and on the bundled
``C3DSmall`` demo model, a tiny network that is the hardest case for the comparison.

Run ``python -m benchmarks.visualization --quick`` (8x56x56, a minute or so on a 2-core CPU)
or ``--full`` (16x112x112), optionally ``--out results/visualization.json``.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from benchmarks._common import emit, time_fn
from captum_video.attr import GradCAMTube
from captum_video.models import load_demo_model, load_torchvision_model
from captum_video.visualization import overlay_frames, write_video


def _models() -> dict[str, tuple[torch.nn.Module, torch.nn.Module]]:
    """name -> (model, layer GradCAMTube reads)."""
    r3d = load_torchvision_model("r3d_18").eval()
    demo = load_demo_model("motion").eval()
    return {"r3d_18": (r3d, r3d.layer4), "demo_c3d_small": (demo, demo.layer3)}


def run(frames: int, size: int, repeats: int) -> dict[str, Any]:
    """Time rendering (MP4, WebM, GIF, pure overlay) and GradCAMTube on one clip.

    Args:
        frames (int): clip length ``T``.
        size (int): clip height and width.
        repeats (int): timed runs per case (after one warm-up).

    Returns:
        dict: timings in seconds and ``render_mp4 / attribution`` ratios per model.

    Example::

        >>> run(frames=4, size=32, repeats=1)["render"]["mp4"]["median_s"] > 0  # doctest: +SKIP
        True
    """
    torch.manual_seed(0)
    clip = torch.rand(1, 3, frames, size, size)
    workdir = Path(tempfile.mkdtemp(prefix="bench_viz_"))
    attributions: dict[str, dict[str, float]] = {}
    attr = None
    for name, (model, layer) in _models().items():
        tube = GradCAMTube(model, layer)
        attributions[name] = time_fn(
            lambda tube=tube: tube.attribute(clip, target=0), repeats=repeats, warmup=1
        )
        if name == "r3d_18":
            attr = tube.attribute(clip, target=0).detach()
    assert attr is not None
    render: dict[str, dict[str, float]] = {
        "overlay_only": time_fn(lambda: overlay_frames(attr[0], clip[0]), repeats=repeats)
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the mp4v "browsers will not play it" warning
        for fmt in ("mp4", "webm", "gif"):
            target = workdir / f"clip.{fmt}"
            render[fmt] = time_fn(
                lambda target=target: write_video(attr[0], target, fps=8, video=clip[0]),
                repeats=repeats,
            )
    ratios = {
        f"render_{fmt}_over_gradcamtube_{name}": render[fmt]["median_s"] / t["median_s"]
        for fmt in ("mp4", "webm", "gif")
        for name, t in attributions.items()
    }
    return {
        "clip": [1, 3, frames, size, size],
        "gradcamtube": attributions,
        "render": render,
        "ratios": ratios,
        "render_mp4_faster_than_gradcamtube": {
            name: ratios[f"render_mp4_over_gradcamtube_{name}"] < 1.0 for name in attributions
        },
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; prints (and optionally writes) the JSON results.

    Args:
        argv (list of str, optional): ``--quick`` (8x56x56, default) or ``--full``
            (16x112x112), ``--repeats N``, ``--out FILE.json``. Default: ``sys.argv``

    Returns:
        dict: the emitted payload.

    Example::

        >>> payload = main(["--quick", "--repeats", "1"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="8x56x56 clip (default)")
    mode.add_argument("--full", action="store_true", help="16x112x112 clip")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    frames, size = (16, 112) if args.full else (8, 56)
    repeats = args.repeats or (5 if args.full else 2)
    results = run(frames, size, repeats)
    return emit("visualization", {"mode": "full" if args.full else "quick", **results}, args.out)


if __name__ == "__main__":
    main()

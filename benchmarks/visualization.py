"""Rendering relevance to a video file vs computing the relevance, on the same clip.

The issue's bar: writing a 16-frame 112x112 clip to MP4 (normalisation, overlay, original |
overlay side by side, encoding) must take less time than the GradCAMTube attribution of it
on the CPU. GradCAMTube runs on torchvision's ``r3d_18`` (random weights: speed does not
depend on them; the usual model at 112x112) and on the bundled ``C3DSmall`` demo model, a
tiny network that is the hardest case for the comparison. Every contender (the two
attributions, the pure overlay, and writing MP4, WebM and GIF) is timed as a whole call, all
together by :func:`~benchmarks._common.interleaved_times`; the ratios ``render / attribution``
are taken round by round (median, min and max over the rounds), so they hold on any machine;
seconds are context only.

Run ``python -m benchmarks.visualization --quick`` (8x56x56, a minute or so on a 2-core CPU)
or ``--full`` (16x112x112), optionally ``--out results/visualization.json``.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks._common import emit, interleaved_times, ratio, video_model
from captum_video.attr import GradCAMTube
from captum_video.models import load_demo_model
from captum_video.visualization import overlay_frames, write_video

FORMATS = ("mp4", "webm", "gif")


def _models() -> dict[str, tuple[torch.nn.Module, torch.nn.Module]]:
    """name -> (model, layer GradCAMTube reads)."""
    r3d = video_model("r3d_18")
    demo = load_demo_model("motion").eval()
    return {"r3d_18": (r3d, r3d.layer4), "demo_c3d_small": (demo, demo.layer3)}


def run(frames: int, size: int, repeats: int) -> dict[str, Any]:
    """Time rendering (MP4, WebM, GIF, pure overlay) and GradCAMTube on one clip.

    Args:
        frames (int): clip length ``T``.
        size (int): clip height and width.
        repeats (int): timed rounds (after one warm-up round).

    Returns:
        dict: timings in seconds and ``render_<format> / attribution`` ratios per model.

    Example::

        >>> run(frames=4, size=32, repeats=1)["render"]["mp4"]["median_s"] > 0  # doctest: +SKIP
        True
    """
    torch.manual_seed(0)
    clip = torch.rand(1, 3, frames, size, size)
    tubes = {name: GradCAMTube(model, layer) for name, (model, layer) in _models().items()}
    attr = tubes["r3d_18"].attribute(clip, target=0).detach()  # the map that is rendered
    fns: dict[str, Callable[[], Any]] = {
        f"gradcamtube_{name}": (lambda tube=tube: tube.attribute(clip, target=0))
        for name, tube in tubes.items()
    }
    fns["overlay_only"] = lambda: overlay_frames(attr[0], clip[0])
    with tempfile.TemporaryDirectory(prefix="bench_viz_") as workdir:
        for fmt in FORMATS:
            target = Path(workdir) / f"clip.{fmt}"
            fns[fmt] = lambda target=target: write_video(attr[0], target, fps=8, video=clip[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the mp4v "browsers will not play it" warning
            times = interleaved_times(fns, "cpu", repeats)
    ratios = {
        f"render_{fmt}_over_gradcamtube_{name}": ratio(times, fmt, f"gradcamtube_{name}")
        for fmt in FORMATS
        for name in tubes
    }
    return {
        "clip": [1, 3, frames, size, size],
        "gradcamtube": {name: times[f"gradcamtube_{name}"] for name in tubes},
        "render": {key: times[key] for key in ("overlay_only", *FORMATS)},
        "ratios": ratios,
        "render_mp4_faster_than_gradcamtube": {
            name: ratios[f"render_mp4_over_gradcamtube_{name}"]["median"] < 1.0 for name in tubes
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
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    frames, size = (16, 112) if args.full else (8, 56)
    repeats = args.repeats or (5 if args.full else 2)
    results = run(frames, size, repeats)
    return emit("visualization", {"mode": "full" if args.full else "quick", **results}, args.out)


if __name__ == "__main__":
    main()

"""Overhead of selective relevance over the attribution method it wraps (issue 5).

The wrapped method is ``GradCAMTube`` on torchvision's ``r3d_18`` (random weights: speed does
not depend on them) at ``layer3``, the finest layer that keeps a quarter of the frames. Four
contenders, timed together by :func:`~benchmarks._common.interleaved_times` on the same clip:

- ``tube``: ``GradCAMTube(model, layer).attribute(clip, target=0)``, the whole call;
- ``selective_tube``: ``SelectiveRelevance(GradCAMTube(model, layer)).attribute(clip,
  sigma=3.0, target=0)``, the whole call (the tube, the checks, the selection);
- ``tube_control``: the ``tube`` call once more, run in the middle of each round like
  ``selective_tube`` (``tube`` runs first or last), as a control;
- ``selection``: :func:`~captum_video.attr.selective_relevance` alone on a tube map computed
  beforehand.

The headline is ``whole_call_over_tube``: ``selective_tube / tube``, round by round (median,
min and max over the rounds; ``*_cpu`` with process CPU time). ``control_over_tube`` is the
same ratio for two identical calls: how far from 1 the headline can be on this machine with
no overhead at all. ``selection_over_tube`` is the selection's own share. Target (issue 5):
whole call < 1.05 x the tube at 16 x 112 x 112.

Run ``python -m benchmarks.selective --quick`` (1 clip of 8 x 56 x 56, well under a minute on
a 2-core CPU) or ``--full`` (16 x 112 x 112, the issue's size), ``--repeats N`` for more
rounds, ``--out FILE.json``.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch import Tensor

from benchmarks._common import emit, interleaved_times, peak_memory, ratio, video_model
from captum_video.attr import GradCAMTube, SelectiveRelevance, selective_relevance


def run(
    frames: int, size: int, repeats: int, device: torch.device, memory: bool = True
) -> dict[str, Any]:
    """Time the tube, the wrapped tube, the control and the selection alone on one clip.

    Args:
        frames (int): clip length ``T``.
        size (int): clip height and width.
        repeats (int): timed rounds (after one warm-up round).
        device (torch.device): where to run.
        memory (bool, optional): also measure the peak memory of each contender but the
            control. Default: True

    Returns:
        dict: timings, round-by-round ratios and peak memory.

    Example::

        >>> run(4, 32, 1, torch.device("cpu"))["whole_call_over_tube"]["median"]  # doctest: +SKIP
        1.01
    """
    torch.manual_seed(0)
    model = video_model("r3d_18", device=device)
    layer = model.layer3
    tube = GradCAMTube(model, layer)
    selective = SelectiveRelevance(GradCAMTube(model, layer))
    clip = torch.rand(1, 3, frames, size, size, device=device)
    tube_map = tube.attribute(clip, target=0)
    assert isinstance(tube_map, Tensor)

    fns = {
        "tube": lambda: tube.attribute(clip, target=0),
        "selective_tube": lambda: selective.attribute(clip, sigma=3.0, target=0),
        "tube_control": lambda: tube.attribute(clip, target=0),
        "selection": lambda: selective_relevance(tube_map, sigma=3.0),
    }
    timings = interleaved_times(fns, device, repeats)
    measured = ("tube", "selective_tube", "selection") if memory else ()
    peaks = {key: peak_memory(fns[key], device) for key in measured}
    return {
        "wrapped_method": "captum_video GradCAMTube (layer3, up-sampled to the clip)",
        "model": "torchvision r3d_18 (random weights)",
        "clip": [1, 3, frames, size, size],
        "device": str(device),
        "timings": timings,
        "peak_memory": peaks,
        "whole_call_over_tube": ratio(timings, "selective_tube", "tube"),
        "whole_call_over_tube_cpu": ratio(timings, "selective_tube", "tube", cpu=True),
        "control_over_tube": ratio(timings, "tube_control", "tube"),
        "control_over_tube_cpu": ratio(timings, "tube_control", "tube", cpu=True),
        "selection_over_tube": ratio(timings, "selection", "tube"),
        "target": "whole_call_over_tube median < 1.05",
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; prints the JSON results and returns them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="1 clip of 8x56x56 (default)")
    mode.add_argument("--full", action="store_true", help="1 clip of 16x112x112 (issue size)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds")
    parser.add_argument("--no-memory", action="store_true", help="skip peak-memory runs")
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
    frames, size, repeats = (16, 112, 10) if args.full else (8, 56, 3)
    results = run(
        frames, size, args.repeats or repeats, torch.device(args.device), not args.no_memory
    )
    return emit("selective", {"mode": "full" if args.full else "quick", **results}, args.out)


if __name__ == "__main__":
    main()

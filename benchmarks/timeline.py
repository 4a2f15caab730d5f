"""Whole-video timelines: peak memory must not grow with the video's length.

A synthetic video (a square moving across a 64 x 64 frame, 30 fps) is explained with
:func:`captum_video.timeline.explain_video` and the demo model at two lengths, each in a fresh
process whose peak resident memory (``ru_maxrss``) is read at the end; the figure that matters
is the ratio of the long video's peak to the short one's (1.0 = independent of length), with
the seconds per frame for context. ``--quick``: 300 and 1200 frames; ``--full``: 300 and 3000.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from typing import Any

from benchmarks._common import emit

_CHILD = r"""
import json, resource, sys, time
import numpy as np
from captum_video.models import load_demo_model
from captum_video.timeline import explain_video
from captum_video.visualization import VideoEncoder

frames, folder = int(sys.argv[1]), sys.argv[2]
path = f"{folder}/video_{frames}.mp4"
with VideoEncoder(path, fps=30) as encoder:
    for t in range(frames):
        frame = np.full((64, 64, 3), 30, np.uint8)
        x = (t * 2) % 52
        frame[24:36, x : x + 12] = (230, 40, 40)
        encoder.write(frame)
start = time.perf_counter()
timeline = explain_video(load_demo_model("motion"), path, "gradcam_tube", f"{folder}/out_{frames}")
seconds = time.perf_counter() - start
print(json.dumps({"frames": timeline.num_frames, "seconds": seconds,
                  "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(frames: int, folder: str) -> dict[str, Any]:
    """Explain a ``frames``-long video in a fresh process; its frames, seconds and peak RSS."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(frames), folder],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; prints and returns the JSON payload.

    Args:
        argv (list of str, optional): ``--quick`` / ``--full``, ``--out FILE``.

    Returns:
        dict: per length its frames, seconds, seconds per frame and peak RSS, and the ratio.
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.timeline")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true")
    size.add_argument("--full", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    lengths = (300, 3000) if args.full else (300, 1200)
    with tempfile.TemporaryDirectory() as folder:
        runs = {str(n): measure(n, folder) for n in lengths}
    for run in runs.values():
        run["seconds_per_frame"] = run["seconds"] / run["frames"]
    short, long = (runs[str(n)] for n in lengths)
    return emit(
        "timeline",
        {
            "model": "demo C3DSmall (motion), 16 x 32 x 32 windows, stride 8",
            "runs": runs,
            "peak_rss_ratio_long_over_short": long["max_rss_mib"] / short["max_rss_mib"],
        },
        args.out,
    )


if __name__ == "__main__":
    main()

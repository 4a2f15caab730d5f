"""``captum-video``: explain a video model from the command line.

``captum-video demo`` runs end to end on the bundled demo model and a synthetic clip, with no
download; ``captum-video explain VIDEOS_OR_FOLDERS --model r3d_18 --weights r3d_18.pt``
explains real videos (any number, in batches, resumable, with an HTML report) with a
torchvision model whose weights are a local file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from captum_video.cli.demo import DEMO_METHODS, run_demo
from captum_video.cli.explain import (
    PER_VIDEO_AUTO_LIMIT,
    count_argument,
    fps_argument,
    run_explain,
    target_argument,
)
from captum_video.cli.influence import add_influence_parser, run_influence
from captum_video.cli.stream import add_stream_parser, run_stream
from captum_video.explainers import EXPLAINERS
from captum_video.registry import NORMALIZATION_PRESETS, model_names, parse_model_name

__all__ = ["build_parser", "main"]

DEFAULT_METHOD = "gradcam_tube"


def model_argument(value: str) -> str:
    """``--model``: a registered name, ``hf:FOLDER`` or ``pytorchvideo:BUILDER``."""
    try:
        scheme, rest = parse_model_name(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if not scheme and rest not in model_names():
        raise argparse.ArgumentTypeError(
            f"unknown model {value!r}; choose one of {model_names()}, 'hf:FOLDER' or "
            "'pytorchvideo:BUILDER'"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``captum-video`` command (sub-commands ``demo``, ``explain``).

    Returns:
        argparse.ArgumentParser: the parser; its help texts are on the documentation's
        command-line page.

    Example::

        >>> build_parser().parse_args(["demo", "--seed", "3"]).seed
        3
    """
    parser = argparse.ArgumentParser(prog="captum-video", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="explain a synthetic clip with the bundled demo model")
    demo.add_argument("--out", default="captum-video-demo", help="output folder")
    demo.add_argument(
        "--method",
        nargs="+",
        default=list(DEMO_METHODS),
        choices=sorted(EXPLAINERS),
        help="one or more methods",
    )
    demo.add_argument("--seed", type=int, default=0, help="which synthetic clip")

    explain = sub.add_parser("explain", help="explain real videos (files or folders)")
    explain.add_argument("videos", nargs="+", help="video files or folders of videos")
    explain.add_argument(
        "--model",
        default="demo",
        type=model_argument,
        help=f"a registered model ({', '.join(model_names())}), 'hf:FOLDER' (a local "
        "save_pretrained folder) or 'pytorchvideo:BUILDER'",
    )
    explain.add_argument("--weights", default=None, help="local state-dict file of the model")
    explain.add_argument(
        "--random-weights",
        action="store_true",
        help="explain a randomly initialised network (models without bundled weights refuse "
        "to run without --weights otherwise)",
    )
    explain.add_argument("--layer", default=None, help="layer of layer methods (a module name)")
    explain.add_argument(
        "--class-names", default=None, help="file of class names (one per line, or JSON)"
    )
    explain.add_argument(
        "--sampling",
        choices=["windows", "spread"],
        default="windows",
        help="windows: explain each video as a timeline of windows of the model's clip length "
        "(default); spread: one clip per video with --clip-frames frames spread over it, "
        "through the resumable data-set pipeline (report, shards)",
    )
    explain.add_argument("--fps", type=fps_argument, default=None, help="read videos at this rate")
    explain.add_argument(
        "--stride",
        type=count_argument(1),
        default=None,
        help="frames between windows (default: half)",
    )
    explain.add_argument("--start", type=float, default=None, help="first second to explain")
    explain.add_argument("--end", type=float, default=None, help="last second to explain")
    explain.add_argument("--num-classes", type=int, default=None)
    explain.add_argument(
        "--method",
        nargs="+",
        default=[DEFAULT_METHOD],
        choices=sorted(EXPLAINERS),
        help="one or more methods",
    )
    explain.add_argument(
        "--target",
        type=target_argument,
        default="prediction",
        help="class to explain: an index, 'prediction' (default) or 'label' (with "
        "--labels-from-folders)",
    )
    explain.add_argument(
        "--labels-from-folders",
        action="store_true",
        help="one folder argument holding one sub-folder of videos per class",
    )
    explain.add_argument("--batch-size", type=count_argument(1), default=8, help="clips per batch")
    explain.add_argument(
        "--shard-size", type=count_argument(1), default=64, help="clips per resumable shard"
    )
    explain.add_argument(
        "--workers", type=count_argument(0), default=0, help="DataLoader decoding workers"
    )
    explain.add_argument("--float16", action="store_true", help="store attributions as float16")
    explain.add_argument(
        "--highlights", type=count_argument(0), default=4, help="clips exported as videos"
    )
    explain.add_argument("--no-report", action="store_true", help="skip the HTML report")
    explain.add_argument("--no-tensorboard", action="store_true", help="skip TensorBoard logs")
    explain.add_argument(
        "--per-video",
        choices=["auto", "always", "never"],
        default="auto",
        help=f"also write <video>.pt/.json per video (auto: up to {PER_VIDEO_AUTO_LIMIT} videos)",
    )
    explain.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh, do not resume (needed when --out holds another run)",
    )
    explain.add_argument(
        "--strict",
        action="store_true",
        help="exit with an error when any video could not be read or explained (default: "
        "list them in --out/failures.json and succeed)",
    )
    explain.add_argument("--quiet", action="store_true", help="no progress bar")
    explain.add_argument(
        "--clip-frames",
        "--frames",
        dest="clip_frames",
        type=count_argument(1),
        default=None,
        help="frames per window or clip (default: the model's clip length)",
    )
    explain.add_argument(
        "--size",
        type=count_argument(1),
        default=None,
        help="frame height and width (default: the model's)",
    )
    explain.add_argument(
        "--normalize",
        default=None,
        choices=sorted(NORMALIZATION_PRESETS),
        help="override the model's normalisation preset",
    )
    explain.add_argument("--out", default="captum-video-explain", help="output folder")
    add_stream_parser(sub, model_argument)
    add_influence_parser(sub, model_argument)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``captum-video`` console script.

    Args:
        argv (sequence of str, optional): arguments (default: ``sys.argv[1:]``).

    Returns:
        int: the exit status (0 on success, 2 on bad input).

    Example::

        >>> main(["demo", "--out", "/tmp/captum-video-demo"])
        0
    """
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            out = Path(args.out).resolve()
            written = run_demo(out, args.method, args.seed)
        elif args.command == "stream":
            out = Path(args.out).resolve()
            written = run_stream(args)
        elif args.command == "influence":
            out = Path(args.out).resolve()
            written = run_influence(args)
        else:
            out = Path(args.out).resolve()
            written = run_explain(args)
    except (OSError, ValueError) as err:
        print(f"captum-video: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} outputs to {out}:")
    for path in written:
        print(f"  {path.relative_to(out)}")
    return 0

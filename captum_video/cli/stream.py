"""``captum-video stream SOURCE``: explain a live stream (a camera, a URL or a file) as it plays."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from captum_video.cli.explain import (
    count_argument,
    fps_argument,
    layer_from_args,
    model_from_args,
    seconds_argument,
    target_argument,
)
from captum_video.explainers import EXPLAINERS
from captum_video.registry import model_names
from captum_video.stream import POLICIES, StreamExplainer, WindowResult

__all__ = ["add_stream_parser", "run_stream"]


def add_stream_parser(sub: Any, model_type: Callable[[str], str]) -> argparse.ArgumentParser:
    """Add the ``stream`` sub-command to the ``captum-video`` parser.

    Args:
        sub: the parser's sub-parsers (``parser.add_subparsers()``).
        model_type (callable): the ``--model`` argument type of the other sub-commands.

    Returns:
        argparse.ArgumentParser: the ``stream`` parser.

    Example::

        >>> parser = argparse.ArgumentParser()
        >>> add_stream_parser(parser.add_subparsers(dest="command"), str)  # doctest: +ELLIPSIS
        ArgumentParser(...)
    """
    stream = sub.add_parser(
        "stream",
        help="explain a live stream (camera index, URL or file) as it plays",
        description="Explain frames as they arrive, a window of the model's clip length every "
        "--stride frames, without falling behind the source; writes overlay.mp4, TensorBoard "
        "steps, windows.jsonl and stream.json to --out. Ctrl-C stops it cleanly.",
    )
    stream.add_argument("source", help="a video file, a camera index (0) or a stream URL")
    stream.add_argument(
        "--model",
        default="demo",
        type=model_type,
        help=f"a registered model ({', '.join(model_names())}), 'hf:FOLDER' or "
        "'pytorchvideo:BUILDER'",
    )
    stream.add_argument("--weights", default=None, help="local state-dict file of the model")
    stream.add_argument(
        "--random-weights",
        action="store_true",
        help="explain a randomly initialised network (models without bundled weights refuse "
        "to run without --weights otherwise)",
    )
    stream.add_argument("--num-classes", type=int, default=None)
    stream.add_argument("--layer", default=None, help="layer of layer methods (a module name)")
    stream.add_argument(
        "--class-names", default=None, help="file of class names (one per line, or JSON)"
    )
    stream.add_argument(
        "--method", default="gradcam_tube", choices=sorted(EXPLAINERS), help="the method"
    )
    stream.add_argument(
        "--target",
        type=target_argument,
        default="prediction",
        help="class to explain: an index or 'prediction' (default)",
    )
    stream.add_argument(
        "--stride",
        type=count_argument(1),
        default=None,
        help="frames between window starts (default: half a window)",
    )
    stream.add_argument(
        "--clip-frames",
        type=count_argument(1),
        default=None,
        help="frames per window (default: the model's clip length)",
    )
    stream.add_argument(
        "--size",
        type=count_argument(1),
        default=None,
        help="frame height and width (default: the model's)",
    )
    stream.add_argument(
        "--policy",
        choices=POLICIES,
        default="skip",
        help="when windows come faster than they are explained: skip (drop the oldest waiting "
        "window, counted) or adapt (grow the stride to the explanation time)",
    )
    stream.add_argument(
        "--realtime",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="play files at their frame rate and keep up with the source (default); "
        "--no-realtime explains every window of a file as fast as possible",
    )
    stream.add_argument("--fps", type=fps_argument, default=None, help="override the file's rate")
    stream.add_argument(
        "--tensorboard-every",
        type=int,
        default=1,
        metavar="K",
        help="log every K-th explained window to TensorBoard (0: none). Default: 1",
    )
    stream.add_argument(
        "--max-windows",
        type=count_argument(1),
        default=None,
        metavar="N",
        help="stop after N explained windows",
    )
    stream.add_argument(
        "--duration",
        type=seconds_argument,
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds of the source",
    )
    stream.add_argument(
        "--overlay-format", choices=[".mp4", ".webm", "none"], default=".mp4", help="video file"
    )
    stream.add_argument("--out", default="captum-video-stream", help="output folder")
    stream.add_argument("--quiet", action="store_true", help="no line per window")
    return stream


def _print_window(result: WindowResult) -> None:
    print(
        f"window {result.window_index} ({result.start_time:.2f}-{result.end_time:.2f} s): "
        f"{result.label!r} p={result.probability:.2f}, latency {result.latency * 1000:.0f} ms",
        flush=True,
    )


def run_stream(args: argparse.Namespace) -> list[Path]:
    """The ``stream`` sub-command: explain ``args.source`` until it ends or Ctrl-C.

    Models load as for ``explain`` (``--weights`` or an explicit ``--random-weights``).
    Ctrl-C ends the stream cleanly: the files written so far are complete and readable.

    Args:
        args (argparse.Namespace): the parsed ``stream`` arguments.

    Returns:
        list of Path: the files and folders written.

    Raises:
        ValueError, OSError: bad input or an unreadable source.

    Example::

        >>> run_stream(build_parser().parse_args(["stream", "0", "--duration", "60"]))
    """
    if args.tensorboard_every < 0:
        raise ValueError(f"--tensorboard-every must be >= 0, got {args.tensorboard_every}")
    if args.target == "label":
        raise ValueError("--target label needs labelled folders; a stream has none")
    model, preset, classes = model_from_args(args)
    layer = layer_from_args(model, args.layer)
    out = Path(args.out).resolve()
    stream = StreamExplainer(
        model,
        args.method,
        out,
        layer=layer,
        clip_frames=args.clip_frames,
        stride=args.stride,
        size=(args.size, args.size) if args.size else None,
        policy=args.policy,
        target=args.target,
        preprocess=preset,
        class_names=classes,
        tensorboard_every=args.tensorboard_every,
        overlay_format=None if args.overlay_format == "none" else args.overlay_format,
        max_windows=args.max_windows,
        duration=args.duration,
        on_window=None if args.quiet else _print_window,
    )
    try:
        summary = stream.explain(args.source, realtime=args.realtime, fps=args.fps)
    except KeyboardInterrupt:
        summary = stream.summary  # type: ignore[assignment]
        if summary is None:
            raise
        print("interrupted: the stream stopped cleanly", file=sys.stderr)
    latency = summary.latency_s
    print(
        f"{summary.source}: {summary.windows_explained} windows explained, "
        f"{summary.windows_skipped} skipped ({summary.policy}, "
        f"{'real time' if summary.realtime else 'every window'}), stride {summary.stride}"
        + (f"->{summary.stride_max}" if summary.stride_max != summary.stride else "")
        + (
            f"; latency p50 {latency['p50'] * 1000:.0f} ms, p95 {latency['p95'] * 1000:.0f} ms"
            if latency.get("p50") is not None
            else ""
        )
        + f"; stopped by {summary.stopped_by}"
    )
    return [Path(p) for p in summary.files.values()]

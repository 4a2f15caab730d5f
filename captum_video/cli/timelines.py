"""``captum-video explain`` with ``--sampling windows`` (the default): every video as a timeline."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from captum_video.timeline import VideoTimeline, explain_video
from captum_video.video_folder import VIDEO_SUFFIXES

__all__ = ["run_timelines", "video_files"]


def video_files(paths: Sequence[str]) -> list[Path]:
    """The video files among ``paths``: files as given, folders searched recursively.

    Args:
        paths (sequence of str): files and folders.

    Returns:
        list of Path: the files, folders' contents sorted.

    Example::

        >>> video_files(["clips/"])
        [PosixPath('clips/a.mp4'), PosixPath('clips/b.mp4')]
    """
    found: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            inside = sorted(p for p in item.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
            if not inside:
                raise ValueError(
                    f"folder {item} holds no video files ({', '.join(sorted(VIDEO_SUFFIXES))})"
                )
            found += inside
        elif item.exists():
            found.append(item)
        else:
            raise FileNotFoundError(f"video file not found: {item}")
    return found


def _summary(timeline: VideoTimeline) -> str:
    """One line: windows, the predicted classes in order, the peak and the scene cuts."""
    track: list[str] = []
    for window in timeline.windows:
        if not track or track[-1] != window["label"]:
            track.append(window["label"])
    shown = " -> ".join(repr(t) for t in track[:8]) + (" ..." if len(track) > 8 else "")
    cuts = [round(timeline.frame_times[c], 2) for c in timeline.scene_cuts]
    duration = timeline.frame_times[-1] - timeline.frame_times[0]
    return (
        f"{Path(timeline.video).name}: {timeline.num_frames} frames ({duration:.1f} s at "
        f"{timeline.fps:g} fps), {len(timeline.windows)} windows of {timeline.clip_frames}; "
        f"predicted {shown}; most relevance at {timeline.peak_time():.2f} s"
        + (f"; scene cuts at {cuts} s" if cuts else "")
    )


def run_timelines(
    args: argparse.Namespace,
    model: nn.Module,
    preset: str,
    classes: Sequence[str] | None,
    layer: nn.Module | None,
) -> list[Path]:
    """Explain each video of ``args.videos`` as a timeline into ``--out`` (one folder each).

    A single video is written to ``--out`` itself; several go to ``--out/<video name>/``. A
    video that cannot be read or explained is reported and the others are explained; the
    command fails only with ``--strict`` or when every video failed.

    Args:
        args (argparse.Namespace): the parsed ``explain`` arguments.
        model (nn.Module): the model.
        preset (str): its normalisation preset (``--normalize`` overrides it).
        classes (sequence of str or None): class names.
        layer (nn.Module or None): ``--layer``.

    Returns:
        list of Path: the files written.

    Example::

        >>> run_timelines(args, model, "kinetics", names, None)
    """
    if len(args.method) != 1:
        raise ValueError("--sampling windows explains with one --method at a time")
    if args.target == "label":
        raise ValueError("--target label needs --sampling spread with --labels-from-folders")
    out = Path(args.out).resolve()
    videos = video_files(args.videos)
    written: list[Path] = []
    failures: list[dict[str, str]] = []
    for video in videos:
        folder = out if len(videos) == 1 else out / video.stem
        try:
            timeline = explain_video(
                model,
                video,
                args.method[0],
                folder,
                layer=layer,
                fps=args.fps,
                clip_frames=args.clip_frames,
                stride=args.stride,
                start=args.start,
                end=args.end,
                size=(args.size, args.size) if args.size else None,
                batch_size=args.batch_size,
                target=args.target,
                preprocess=args.normalize or preset,
                class_names=classes,
                progress=not args.quiet,
            )
        except (OSError, ValueError, RuntimeError) as err:
            failures.append({"video": str(video), "error": f"{type(err).__name__}: {err}"})
            print(f"{video.name}: failed: {err}", file=sys.stderr)
            continue
        print(_summary(timeline))
        written += [Path(p) for p in timeline.files.values()]
    if failures:
        out.mkdir(parents=True, exist_ok=True)
        (out / "failures.json").write_text(json.dumps(failures, indent=2))
        print(f"finished with {len(failures)} failures (see {out / 'failures.json'})")
        if args.strict or len(failures) == len(videos):
            raise ValueError(f"{len(failures)} of {len(videos)} videos failed")
        written.append(out / "failures.json")
    return written

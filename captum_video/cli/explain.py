"""``captum-video explain``: explain real videos (files or folders) with a registered model."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from captum_video.pipeline import DatasetExplanation, explain_dataset
from captum_video.registry import class_names_of, input_size_of, load_model, normalization_of
from captum_video.video_folder import VideoFolder

__all__ = ["PER_VIDEO_AUTO_LIMIT", "run_explain", "target_argument"]


def _model_from_args(args: argparse.Namespace) -> tuple[nn.Module, str, Sequence[str] | None]:
    model = load_model(args.model, args.weights, num_classes=args.num_classes)
    return model, normalization_of(model), class_names_of(model)


#: Up to this many videos, ``explain --per-video auto`` also writes one .pt/.json per video.
PER_VIDEO_AUTO_LIMIT = 32


def target_argument(value: str) -> int | str:
    """``--target``: a class index, ``prediction`` or ``label``."""
    if value in ("prediction", "label"):
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a class index, 'prediction' or 'label', got {value!r}"
        ) from None


def _write_per_video(
    out: Path,
    data: VideoFolder,
    run: DatasetExplanation,
    classes: Sequence[str] | None,
    model_name: str,
) -> list[Path]:
    """One ``<stem>.pt`` (clip + relevance) and ``<stem>.json`` per video, as for single files."""

    def label(i: int) -> str:
        return classes[i] if classes and 0 <= i < len(classes) else str(i)

    methods = run.summary["methods"]
    written: list[Path] = []
    for record in run.records():
        index = record["index"]
        path = data.paths[index]
        clip = data[index]
        clip = clip[0] if isinstance(clip, tuple) else clip
        relevances = {m: run.attribution(index, m) for m in methods}
        info = {
            "method": methods[0],
            "methods": methods,
            "target": record["target"],
            "target_label": label(record["target"]),
            "prediction": record["prediction"],
            "prediction_label": label(record["prediction"]),
            "probability": record["probability"],
            "temporal_sensitivity": record["temporal_sensitivity"],
            "video": str(path),
            "model": model_name,
        }
        tensor_path = out / f"{path.stem}.pt"
        torch.save(
            {"video": clip, "relevance": relevances[methods[0]], "relevances": relevances, **info},
            tensor_path,
        )
        metrics = {m: record["methods"][m] for m in methods}
        summary = {
            **info,
            "relevance_per_frame": metrics[methods[0]]["curve"],
            "per_method": metrics,
        }
        (out / f"{path.stem}.json").write_text(json.dumps(summary, indent=2))
        written += [tensor_path, out / f"{path.stem}.json"]
    return written


def run_explain(args: argparse.Namespace) -> list[Path]:
    """The ``explain`` sub-command: explain videos (files or folders) with explain_dataset.

    The videos are read one clip each (``--frames`` frames spread over the video), explained
    in batches with every ``--method``, and written to ``--out`` as resumable shards with a
    summary, a per-clip table, an HTML report, TensorBoard logs and videos of a few clips
    (see :func:`captum_video.pipeline.explain_dataset`); rerunning the same command resumes.
    With few videos (``--per-video auto``) each also gets a ``.pt`` and a ``.json``.
    """
    model, preset, classes = _model_from_args(args)
    frames, height, width = input_size_of(model)
    size = (args.size, args.size) if args.size is not None else (height, width)
    frames = args.frames if args.frames is not None else frames
    if args.normalize is not None:
        preset = args.normalize
    out = Path(args.out).resolve()
    data = VideoFolder(
        args.videos if len(args.videos) > 1 else args.videos[0],
        num_frames=frames,
        size=size,
        labels_from_folders=args.labels_from_folders,
    )
    if data.classes is not None and classes is None:
        classes = data.classes
    run = explain_dataset(
        model,
        data,
        args.method,
        out,
        batch_size=args.batch_size,
        shard_size=args.shard_size,
        num_workers=args.workers,
        target=args.target,
        preprocess=None if preset == "none" else preset,
        float16=args.float16,
        class_names=classes,
        highlights=args.highlights,
        tensorboard=not args.no_tensorboard,
        report=not args.no_report,
        progress=not args.quiet,
        overwrite=args.overwrite,
        fingerprint=json.dumps({"model": args.model, "weights": args.weights}),
    )
    written = list(run.files) + [out / "run.json", out / "shards"]
    if not args.no_tensorboard:
        written.append(out / "tensorboard")
    if args.per_video == "always" or (
        args.per_video == "auto" and len(data) <= PER_VIDEO_AUTO_LIMIT
    ):
        written += _write_per_video(out, data, run, classes, args.model)
    for record in run.records()[:PER_VIDEO_AUTO_LIMIT]:
        name = classes[record["prediction"]] if classes else str(record["prediction"])
        print(f"{record['name']}: prediction {name!r} (p={record['probability']:.3f})")
    verdict = run.summary.get("reliance")
    print(
        f"explained {run.summary['num_clips']} videos with {', '.join(run.summary['methods'])} "
        f"({run.computed_clips} computed now, {run.skipped_clips} resumed)"
        + (
            f"; the model decides mainly from {verdict}"
            if verdict in ("motion", "appearance")
            else ""
        )
    )
    if run.report is not None:
        print(f"report: {run.report}")
    return written

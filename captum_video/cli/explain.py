"""``captum-video explain``: explain real videos (files or folders) with a registered model."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from captum_video._scalars import validate_fps
from captum_video.cli.timelines import run_timelines
from captum_video.pipeline import DatasetExplanation, explain_dataset
from captum_video.pipeline.identity import ConfigurationChanged
from captum_video.pipeline.lock import OutDirInUse
from captum_video.registry import (
    class_names_of,
    input_size_of,
    load_model,
    needs_weights_file,
    normalization_of,
)
from captum_video.video_folder import VideoFolder

__all__ = [
    "PER_VIDEO_AUTO_LIMIT",
    "count_argument",
    "fps_argument",
    "seconds_argument",
    "layer_from_args",
    "model_from_args",
    "read_class_names",
    "run_explain",
    "target_argument",
]


def model_from_args(args: argparse.Namespace) -> tuple[nn.Module, str, Sequence[str] | None]:
    """The model, its normalisation preset and class names, from ``--model`` and friends.

    Args:
        args (argparse.Namespace): parsed ``--model``, ``--weights``, ``--random-weights``,
            ``--num-classes`` and ``--class-names``.

    Returns:
        tuple: ``(model, normalisation preset, class names or None)``.

    Raises:
        ValueError: a model without bundled weights and neither ``--weights`` nor
            ``--random-weights`` (nothing is explained with random weights silently).

    Example::

        >>> model, preset, names = model_from_args(build_parser().parse_args(["explain", "x"]))
    """
    if args.weights is None and not args.random_weights and needs_weights_file(args.model):
        raise ValueError(
            f"--model {args.model} needs --weights FILE (a local state dict: nothing is "
            "downloaded); without it the network has random weights and explains nothing. "
            "Pass --random-weights to explain a randomly initialised network on purpose"
        )
    if args.weights is not None and args.random_weights:
        raise ValueError("give either --weights or --random-weights, not both")
    model = load_model(args.model, args.weights, num_classes=args.num_classes)
    classes = class_names_of(model)
    if args.class_names is not None:
        classes = read_class_names(args.class_names)
    return model, normalization_of(model), classes


def read_class_names(path: str | Path) -> list[str]:
    """``--class-names FILE``: one name per line, or a JSON list (or index -> name object).

    Args:
        path (str or Path): the file.

    Returns:
        list of str: the names, in the order of the model's outputs.

    Example::

        >>> Path("/tmp/names.txt").write_text("walk\nrun\n")
        10
        >>> read_class_names("/tmp/names.txt")
        ['walk', 'run']
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--class-names: no such file: {file}")
    text = file.read_text()
    if file.suffix.lower() == ".json":
        loaded = json.loads(text)
        if isinstance(loaded, dict):
            loaded = [loaded[k] for k in sorted(loaded, key=int)]
        if not isinstance(loaded, list):
            raise ValueError(f"--class-names {file}: expected a JSON list of names")
        return [str(n) for n in loaded]
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ValueError(f"--class-names {file} holds no names")
    return names


def layer_from_args(model: nn.Module, name: str | None) -> nn.Module | None:
    """``--layer NAME``: the model's module of that name (None without ``--layer``).

    Args:
        model (nn.Module): the model.
        name (str or None): a dotted module name.

    Returns:
        nn.Module or None: the layer.

    Example::

        >>> layer_from_args(model, "layer3") is model.layer3
        True
    """
    if name is None:
        return None
    try:
        return model.get_submodule(name)
    except AttributeError:
        known = [n for n, _ in model.named_modules() if n and n.count(".") < 2][:30]
        raise ValueError(
            f"--layer {name!r} is not a module of the model; some are: {known}"
        ) from None


#: Up to this many videos, ``explain --per-video auto`` also writes one .pt/.json per video.
PER_VIDEO_AUTO_LIMIT = 32


def count_argument(minimum: int) -> Callable[[str], int]:
    """An argparse type: an int >= ``minimum`` (sizes, strides, counts).

    Args:
        minimum (int): the smallest value accepted.

    Returns:
        callable: ``str -> int``, raising ``argparse.ArgumentTypeError`` otherwise.

    Example::

        >>> count_argument(1)("8")
        8
    """

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {number}")
        return number

    parse.__name__ = "int"  # argparse names the type in its messages
    return parse


def fps_argument(value: str) -> float:
    """An argparse type for ``--fps``: a finite frame rate > 0.

    Args:
        value (str): the command-line text.

    Returns:
        float: the frame rate, raising ``argparse.ArgumentTypeError`` otherwise.

    Example::

        >>> fps_argument("12.5")
        12.5
    """
    try:
        return validate_fps(float(value), "--fps")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def seconds_argument(value: str) -> float:
    """An argparse type for a duration: a number of seconds > 0.

    Args:
        value (str): the command-line text.

    Returns:
        float: the seconds, raising ``argparse.ArgumentTypeError`` otherwise.

    Example::

        >>> seconds_argument("2.5")
        2.5
    """
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {value}")
    return seconds


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
    """The ``explain`` sub-command: explain videos (files or folders).

    With ``--sampling windows`` (the default) every video is explained as a timeline of
    windows of the model's clip length (:func:`captum_video.timeline.explain_video`, see
    :func:`captum_video.cli.timelines.run_timelines`). With ``--sampling spread`` the videos
    are read one clip each (``--clip-frames`` frames spread over the video), explained
    in batches with every ``--method``, and written to ``--out`` as resumable shards with a
    summary, a per-clip table, an HTML report, TensorBoard logs and videos of a few clips
    (see :func:`captum_video.pipeline.explain_dataset`); rerunning the same command resumes.
    With few videos (``--per-video auto``) each also gets a ``.pt`` and a ``.json``.

    A video that cannot be read or explained is recorded in ``--out/failures.json`` and the
    others are explained; the command says how many failed and succeeds unless ``--strict``
    is given. A rerun tries only the failed videos again. Results of another model, weights,
    method or set of videos in ``--out`` are refused unless ``--overwrite`` is given.

    Args:
        args (argparse.Namespace): the parsed ``explain`` arguments.

    Returns:
        list of Path: the files and folders written.

    Raises:
        ValueError: bad input, ``--out`` holding another run or in use by another process,
            every video failing, or (with ``--strict``) any video failing.

    Example::

        >>> run_explain(build_parser().parse_args(["explain", "videos/", "--out", "out"]))
    """
    model, preset, classes = model_from_args(args)
    layer = layer_from_args(model, args.layer)
    if args.size is not None and args.size < 1:
        raise ValueError(f"--size must be a positive number of pixels, got {args.size}")
    if args.sampling == "windows":
        return run_timelines(args, model, preset, classes, layer)
    frames, height, width = input_size_of(model)
    size = (args.size, args.size) if args.size is not None else (height, width)
    frames = args.clip_frames if args.clip_frames is not None else frames
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
    try:
        run = explain_dataset(
            model,
            data,
            args.method,
            out,
            batch_size=args.batch_size,
            shard_size=args.shard_size,
            layer=layer,
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
            # The weights count through their hash (model_sha256), not their file's path.
            fingerprint=json.dumps({"model": args.model}),
        )
    except ConfigurationChanged as err:
        raise err.with_option("--overwrite") from None
    except OutDirInUse as err:
        raise ValueError(str(err)) from None
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
    evidence = run.summary.get("verdict") or {}
    print(
        f"explained {run.summary['num_clips']} videos with {', '.join(run.summary['methods'])} "
        f"({run.computed_clips} computed now, {run.skipped_clips} resumed)"
    )
    if evidence.get("verdict"):
        print(f"motion or appearance: {evidence['verdict']} ({evidence['reason']})")
    if run.report is not None:
        print(f"report: {run.report}")
    if run.failures:
        where = Path(args.out) / "failures.json"
        print(f"finished with {len(run.failures)} failures (see {where})")
        for failure in run.failures[:PER_VIDEO_AUTO_LIMIT]:
            print(f"  {failure['name']} ({failure['stage']}): {failure['message']}")
        if args.strict:
            raise ValueError(f"{len(run.failures)} videos failed and --strict was given")
    return written

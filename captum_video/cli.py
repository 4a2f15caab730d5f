"""``captum-video``: explain a video model from the command line.

``captum-video demo`` runs end to end on the bundled demo model and a synthetic clip, with no
download; ``captum-video explain VIDEOS_OR_FOLDERS --model r3d_18 --weights r3d_18.pt``
explains real videos (any number, in batches, resumable, with an HTML report) with a
torchvision model whose weights are a local file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from captum_video.datasets import MovingShapes
from captum_video.explainers import EXPLAINERS, make_explainer, predict
from captum_video.models import demo_model_info, load_demo_model
from captum_video.pipeline import DatasetExplanation, explain_dataset
from captum_video.registry import (
    NORMALIZATION_PRESETS,
    class_names_of,
    input_size_of,
    load_model,
    model_names,
    normalization_of,
)
from captum_video.relevance import reduce_channels, relevance_per_frame
from captum_video.video_folder import VIDEO_SUFFIXES as _SUFFIXES
from captum_video.video_folder import VideoFolder

DEFAULT_METHOD = "gradcam_tube"
VIDEO_SUFFIXES = set(_SUFFIXES)


def _write_outputs(
    out: Path,
    name: str,
    video: Tensor,
    relevance: Tensor,
    info: dict[str, Any],
) -> list[Path]:
    """Save one explained clip: its relevance tensor and a JSON summary."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    tensor_path = out / f"{name}.pt"
    torch.save({"video": video.cpu(), "relevance": relevance.cpu(), **info}, tensor_path)
    written.append(tensor_path)
    summary = out / f"{name}.json"
    curve = relevance_per_frame(relevance[None])[0]
    summary.write_text(json.dumps({**info, "relevance_per_frame": curve.tolist()}, indent=2))
    written.append(summary)
    return written


def _explain_and_write(
    model: nn.Module,
    clip: Tensor,
    model_input: Tensor,
    method: str,
    target: int | None,
    classes: Sequence[str] | None,
    out: Path,
    name: str,
    extra: dict[str, Any],
) -> tuple[list[Path], dict[str, Any]]:
    pred, prob = predict(model, model_input[None])
    tgt = int(pred) if target is None else target
    explain = make_explainer(method, model)
    start = time.perf_counter()
    relevance = reduce_channels(explain(model_input[None], torch.tensor([tgt])))[0]
    seconds = time.perf_counter() - start

    def label(i: int) -> str:
        return classes[i] if classes and 0 <= i < len(classes) else str(i)

    info = {
        "method": method,
        "target": tgt,
        "target_label": label(tgt),
        "prediction": int(pred),
        "prediction_label": label(int(pred)),
        "probability": float(prob),
        "seconds": seconds,
        **extra,
    }
    written = _write_outputs(out, name, clip, relevance, info)
    return written, info


DEMO_METHODS = ("gradcam_tube", "selective_gradcam_tube", "deep_taylor")


def run_demo(out: Path, methods: Sequence[str] = DEMO_METHODS, seed: int = 0) -> list[Path]:
    """Explain one synthetic clip with the bundled demo model and write the results.

    For each method it writes the relevance tensor and a JSON summary, a browser-playable
    ``.webm`` (original | overlay) and a ``.png`` frame grid; it also splits deep Taylor
    relevance into spatial and temporal parts and logs everything for the TensorBoard
    plugin under ``out/tensorboard``.

    Args:
        out (Path): output folder (created).
        methods (sequence of str, optional): names from
            :data:`captum_video.explainers.EXPLAINERS`. Default: :data:`DEMO_METHODS`
        seed (int, optional): which synthetic clip. Default: 0

    Returns:
        list of Path: the files written.

    Example::

        >>> files = run_demo(Path("/tmp/captum-video-demo"))
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torch.utils.tensorboard import SummaryWriter

    from captum_video.attr import DeepTaylor3D, SpatioTemporalSplit
    from captum_video.tensorboard import add_relevance_clip
    from captum_video.visualization import visualize_video_attr, write_video

    model = load_demo_model("motion")
    accuracy = demo_model_info("motion")["val_accuracy"]
    data = MovingShapes("motion", num_samples=1, seed=10_000 + seed)
    clip, label, _ = data[0]
    print(
        "model: bundled demo C3DSmall trained on MovingShapes('motion') "
        f"(held-out accuracy {accuracy:.3f})"
    )
    print(
        f"clip: synthetic MovingShapes('motion') clip {tuple(clip.shape)} (C, T, H, W), "
        f"true class {data.classes[label]!r}"
    )
    with torch.no_grad():
        logits = model(clip[None])[0]
    written: list[Path] = []
    with SummaryWriter(str(out / "tensorboard")) as writer:
        for method in methods:
            files, info = _explain_and_write(
                model,
                clip,
                clip,
                method,
                None,
                data.classes,
                out,
                f"demo_{method}",
                {"true_label": data.classes[label], "source": "MovingShapes('motion')"},
            )
            relevance = torch.load(files[0], weights_only=False)["relevance"]
            written += files
            written.append(
                write_video(relevance, out / f"demo_{method}.webm", fps=8, video=clip, scale=4)
            )
            fig, _ = visualize_video_attr(
                relevance,
                clip,
                frames=8,
                use_pyplot=False,
                title=f"{method}: target {info['target_label']!r}",
            )
            fig.savefig(out / f"demo_{method}.png", dpi=80)
            plt.close(fig)
            written.append(out / f"demo_{method}.png")
            add_relevance_clip(
                writer,
                f"demo/{method}",
                clip,
                relevance,
                target=info["target"],
                prediction=logits,
                method=method,
                class_names=data.classes,
            )
            print(
                f"{method}: prediction {info['prediction_label']!r} "
                f"(p={info['probability']:.3f}), explained target {info['target_label']!r} "
                f"in {info['seconds']:.2f}s"
            )
        split = SpatioTemporalSplit(DeepTaylor3D(model)).attribute(
            clip[None], target=int(logits.argmax())
        )
        add_relevance_clip(
            writer,
            "demo/deep_taylor_split",
            clip,
            split,
            target=int(logits.argmax()),
            prediction=logits,
            method="SpatioTemporalSplit(DeepTaylor3D)",
            class_names=data.classes,
        )
        # Rescaled to the joint total, the temporal part moves relevance: what it adds
        # (its positive part) is the share of the clip's relevance that is there for motion.
        moved = float(split.temporal.clamp(min=0).sum()) / max(
            float(split.joint.abs().sum()), 1e-12
        )
        print(
            f"deep Taylor spatio-temporal split: motion moves {moved:.0%} of the clip's "
            "relevance (the positive temporal part)"
        )
    written.append(out / "tensorboard")
    print(
        f"view in TensorBoard: tensorboard --logdir {out / 'tensorboard'}  (tab 'Relevance Video')"
    )
    return written


def _model_from_args(args: argparse.Namespace) -> tuple[nn.Module, str, Sequence[str] | None]:
    model = load_model(args.model, args.weights, num_classes=args.num_classes)
    return model, normalization_of(model), class_names_of(model)


#: Up to this many videos, ``explain --per-video auto`` also writes one .pt/.json per video.
PER_VIDEO_AUTO_LIMIT = 32


def _target(value: str) -> int | str:
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


def build_parser() -> argparse.ArgumentParser:
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
        choices=model_names(),
    )
    explain.add_argument("--weights", default=None, help="local state-dict file of the model")
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
        type=_target,
        default="prediction",
        help="class to explain: an index, 'prediction' (default) or 'label' (with "
        "--labels-from-folders)",
    )
    explain.add_argument(
        "--labels-from-folders",
        action="store_true",
        help="one folder argument holding one sub-folder of videos per class",
    )
    explain.add_argument("--batch-size", type=int, default=8, help="clips per batch")
    explain.add_argument("--shard-size", type=int, default=64, help="clips per resumable shard")
    explain.add_argument("--workers", type=int, default=0, help="DataLoader decoding workers")
    explain.add_argument("--float16", action="store_true", help="store attributions as float16")
    explain.add_argument("--highlights", type=int, default=4, help="clips exported as videos")
    explain.add_argument("--no-report", action="store_true", help="skip the HTML report")
    explain.add_argument("--no-tensorboard", action="store_true", help="skip TensorBoard logs")
    explain.add_argument(
        "--per-video",
        choices=["auto", "always", "never"],
        default="auto",
        help=f"also write <video>.pt/.json per video (auto: up to {PER_VIDEO_AUTO_LIMIT} videos)",
    )
    explain.add_argument("--overwrite", action="store_true", help="start afresh, do not resume")
    explain.add_argument("--quiet", action="store_true", help="no progress bar")
    explain.add_argument(
        "--frames", type=int, default=None, help="frames per clip (default: the model's)"
    )
    explain.add_argument(
        "--size", type=int, default=None, help="frame height and width (default: the model's)"
    )
    explain.add_argument(
        "--normalize",
        default=None,
        choices=sorted(NORMALIZATION_PRESETS),
        help="override the model's normalisation preset",
    )
    explain.add_argument("--out", default="captum-video-explain", help="output folder")
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
        else:
            out = Path(args.out).resolve()
            written = run_explain(args)
    except (FileNotFoundError, ValueError, IsADirectoryError) as err:
        print(f"captum-video: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} outputs to {out}:")
    for path in written:
        print(f"  {path.relative_to(out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``captum-video influence VIDEOS --train FOLDER --checkpoints DIR``: explanation by example.

For each test video, the training clips that most supported (proponents) and most opposed
(opponents) the model's decision, by TracIn over the checkpoints saved during training
(:class:`~captum_video.influence.VideoTracIn`), written as a video grid (and a PNG film
strip) per test video, with the indices, files and scores in ``influence.json``; with
``--self-influence``, the training clips ranked by self-influence (the likeliest
mislabelled first) in ``self_influence.json``. ``--method fast_rand_proj`` computes the
training clips' last-layer gradients once (randomly projected to ``--projection-dim``
numbers per checkpoint, if given) and answers each test video by an exact nearest-neighbour
search over them: the same clips and scores as ``--method fast`` without a projection, and no
pass over the training set per test video.

With ``--method similarity`` no checkpoints are needed: the training clips nearest to and
farthest from each test video in the model's representation
(:class:`~captum_video.influence.VideoSimilarityInfluence`, ``--metric``, ``--layer``), for
the weights of ``--weights`` (or the model's bundled ones).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from captum_video.cli.explain import count_argument, layer_from_args, model_from_args
from captum_video.influence import (
    METHODS,
    METRICS,
    CheckpointLoader,
    InfluentialClips,
    VideoSimilarityInfluence,
    VideoTracIn,
    find_checkpoints,
    render_influence,
)
from captum_video.io import normalize_video, read_video
from captum_video.registry import input_size_of, model_names, needs_weights_file
from captum_video.video_folder import VideoFolder

__all__ = ["CLI_METHODS", "add_influence_parser", "run_influence"]

#: ``--method`` values: TracIn's (fast, full, fast_rand_proj) and similarity.
CLI_METHODS = (*METHODS, "similarity")


def add_influence_parser(sub: Any, model_type: Callable[[str], str]) -> argparse.ArgumentParser:
    """Add the ``influence`` sub-command to the ``captum-video`` parser.

    Args:
        sub: the parser's sub-parsers (``parser.add_subparsers()``).
        model_type (callable): the ``--model`` argument type of the other sub-commands.

    Returns:
        argparse.ArgumentParser: the ``influence`` parser.

    Example::

        >>> parser = argparse.ArgumentParser()
        >>> add_influence_parser(parser.add_subparsers(dest="command"), str)  # doctest: +ELLIPSIS
        ArgumentParser(...)
    """
    parser = sub.add_parser(
        "influence",
        help="the training clips that most supported or opposed a decision (TracIn), or "
        "that the model sees as most alike (--method similarity)",
        description="Explanation by example: for each test video, the training clips whose "
        "gradient steps most lowered (proponents) or raised (opponents) the loss of the "
        "model's decision, summed over checkpoints saved during training (TracIn, Pruthi et "
        "al. 2020); with --method similarity, the training clips nearest to and farthest from "
        "it in the model's representation (no checkpoints needed). Writes <video>.mp4 and "
        "<video>.png grids and influence.json to --out.",
    )
    parser.add_argument("videos", nargs="+", help="test video files")
    parser.add_argument(
        "--train",
        required=True,
        help="the training videos: a folder with one sub-folder of videos per class",
    )
    parser.add_argument(
        "--checkpoints",
        default=None,
        help="a folder of checkpoints saved during training (one per epoch, say; sorted by "
        "name), or one checkpoint file; required by TracIn (--method fast, full or "
        "fast_rand_proj), not by --method similarity",
    )
    parser.add_argument(
        "--model",
        default="demo",
        type=model_type,
        help=f"a registered model ({', '.join(model_names())}), 'hf:FOLDER' or "
        "'pytorchvideo:BUILDER'; the checkpoints' weights are loaded into it",
    )
    parser.add_argument(
        "--weights",
        default=None,
        help="the final weights, whose decisions are explained (default: the last checkpoint; "
        "with --method similarity, the model's bundled weights)",
    )
    parser.add_argument("--num-classes", type=int, default=None)
    parser.add_argument(
        "--class-names", default=None, help="file of class names (default: the folder names)"
    )
    parser.add_argument(
        "--method",
        choices=CLI_METHODS,
        default="fast",
        help="TracIn variant (fast: last layer; full: all parameters; fast_rand_proj: the "
        "last layer's gradients of the training clips computed once, then a nearest-neighbour "
        "search per test video), or similarity (nearest training clips in the model's "
        "representation)",
    )
    parser.add_argument(
        "--projection-dim",
        type=count_argument(1),
        default=None,
        help="with --method fast_rand_proj: project each training clip's gradients at random "
        "to at most this many numbers per checkpoint (less memory, approximate scores; "
        "default: exact)",
    )
    parser.add_argument(
        "--metric",
        choices=METRICS,
        default=None,
        help="with --method similarity: cosine similarity (default) or Euclidean distance",
    )
    parser.add_argument(
        "--layer",
        default=None,
        help="with --method similarity: the dotted name of the layer compared (default: the "
        "input of the classifier head)",
    )
    parser.add_argument(
        "--k",
        type=count_argument(1),
        default=4,
        help="proponents and opponents (most and least similar clips) to show",
    )
    parser.add_argument("--frames", type=count_argument(1), default=None, help="frames per clip")
    parser.add_argument(
        "--size", type=count_argument(1), default=None, help="frame height and width"
    )
    parser.add_argument(
        "--batch-size", type=count_argument(1), default=32, help="training clips per batch"
    )
    parser.add_argument(
        "--self-influence",
        action="store_true",
        help="also rank the training clips by self-influence (likely mislabelled first)",
    )
    parser.add_argument("--fps", type=float, default=4.0, help="frame rate of the grid videos")
    parser.add_argument("--out", default="captum-video-influence", help="output folder")
    return parser


class _Normalized(nn.Module):
    """The model behind its input normalisation, so that it takes clips in ``[0, 1]`` (the
    clips influence shows and reads from the training folder)."""

    def __init__(self, model: nn.Module, preset: str) -> None:
        super().__init__()
        self.model = model
        self.preset = preset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(normalize_video(x, self.preset))


def _normalized(model: nn.Module, preset: str) -> nn.Module:
    return model if preset == "none" else _Normalized(model, preset)


def _check_method_arguments(args: argparse.Namespace) -> None:
    """The arguments that belong to one ``--method`` only, named when they come with another."""
    if args.method == "similarity":
        if getattr(args, "projection_dim", None) is not None:
            raise ValueError("--projection-dim is for --method fast_rand_proj, not similarity")
        if args.checkpoints is not None:
            raise ValueError(
                "--checkpoints is for TracIn (--method fast, full or fast_rand_proj); "
                "--method similarity "
                "compares the representations of one set of weights (--weights, or the "
                "model's bundled ones) and needs no checkpoints"
            )
        if args.self_influence:
            raise ValueError(
                "--self-influence is TracIn's (--method fast, full or fast_rand_proj); "
                "--method similarity has no self-influence"
            )
        return
    if args.checkpoints is None:
        raise ValueError(
            f"--checkpoints is required with --method {args.method}: TracIn replays the "
            "weights saved during training (save them with "
            "captum_video.models.training.fit_classifier(..., checkpoint_dir=DIR)); "
            "--method similarity needs none"
        )
    for name in ("metric", "layer"):
        if getattr(args, name, None) is not None:
            raise ValueError(f"--{name} is for --method similarity, not --method {args.method}")
    if getattr(args, "projection_dim", None) is not None and args.method != "fast_rand_proj":
        raise ValueError(
            f"--projection-dim is for --method fast_rand_proj, not --method {args.method}"
        )


def _rows(result: InfluentialClips, train: VideoFolder) -> list[dict[str, Any]]:
    return [
        {
            "index": int(i),
            "file": str(train.paths[int(i)]),
            "label": int(label),
            "score": float(score),
        }
        for i, label, score in zip(
            result.indices[0], result.train_labels[0], result.scores[0], strict=True
        )
    ]


def run_influence(args: argparse.Namespace) -> list[Path]:
    """The ``influence`` sub-command.

    Args:
        args (argparse.Namespace): the parsed ``influence`` arguments.

    Returns:
        list of Path: the files written.

    Raises:
        ValueError, OSError: bad input (no checkpoints for TracIn, an unlabelled training
        folder, an unreadable video, an option of another method), each message naming the
        argument.

    Example::

        >>> run_influence(build_parser().parse_args(
        ...     ["influence", "test.mp4", "--train", "train/", "--checkpoints", "ckpts/"]))
        >>> run_influence(build_parser().parse_args(
        ...     ["influence", "test.mp4", "--train", "train/", "--method", "similarity"]))
    """
    if not Path(args.train).is_dir():
        raise ValueError(f"--train {args.train}: expected a folder with one sub-folder per class")
    _check_method_arguments(args)
    similarity = args.method == "similarity"
    checkpoints = [] if similarity else find_checkpoints(args.checkpoints, "--checkpoints")
    if similarity and args.weights is None and needs_weights_file(args.model):
        raise ValueError(
            f"--method similarity with --model {args.model} needs --weights FILE (a local "
            "state dict: nothing is downloaded); random weights represent nothing"
        )
    # For TracIn the checkpoints replace every weight, so a model without bundled weights
    # needs no --weights; without it, the decisions explained are those of the last checkpoint.
    args.random_weights = args.weights is None and not similarity
    raw, preset, classes = model_from_args(args)
    model = _normalized(raw.eval(), preset)
    if args.weights is None and not similarity:
        CheckpointLoader(cache=False)(model, checkpoints[-1])
    frames, height, width = input_size_of(raw, (16, 112, 112))
    frames = args.frames or frames
    size = (args.size, args.size) if args.size else (height, width)
    train = VideoFolder(args.train, num_frames=frames, size=size, labels_from_folders=True)
    classes = classes if args.class_names else (train.classes or classes)
    explainer: VideoTracIn | VideoSimilarityInfluence
    if similarity:
        explainer = VideoSimilarityInfluence(
            model,
            train,
            layer=layer_from_args(raw, args.layer),
            metric=args.metric or "cosine",
            batch_size=args.batch_size,
        )
        keys = ("most_similar", "least_similar")
        method = "similarity"
        find = (explainer.most_similar, explainer.least_similar)
    else:
        explainer = VideoTracIn(
            model,
            train,
            checkpoints,
            method=args.method,
            batch_size=args.batch_size,
            projection_dim=getattr(args, "projection_dim", None),
        )
        keys = ("proponents", "opponents")
        method = f"TracIn ({args.method})"
        find = (explainer.proponents, explainer.opponents)
    k = min(args.k, len(train))
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    summary: list[dict[str, Any]] = []
    try:
        for video in args.videos:
            clip = read_video(video, num_frames=frames, size=size).unsqueeze(0)
            pro, opp = find[0](clip, k=k), find[1](clip, k=k)
            stem = Path(video).stem
            for suffix in (".mp4", ".png"):
                path = out / f"{stem}{suffix}"
                render_influence(
                    clip[0], train, pro, opp, class_names=classes, path=path, fps=args.fps
                )
                written.append(path)
            summary.append(
                {
                    "video": str(video),
                    "decision": int(pro.targets[0]),
                    keys[0]: _rows(pro, train),
                    keys[1]: _rows(opp, train),
                }
            )
    finally:
        if isinstance(explainer, VideoSimilarityInfluence):
            explainer.close()
    meta: dict[str, Any] = {"method": method}
    if isinstance(explainer, VideoTracIn):
        meta["checkpoints"] = explainer.checkpoints
        if args.method == "fast_rand_proj":
            meta["projection_dim"] = getattr(args, "projection_dim", None)
    else:
        meta |= {"metric": explainer.metric, "layer": explainer.layer, "weights": args.weights}
    meta |= {"classes": list(classes) if classes else None, "videos": summary}
    (out / "influence.json").write_text(json.dumps(meta, indent=2))
    written.append(out / "influence.json")
    if args.self_influence and isinstance(explainer, VideoTracIn):
        scores = explainer.self_influence()
        order = scores.argsort(descending=True)
        ranked = [
            {"index": int(i), "file": str(train.paths[int(i)]), "score": float(scores[i])}
            for i in order
        ]
        (out / "self_influence.json").write_text(json.dumps(ranked, indent=2))
        written.append(out / "self_influence.json")
    return written

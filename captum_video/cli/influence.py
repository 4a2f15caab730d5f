"""``captum-video influence VIDEOS --train FOLDER --checkpoints DIR``: explanation by example.

For each test video, the training clips that most supported (proponents) and most opposed
(opponents) the model's decision, by TracIn over the checkpoints saved during training
(:class:`~captum_video.influence.VideoTracIn`), written as a video grid (and a PNG film
strip) per test video, with the indices, files and scores in ``influence.json``; with
``--self-influence``, the training clips ranked by self-influence (the likeliest
mislabelled first) in ``self_influence.json``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from captum_video.cli.explain import count_argument, model_from_args
from captum_video.influence import (
    METHODS,
    CheckpointLoader,
    VideoTracIn,
    find_checkpoints,
    render_influence,
)
from captum_video.io import normalize_video, read_video
from captum_video.registry import input_size_of, model_names
from captum_video.video_folder import VideoFolder

__all__ = ["add_influence_parser", "run_influence"]


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
        help="the training clips that most supported or opposed a decision (TracIn)",
        description="Explanation by example: for each test video, the training clips whose "
        "gradient steps most lowered (proponents) or raised (opponents) the loss of the "
        "model's decision, summed over checkpoints saved during training (TracIn, Pruthi et "
        "al. 2020). Writes <video>.mp4 and <video>.png grids and influence.json to --out.",
    )
    parser.add_argument("videos", nargs="+", help="test video files")
    parser.add_argument(
        "--train",
        required=True,
        help="the training videos: a folder with one sub-folder of videos per class",
    )
    parser.add_argument(
        "--checkpoints",
        required=True,
        help="a folder of checkpoints saved during training (one per epoch, say; sorted by "
        "name), or one checkpoint file",
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
        help="the final weights, whose decisions are explained (default: the last checkpoint)",
    )
    parser.add_argument("--num-classes", type=int, default=None)
    parser.add_argument(
        "--class-names", default=None, help="file of class names (default: the folder names)"
    )
    parser.add_argument("--method", choices=METHODS, default="fast", help="TracIn variant")
    parser.add_argument(
        "--k", type=count_argument(1), default=4, help="proponents and opponents to show"
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


def run_influence(args: argparse.Namespace) -> list[Path]:
    """The ``influence`` sub-command.

    Args:
        args (argparse.Namespace): the parsed ``influence`` arguments.

    Returns:
        list of Path: the files written.

    Raises:
        ValueError, OSError: bad input (no checkpoints, an unlabelled training folder, an
        unreadable video), each message naming the argument.

    Example::

        >>> run_influence(build_parser().parse_args(
        ...     ["influence", "test.mp4", "--train", "train/", "--checkpoints", "ckpts/"]))
    """
    if not Path(args.train).is_dir():
        raise ValueError(f"--train {args.train}: expected a folder with one sub-folder per class")
    checkpoints = find_checkpoints(args.checkpoints, "--checkpoints")
    # The checkpoints replace every weight, so a model without bundled weights needs no
    # --weights; without it, the decisions explained are those of the last checkpoint.
    args.random_weights = args.weights is None
    raw, preset, classes = model_from_args(args)
    model = _normalized(raw.eval(), preset)
    if args.weights is None:
        CheckpointLoader(cache=False)(model, checkpoints[-1])
    frames, height, width = input_size_of(raw, (16, 112, 112))
    frames = args.frames or frames
    size = (args.size, args.size) if args.size else (height, width)
    train = VideoFolder(args.train, num_frames=frames, size=size, labels_from_folders=True)
    classes = classes if args.class_names else (train.classes or classes)
    tracin = VideoTracIn(
        model,
        train,
        checkpoints,
        method=args.method,
        batch_size=args.batch_size,
    )
    k = min(args.k, len(train))
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    summary: list[dict[str, Any]] = []
    for video in args.videos:
        clip = read_video(video, num_frames=frames, size=size).unsqueeze(0)
        pro, opp = tracin.proponents(clip, k=k), tracin.opponents(clip, k=k)
        stem = Path(video).stem
        for suffix in (".mp4", ".png"):
            path = out / f"{stem}{suffix}"
            render_influence(clip[0], train, pro, opp, class_names=classes, path=path, fps=args.fps)
            written.append(path)

        def rows(result: Any) -> list[dict[str, Any]]:
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

        summary.append(
            {
                "video": str(video),
                "decision": int(pro.targets[0]),
                "proponents": rows(pro),
                "opponents": rows(opp),
            }
        )
    meta = {
        "method": f"TracIn ({args.method})",
        "checkpoints": tracin.checkpoints,
        "classes": list(classes) if classes else None,
        "videos": summary,
    }
    (out / "influence.json").write_text(json.dumps(meta, indent=2))
    written.append(out / "influence.json")
    if args.self_influence:
        scores = tracin.self_influence()
        order = scores.argsort(descending=True)
        ranked = [
            {"index": int(i), "file": str(train.paths[int(i)]), "score": float(scores[i])}
            for i in order
        ]
        (out / "self_influence.json").write_text(json.dumps(ranked, indent=2))
        written.append(out / "self_influence.json")
    return written

"""TracIn and similarity over video clips against a forward + backward pass over the training set.

Explanation by example reads every training clip at every checkpoint, so its natural unit of
cost is one pass of gradient computation over the training set. Per model, every contender
is timed as a whole call by :func:`~benchmarks._common.interleaved_times`, on the same model,
training clips and checkpoints:

* ``train_forward_backward``: forward + backward of the cross-entropy over all training
  clips, in batches of ``--batch`` (parameter gradients: what one epoch of training
  computes, without the optimiser step). This is the baseline of every ratio;
* ``proponents_fast`` / ``opponents_fast``: :meth:`VideoTracIn.proponents` of one test clip
  (Captum's TracInCPFast: last-layer gradients), ``k = 5``;
* ``proponents_fast_batch``: the same for ``--test-batch`` test clips in one call (the
  ratio is reported per test clip as well);
* ``self_influence_fast``: the self-influence of every training clip;
* ``rand_proj_setup``: building a ``VideoTracIn(method="fast_rand_proj")`` (Captum's
  TracInCPFastRandProj with :class:`~captum_video.influence.ExactNearestNeighbors`): the
  last-layer gradients of every training clip at every checkpoint, computed once and kept;
  ``rand_proj_setup_projected`` the same with ``projection_dim = --projection-dim``;
* ``proponents_rand_proj`` / ``opponents_rand_proj`` / ``proponents_rand_proj_batch``: its
  queries, ``k = 5`` (the test clips' gradients at every checkpoint and an exact
  maximum-inner-product search over the stored ones: no pass over the training set);
  ``proponents_rand_proj_projected`` against the projected embeddings. A query's ratio to
  ``proponents_fast`` says how many queries pay for the set-up (``rand_proj_break_even``);
* ``proponents_full``: TracInCP over all parameters (per-clip gradients, one backward per
  clip), with ``--full-method`` only: it costs about a per-clip backward for every training
  clip, test clip and checkpoint;
* ``similarity_store``: building a :class:`VideoSimilarityInfluence` (Captum's
  SimilarityInfluence over the classifier head's input, cosine): copying and hashing the
  model, one forward pass over the training set, its activations written to a fresh
  temporary folder (and removed again): paid once per model and training set;
* ``similarity_query`` / ``similarity_query_batch``: :meth:`most_similar` of one test clip
  / of ``--test-batch`` test clips, ``k = 5``, against that store (every stored file is read
  back from disk per query, as Captum does).

Ratios are round by round against ``train_forward_backward`` (median, min, max), also with
process CPU time (``*_cpu``), and per checkpoint (divided by the number of checkpoints).
Weights are random (speed does not depend on them); the checkpoints are perturbed copies.

Run ``python -m benchmarks.influence --quick`` (the demo C3D, 64 clips of 16x32x32,
3 checkpoints) or ``--full`` (r3d_18, 64 clips of 16x112x112, 5 checkpoints, meant for a
GPU), ``--out FILE.json``.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from benchmarks._common import emit, interleaved_times, ratio, video_model
from captum_video.influence import VideoSimilarityInfluence, VideoTracIn
from captum_video.models import C3DSmall

BASELINE = "train_forward_backward"


def train_forward_backward(
    model: nn.Module, clips: Tensor, labels: Tensor, batch: int
) -> Callable[[], None]:
    """Forward + backward of the loss over all training clips (gradients w.r.t. parameters)."""

    def run() -> None:
        for start in range(0, len(clips), batch):
            loss = nn.functional.cross_entropy(
                model(clips[start : start + batch]), labels[start : start + batch]
            )
            loss.backward()
        model.zero_grad(set_to_none=True)

    return run


def similarity_store(
    model: nn.Module, clips: Tensor, labels: Tensor, batch: int
) -> Callable[[], None]:
    """Build a similarity store from scratch (a new temporary folder) and remove it."""

    def run() -> None:
        VideoSimilarityInfluence(model, (clips, labels), batch_size=batch).close()

    return run


def _checkpoints(model: nn.Module, folder: Path, count: int) -> list[Path]:
    paths = []
    gen = torch.Generator().manual_seed(0)
    for i in range(count):
        state = {
            k: v + 0.01 * torch.randn(v.shape, generator=gen).to(v) if v.is_floating_point() else v
            for k, v in model.state_dict().items()
        }
        path = folder / f"epoch_{i + 1:03d}.pt"
        torch.save({"state_dict": state, "learning_rate": 1e-3}, path)
        paths.append(path)
    return paths


def bench_case(
    name: str,
    model: nn.Module,
    num_train: int,
    frames: int,
    size: int,
    batch: int,
    test_batch: int,
    num_checkpoints: int,
    device: torch.device,
    repeats: int,
    full_method: bool,
    projection_dim: int = 64,
) -> dict[str, Any]:
    """Time every contender for one model; returns times and ratios."""
    torch.manual_seed(0)
    clips = torch.rand(num_train, 3, frames, size, size, device=device)
    with torch.no_grad():
        num_classes = model(clips[:1]).shape[1]
    labels = torch.randint(num_classes, (num_train,), device=device)
    test = torch.rand(test_batch, 3, frames, size, size, device=device)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _checkpoints(model, folder, num_checkpoints)
        fast = VideoTracIn(model, (clips, labels), folder, batch_size=batch)
        fns: dict[str, Callable[[], Any]] = {
            BASELINE: train_forward_backward(model, clips, labels, batch),
            "proponents_fast": lambda: fast.proponents(test[:1], k=5),
            "opponents_fast": lambda: fast.opponents(test[:1], k=5),
            "proponents_fast_batch": lambda: fast.proponents(test, k=5),
            "self_influence_fast": lambda: fast.self_influence(),
        }

        def rand_proj(**extra: Any) -> VideoTracIn:
            return VideoTracIn(
                model, (clips, labels), folder, method="fast_rand_proj", batch_size=batch, **extra
            )

        exact, projected = rand_proj(), rand_proj(projection_dim=projection_dim)
        fns |= {
            "rand_proj_setup": rand_proj,
            "rand_proj_setup_projected": lambda: rand_proj(projection_dim=projection_dim),
            "proponents_rand_proj": lambda: exact.proponents(test[:1], k=5),
            "opponents_rand_proj": lambda: exact.opponents(test[:1], k=5),
            "proponents_rand_proj_batch": lambda: exact.proponents(test, k=5),
            "proponents_rand_proj_projected": lambda: projected.proponents(test[:1], k=5),
        }
        similar = VideoSimilarityInfluence(model, (clips, labels), batch_size=batch)
        fns["similarity_store"] = similarity_store(model, clips, labels, batch)
        fns["similarity_query"] = lambda: similar.most_similar(test[:1], k=5)
        fns["similarity_query_batch"] = lambda: similar.most_similar(test, k=5)
        if full_method:
            full = VideoTracIn(model, (clips, labels), folder, method="full", batch_size=batch)
            fns["proponents_full"] = lambda: full.proponents(test[:1], k=5)
        times = interleaved_times(fns, device, repeats)
        similar.close()
    ratios = {key: ratio(times, key, BASELINE) for key in fns if key != BASELINE}
    ratios_cpu = {key: ratio(times, key, BASELINE, cpu=True) for key in fns if key != BASELINE}
    per_clip = ratios["proponents_fast_batch"]["median"] / test_batch
    similarity_per_clip = ratios["similarity_query_batch"]["median"] / test_batch
    rand_proj_per_clip = ratios["proponents_rand_proj_batch"]["median"] / test_batch
    # Queries of one test clip after which building the store has paid for itself: set-up /
    # (what a fast query costs - what a rand-proj query costs).
    saved = ratios["proponents_fast"]["median"] - ratios["proponents_rand_proj"]["median"]
    break_even = ratios["rand_proj_setup"]["median"] / saved if saved > 0 else float("inf")
    stored = exact._captum.src_intermediate_quantities
    stored_projected = projected._captum.src_intermediate_quantities
    return {
        "model": name,
        "train_clips": num_train,
        "clip": [3, frames, size, size],
        "batch": batch,
        "test_batch": test_batch,
        "checkpoints": num_checkpoints,
        "times": {
            k: {f: v[f] for f in ("median_s", "min_s", "median_cpu_s")} for k, v in times.items()
        },
        "ratio_to_train_forward_backward": ratios,
        "ratio_to_train_forward_backward_cpu": ratios_cpu,
        "per_checkpoint": {
            k: v["median"] / num_checkpoints for k, v in ratios.items() if "similarity" not in k
        },
        "proponents_fast_batch_per_test_clip": per_clip,
        "similarity_query_batch_per_test_clip": similarity_per_clip,
        "proponents_rand_proj_batch_per_test_clip": rand_proj_per_clip,
        "rand_proj_break_even_queries": break_even,
        "rand_proj_embedding": {
            "exact_numbers_per_clip": stored.shape[1],
            "projected_numbers_per_clip": stored_projected.shape[1],
            "projection_dim": projection_dim,
            "exact_mib": stored.numel() * stored.element_size() / 2**20,
        },
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print JSON.

    Args:
        argv (list of str, optional): command-line arguments; ``--quick`` (the demo C3D,
            16x32x32), ``--full`` (r3d_18, 16x112x112), ``--device``, ``--repeats``,
            ``--train-clips``, ``--checkpoints``, ``--full-method``, ``--projection-dim``,
            ``--out FILE.json``.

    Returns:
        dict: the emitted payload.

    Example::

        >>> payload = main(["--quick", "--repeats", "1"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="demo C3D, 16x32x32 (default)")
    mode.add_argument("--full", action="store_true", help="r3d_18, 16x112x112")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds")
    parser.add_argument("--train-clips", type=int, default=None)
    parser.add_argument("--checkpoints", type=int, default=None)
    parser.add_argument("--full-method", action="store_true", help="also time TracInCP")
    parser.add_argument(
        "--projection-dim", type=int, default=64, help="projection_dim of the projected rand-proj"
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.full:
        name, model = "r3d_18", video_model("r3d_18", num_classes=400, device=device)
        frames, size, num_train, batch, ckpts, repeats = 16, 112, 64, 16, 5, 3
    else:
        name, model = "C3DSmall", C3DSmall().eval().to(device)
        frames, size, num_train, batch, ckpts, repeats = 16, 32, 64, 32, 3, 3
    case = bench_case(
        name,
        model,
        args.train_clips or num_train,
        frames,
        size,
        batch,
        8,
        args.checkpoints or ckpts,
        device,
        args.repeats or repeats,
        args.full_method,
        args.projection_dim,
    )
    return emit("influence", {"mode": "full" if args.full else "quick", "cases": [case]}, args.out)


if __name__ == "__main__":
    main()

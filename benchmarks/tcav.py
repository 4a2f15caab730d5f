"""VideoTCAV vs Captum's TCAV: time, peak memory and files written, on the same concepts,
layers and clips (torchvision r3d_18 with random weights, at reduced size).

Three pipelines run from scratch (no cached activations or CAVs) on identical inputs:

* ``captum_tcav``: ``captum.concept.TCAV`` with its default sklearn ``DefaultClassifier``;
  it saves every batch of activations and every CAV under ``save_path``;
* ``captum_tcav_torch_classifier``: the same with :class:`TorchLinearClassifier`, to separate
  the classifier's share from the pipeline's;
* ``video_tcav``: :class:`captum_video.concept.VideoTCAV` (activations in memory, all layers'
  gradients in one backward pass, CAVs trained in the Gram domain), writing nothing.

``video_tcav`` and ``captum_tcav_torch_classifier`` train identical CAVs, so their scores must
agree (``max_score_diff``). Each pipeline runs once untimed (its scores, the files it writes,
the entries it leaves in the working directory); then all three are timed as whole calls
together by :func:`~benchmarks._common.interleaved_times`, and ``speedup_vs_captum`` is
``captum_tcav / pipeline`` round by round (median, min and max over the rounds).

Run ``python -m benchmarks.tcav --quick`` (8x32x32 clips) or ``--full`` (16x112x112).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from collections.abc import Callable
from typing import Any

import torch
from captum.concept import TCAV
from torch import nn

from benchmarks._common import emit, interleaved_times, peak_memory, ratio, video_model
from captum_video.concept import TorchLinearClassifier, VideoConcept, VideoTCAV


def _files_under(path: str) -> int:
    return sum(len(files) for _, _, files in os.walk(path))


def make_case(
    frames: int,
    size: int,
    n_clips: int,
    n_random: int,
    n_inputs: int,
    batch: int,
    seed: int = 0,
    model: nn.Module | None = None,
) -> dict[str, Any]:
    """Model, concepts, experimental sets and inputs shared by all pipelines.

    The model is r3d_18 with random weights and 4 classes unless ``model`` is given.
    """
    g = torch.Generator().manual_seed(seed)
    shape = (3, frames, size, size)
    ramp = torch.linspace(0, 1, frames).view(1, 1, -1, 1, 1)
    concept = VideoConcept(
        0,
        "brightening",
        batch_size=batch,
        clips=0.5 * torch.rand(n_clips, *shape, generator=g) + 0.5 * ramp,
    )
    randoms = [
        VideoConcept(
            100 + i,
            f"random{i}",
            kind="random",
            batch_size=batch,
            clips=torch.rand(n_clips, *shape, generator=g),
        )
        for i in range(n_random)
    ]
    if model is None:
        torch.manual_seed(seed)
        model = video_model("r3d_18", num_classes=4)
    return {
        "model": model,
        "sets": VideoTCAV.experimental_sets([concept], randoms),
        "inputs": torch.rand(n_inputs, *shape, generator=g),
    }


def pipelines(case: dict[str, Any], layers: list[str], workdir: str) -> dict[str, Callable]:
    """Zero-argument callables running each pipeline from scratch; each returns its scores."""
    model, sets, inputs = case["model"], case["sets"], case["inputs"]
    counter = {"n": 0}

    def fresh_dir() -> str:
        counter["n"] += 1
        return os.path.join(workdir, f"run{counter['n']}")

    def captum(classifier_factory: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tcav = TCAV(model, layers, classifier=classifier_factory(), save_path=fresh_dir())
                return tcav.interpret(inputs, sets, target=0)

        return run

    def video() -> Any:
        return VideoTCAV(model, layers, batch_size=len(inputs)).interpret(inputs, sets, target=0)

    def sklearn_classifier() -> Any:
        from captum.concept._utils.classifier import DefaultClassifier

        return DefaultClassifier()

    return {
        "captum_tcav": captum(sklearn_classifier),
        "captum_tcav_torch_classifier": captum(TorchLinearClassifier),
        "video_tcav": video,
    }


def run(
    config: dict[str, int],
    layers: list[str],
    repeats: int,
    memory: bool,
    model: nn.Module | None = None,
) -> dict[str, Any]:
    """Run the three pipelines on one case; returns their timings, files and score agreement.

    Args:
        config (dict): the sizes, keyword arguments of :func:`make_case`.
        layers (list of str): the layers to explain.
        repeats (int): timed rounds (after one warm-up round).
        memory (bool): also measure each pipeline's peak memory.
        model (nn.Module, optional): the model; default r3d_18 with random weights and 4
            classes. Default: None

    Returns:
        dict: the results part of the JSON.
    """
    case = make_case(**config, model=model)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as workdir:
        runs = pipelines(case, layers, workdir)
        scores = {}
        for name, fn in runs.items():  # untimed: what each run returns and leaves behind
            before, cwd_before = _files_under(workdir), set(os.listdir("."))
            scores[name] = fn()
            results[name] = {
                "files_written_per_run": _files_under(workdir) - before,
                "new_entries_in_cwd": sorted(set(os.listdir(".")) - cwd_before),
            }
        timings = interleaved_times(runs, "cpu", repeats)
        for name, fn in runs.items():
            results[name].update(timings[name])
            results[name]["speedup_vs_captum"] = ratio(timings, "captum_tcav", name)
            if memory:
                results[name].update(peak_memory(fn, "cpu"))
    base = results["captum_tcav"]
    for entry in results.values():
        if "peak_mib" in entry and entry["peak_mib"] > 0:
            entry["memory_ratio_vs_captum"] = entry["peak_mib"] / max(base["peak_mib"], 1e-9)
    diff = max(
        float(
            (
                scores["video_tcav"][k][layer]["sign_count"]
                - scores["captum_tcav_torch_classifier"][k][layer]["sign_count"]
            )
            .abs()
            .max()
        )
        for k in scores["video_tcav"]
        for layer in layers
    )
    return {
        "model": "r3d_18 (random weights, 4 classes)" if model is None else type(model).__name__,
        "layers": layers,
        **config,
        "num_experimental_sets": len(case["sets"]),
        "max_score_diff_video_vs_captum_same_classifier": diff,
        "results": results,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print (and optionally save) JSON.

    Args:
        argv (list of str, optional): ``--quick`` (8x32x32 clips, 2 layers, 2 random sets) or
            ``--full`` (16x112x112, 3 layers, 5 random sets), ``--repeats``, ``--no-memory``,
            ``--out FILE``.

    Returns:
        dict: the emitted payload.

    Example::

        >>> payload = main(["--quick", "--repeats", "1"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="8x32x32 clips (default)")
    mode.add_argument("--full", action="store_true", help="16x112x112 clips")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds")
    parser.add_argument("--no-memory", action="store_true", help="skip peak-memory runs")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.full:
        config = {
            "frames": 16,
            "size": 112,
            "n_clips": 20,
            "n_random": 5,
            "n_inputs": 16,
            "batch": 4,
        }
        layers = ["layer2", "layer3", "layer4"]
    else:
        config = {"frames": 8, "size": 32, "n_clips": 8, "n_random": 2, "n_inputs": 4, "batch": 4}
        layers = ["layer3", "layer4"]
    results = run(config, layers, args.repeats or 3, memory=not args.no_memory)
    return emit("tcav", {"mode": "full" if args.full else "quick", **results}, args.out)


if __name__ == "__main__":
    main()

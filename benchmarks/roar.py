"""ROAR / KAR benchmark: which explanation removes (keeps) what a retrained model needs?

Every method of the registry (:data:`captum_video.explainers.EXPLAINERS`) plus a random map
explains :class:`~captum_video.datasets.MovingShapes` ``"motion"`` clips with the bundled demo
C3DSmall, which was trained on the *unmodified* data: the training clips are the first clips
of its own training set (data-set seed 0), the test clips the first of its validation set
(seed 1). Then, for every ``k`` in 10, 30, 50, 70, 90 %,
:func:`captum_video.metrics.roar.remove_and_retrain` replaces the top ``k`` % of each clip's
voxels by the clip's per-channel mean (ROAR) or keeps only them (KAR), retrains a fresh
C3DSmall on the modified training clips and measures its accuracy on the modified test clips
(Hooker, Erhan, Kindermans and Kim 2019). A method *beats the random map* at a ``k`` when its
ROAR accuracy is lower (its KAR accuracy higher) than the random map's by more than the
spread over retraining seeds. A leakage control retrains on each ROAR mask alone (1 where a
voxel was replaced, no pixel of the clip): where that learns the task, the shape of the
removed region gives the label away (Rong et al. 2022).

Retraining is :func:`captum_video.models.training.fit_classifier`, the recipe of the demo
models (Adam with weight decay 1e-4 and a one-cycle schedule), on fewer clips and steps, so
that the whole sweep (hundreds of retrainings) fits on one CPU core. The retrained network is
by default :func:`retrain_net`, a C3D-style network as deep as the demo C3DSmall whose
convolutions stride instead of pooling and carry BatchNorm: it learns the task from 128 clips
in about a second of CPU time, where C3DSmall needs over ten times the steps and still stalls
at chance for some seeds (measured while choosing the defaults: 128 clips x 6 epochs gave
held-out accuracies 0.99, 0.73 and 0.27 for three seeds). ``--arch c3d_small`` retrains the
demo architecture itself. The unmodified reference (nothing removed) is retrained with the
same budget.

Timing: :func:`~captum_video.metrics.roar.ablate_top` on a batch of clips as a ratio to a
forward + backward of C3DSmall on the same batch (interleaved rounds), plus the wall seconds
of each method's maps and of the retrainings.

Run ``python -m benchmarks.roar --quick`` (< 60 s: two methods, k = 10 %, tiny data) or
``python -m benchmarks.roar`` (every method, five k, two seeds plus a third at 10 %, and the
mask-only leakage control: 489 retrainings, 16 min with one CPU thread); results go to
``benchmarks/results/roar.json`` and ``roar.md``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from benchmarks._common import emit, interleaved_times, ratio
from captum_video.datasets import MovingShapes
from captum_video.explainers import EXPLAINERS, build_method, make_explainer
from captum_video.metrics.roar import RoarResult, ablate_top, remove_and_retrain
from captum_video.models import C3DSmall, load_demo_model
from captum_video.models.training import fit_classifier

RESULTS_DIR = Path(__file__).with_name("results")
RANDOM = "random map"
#: The three rows that come out of one spatio-temporal split call.
SPLIT_ROWS = ("deep_taylor_motion", "deep_taylor_temporal", "deep_taylor_spatial")
CHECK_FRACTION = 0.1


@dataclass
class Settings:
    """Sizes of one run (:data:`QUICK` and :data:`DEFAULT` are the presets).

    Args:
        num_train (int): training clips (the first of the demo model's training set).
        num_test (int): test clips (the first of its validation set).
        epochs (int): retraining passes over the training clips.
        batch_size (int): clips per retraining step.
        lr (float): peak Adam learning rate of the one-cycle schedule.
        fractions (tuple of float): the ``k``.
        seeds (tuple of int): retraining seeds at every ``k``.
        check_seeds (tuple of int): further seeds at ``k = 10 %`` only (the check).
        methods (tuple of str, optional): registry names; None means all.
        overrides (dict): ``attribute`` keywords per method, for cost.
        map_batch (int): clips per explainer call.
        arch (str): the retrained network, ``"fast"`` (:func:`retrain_net`) or
            ``"c3d_small"`` (the demo C3DSmall).

    Returns:
        A plain dataclass.

    Example::

        >>> tiny = Settings(num_train=16, num_test=8, epochs=1, methods=("saliency",))
    """

    num_train: int = 128
    num_test: int = 96
    epochs: int = 4
    batch_size: int = 8
    lr: float = 1e-2
    fractions: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    seeds: tuple[int, ...] = (0, 1)
    check_seeds: tuple[int, ...] = (2,)
    methods: tuple[str, ...] | None = None
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    map_batch: int = 32
    arch: str = "fast"


_OCCLUSION = {"sliding_window_shapes": (3, 4, 16, 16), "strides": (3, 4, 8, 8)}
#: Registry settings lowered for cost (the registry's own: occlusion strides 3 x 2 x 8 x 8,
#: 63 occluded copies per clip; TemporalMask 100 Adam iterations).
COST_OVERRIDES: dict[str, dict[str, Any]] = {
    "occlusion": _OCCLUSION,
    "selective_occlusion": _OCCLUSION,
    "temporal_mask": {"n_iter": 30},
}
QUICK = Settings(
    num_train=96,
    num_test=32,
    epochs=4,
    fractions=(0.1,),
    seeds=(0,),
    check_seeds=(),
    methods=("saliency", "deep_taylor"),
)
DEFAULT = Settings(overrides=COST_OVERRIDES)


def retrain_net(num_classes: int = 4) -> nn.Module:
    """The network retrained at every ``k``: C3DSmall's depth and widths (8, 16, 32), with
    strided 3x3x3 convolutions instead of max pooling and BatchNorm after each, so that it
    trains in few steps on a CPU (it sees every voxel: the first stride is spatial only).

    Args:
        num_classes (int, optional): outputs. Default: 4

    Returns:
        nn.Module: a fresh network for ``(N, 3, T, H, W)`` clips.

    Example::

        >>> retrain_net()(torch.rand(2, 3, 16, 32, 32)).shape
        torch.Size([2, 4])
    """

    def block(cin: int, cout: int, stride: tuple[int, int, int]) -> list[nn.Module]:
        conv = nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False)
        return [conv, nn.BatchNorm3d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(3, 8, (1, 2, 2)),
        *block(8, 16, (2, 2, 2)),
        *block(16, 32, (2, 2, 2)),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(1),
        nn.Linear(32, num_classes),
    )


def fit(settings: Settings) -> Callable[[nn.Module, Tensor, Tensor, int], Any]:
    """:func:`~captum_video.models.training.fit_classifier` (the demo models' recipe: Adam,
    weight decay 1e-4, one-cycle schedule) at this run's size, as a ``train_fn``."""
    s = settings
    return lambda model, clips, labels, seed: fit_classifier(
        model, clips, labels, epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, seed=seed
    )


def compute_maps(
    names: Sequence[str], model: nn.Module, clips: Tensor, labels: Tensor, settings: Settings
) -> tuple[dict[str, Tensor], dict[str, float]]:
    """One map per clip for every method (and the random map), and seconds per method.

    The three rows of the spatio-temporal split share one call per batch.
    """
    maps: dict[str, Tensor] = {}
    seconds: dict[str, float] = {}
    batches = range(0, len(clips), settings.map_batch)
    split_names = [n for n in names if n in SPLIT_ROWS]
    if split_names:
        start = time.perf_counter()
        split = build_method(split_names[0], model)
        parts: dict[str, list[Tensor]] = {n: [] for n in split_names}
        for b in batches:
            x, t = clips[b : b + settings.map_batch], labels[b : b + settings.map_batch]
            result = split.attribute(x, target=t)
            for name in split_names:
                parts[name].append(EXPLAINERS[name].output(result, x).detach().float())
        for name in split_names:
            maps[name] = torch.cat(parts[name])
            seconds[name] = (time.perf_counter() - start) / len(split_names)
    for name in names:
        if name in SPLIT_ROWS:
            continue
        start = time.perf_counter()
        explain = make_explainer(name, model, **settings.overrides.get(name, {}))
        chunks = [
            explain(clips[b : b + settings.map_batch], labels[b : b + settings.map_batch])
            for b in batches
        ]
        maps[name] = torch.cat([c.detach().float() for c in chunks])
        seconds[name] = time.perf_counter() - start
    # A fixed seed: a model-blind ranking, the control every method should beat.
    gen = torch.Generator().manual_seed(12345)
    maps[RANDOM] = torch.rand((len(clips), 1, *clips.shape[2:]), generator=gen)
    seconds[RANDOM] = 0.0
    return maps, seconds


def beats(row: dict[str, Any], control: dict[str, Any], mode: str, k: str) -> bool:
    """Whether ``row`` beats ``control`` at fraction ``k``: lower ROAR / higher KAR accuracy,
    by more than the larger spread over seeds of the two."""
    gap = control[mode]["accuracy"][k] - row[mode]["accuracy"][k]
    if mode == "kar":
        gap = -gap
    return gap > max(row[mode]["spread"][k], control[mode]["spread"][k])


def run_roar(settings: Settings, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Maps, ROAR and KAR retrainings and the check; returns the JSON-ready results.

    Args:
        settings (Settings): the sizes.
        log (callable, optional): where progress lines go. Default: ``print``

    Returns:
        dict: settings, per-method accuracies, the reference, timings and the check.

    Example::

        >>> results = run_roar(QUICK, log=lambda line: None)
        >>> sorted(results["check"])
        ['beat_random_kar', 'beat_random_roar', 'passed']
    """
    s = settings
    t0 = time.perf_counter()
    names = list(s.methods) if s.methods is not None else list(EXPLAINERS)
    model = load_demo_model("motion")
    train_x, train_y, _ = MovingShapes("motion", num_samples=s.num_train, seed=0).tensors()
    test_x, test_y, _ = MovingShapes("motion", num_samples=s.num_test, seed=1).tensors()
    both_x, both_y = torch.cat([train_x, test_x]), torch.cat([train_y, test_y])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # memory-budget notes of the explainers
        maps, map_seconds = compute_maps(names, model, both_x, both_y, s)
    log(f"maps of {len(maps)} rows in {time.perf_counter() - t0:.0f}s")
    train_fn = fit(s)

    def retrain(
        row: str,
        mode: str,
        fractions: Sequence[float],
        seeds: Sequence[int],
        mask_only: bool = False,
    ) -> Any:
        relevance = maps[row]
        return remove_and_retrain(
            train_x,
            train_y,
            relevance[: s.num_train],
            test_x,
            test_y,
            relevance[s.num_train :],
            C3DSmall if s.arch == "c3d_small" else retrain_net,
            train_fn,
            fractions=fractions,
            mode=mode,  # type: ignore[arg-type]
            seeds=seeds,
            mask_only=mask_only,
        )

    start = time.perf_counter()
    reference = retrain(RANDOM, "roar", (0.0,), s.seeds + s.check_seeds)
    retrain_seconds = time.perf_counter() - start
    log(f"reference (nothing removed): {reference.accuracy[0]:.3f} ({retrain_seconds:.0f}s)")
    rows: dict[str, Any] = {}
    retrainings = len(reference.seeds)
    for row in [*names, RANDOM]:
        rows[row] = {"map_seconds": map_seconds[row], "settings": s.overrides.get(row, {})}
        for mode in ("roar", "kar"):
            main = retrain(row, mode, s.fractions, s.seeds)
            extra = retrain(row, mode, (CHECK_FRACTION,), s.check_seeds) if s.check_seeds else None
            rows[row][mode] = _summary(main, extra)
            retrainings += len(s.fractions) * len(s.seeds) + len(s.check_seeds)
        # The leakage control: the ROAR mask alone, no pixel of the clip (one seed).
        leak = retrain(row, "roar", s.fractions, s.seeds[:1], mask_only=True)
        rows[row]["roar_mask_only"] = {
            _key(k): acc for k, acc in zip(leak.fractions, leak.accuracy, strict=True)
        }
        retrainings += len(s.fractions)
        log(
            f"{row}: ROAR {rows[row]['roar']['accuracy']}  KAR {rows[row]['kar']['accuracy']}  "
            f"({time.perf_counter() - t0:.0f}s)"
        )
    k10 = _key(CHECK_FRACTION)
    check: dict[str, Any] = {"beat_random_roar": [], "beat_random_kar": []}
    if k10 in rows[RANDOM]["roar"]["accuracy"]:
        for row in names:
            for mode in ("roar", "kar"):
                if beats(rows[row], rows[RANDOM], mode, k10):
                    check[f"beat_random_{mode}"].append(row)
    check["passed"] = bool(check["beat_random_roar"] or check["beat_random_kar"])
    total = time.perf_counter() - t0
    return {
        "settings": {**asdict(s), "methods": names},
        "data": "MovingShapes('motion'), 3x16x32x32; train = seed 0, test = seed 1",
        "explained_model": "bundled demo C3DSmall (motion), trained on unmodified MovingShapes",
        "retrained_model": "demo C3DSmall" if s.arch == "c3d_small" else "retrain_net",
        "skipped": {},
        "reference_accuracy": {
            "mean": reference.accuracy[0],
            "per_seed": [run[0] for run in reference.accuracy_per_seed],
        },
        "methods": rows,
        "check": check,
        "timing": {
            **_timing(test_x[:16], maps[RANDOM][s.num_train : s.num_train + 16]),
            "total_s": total,
            "retrainings": retrainings,
        },
    }


def _key(k: float) -> str:
    return f"{round(100 * k)}%"


def _summary(main: RoarResult, extra: RoarResult | None) -> dict[str, Any]:
    """Accuracy, spread and per-seed values per fraction; ``extra`` adds seeds at one k."""
    per: dict[str, list[float]] = {
        _key(k): [run[i] for run in main.accuracy_per_seed] for i, k in enumerate(main.fractions)
    }
    if extra is not None:
        per[_key(extra.fractions[0])] += [run[0] for run in extra.accuracy_per_seed]
    return {
        "accuracy": {k: sum(v) / len(v) for k, v in per.items()},
        "spread": {k: max(v) - min(v) for k, v in per.items()},
        "per_seed": per,
    }


def _timing(clips: Tensor, relevance: Tensor) -> dict[str, Any]:
    """``ablate_top`` against a forward + backward of C3DSmall on the same clips."""
    torch.manual_seed(0)
    model = C3DSmall()
    labels = torch.zeros(len(clips), dtype=torch.long)

    def forward_backward() -> None:
        nn.functional.cross_entropy(model(clips), labels).backward()

    fns = {
        "forward_backward": forward_backward,
        "ablate_top": lambda: ablate_top(clips, relevance, 0.1),
    }
    times = interleaved_times(fns, "cpu", repeats=5)
    return {
        "clips": len(clips),
        "ablate_top_s": times["ablate_top"]["median_s"],
        "forward_backward_s": times["forward_backward"]["median_s"],
        "ablate_top_vs_forward_backward": ratio(times, "ablate_top", "forward_backward"),
    }


def to_markdown(results: dict[str, Any], command: str) -> str:
    """The results as a markdown page: one row per method, ROAR and KAR columns."""
    s = results["settings"]
    ks = [_key(k) for k in s["fractions"]]
    k10 = _key(CHECK_FRACTION)
    rows = results["methods"]
    control = rows[RANDOM]
    ref = results["reference_accuracy"]
    lines = [
        "# ROAR / KAR: remove (keep) the top k % of relevance and retrain",
        "",
        f"Produced by `{command}` in {results['timing']['total_s'] / 60:.0f} min "
        f"({results['timing']['retrainings']} retrainings).",
        "",
        f"{results['data']}: {s['num_train']} training and {s['num_test']} test clips. Maps "
        f"from the {results['explained_model']}. Each cell: test accuracy of a fresh "
        f"{results['retrained_model']} retrained ({s['epochs']} epochs, batch "
        f"{s['batch_size']}, Adam one-cycle, peak lr {s['lr']}) on clips whose top k % voxels "
        "(channel-summed relevance, random tie breaks) were replaced by the clip's "
        "per-channel mean (ROAR, lower is better) or "
        "whose other voxels were (KAR, higher is better); chance is 0.25. Retrained on "
        f"unmodified clips: {ref['mean']:.3f} (seeds: "
        f"{', '.join(f'{a:.3f}' for a in ref['per_seed'])}).",
        "",
        f"Retraining seeds {list(s['seeds'])} at every k"
        + (f", also {list(s['check_seeds'])} at {k10}" if s["check_seeds"] else "")
        + "; a cell is the mean over seeds ± half their spread. **†** = does not beat the "
        "random map by more than the larger seed spread of the two. Methods run with the "
        "registry's settings"
        + "".join(f"; {k} with {v} (cost)" for k, v in s["overrides"].items())
        + ".",
        "",
        "| method | "
        + " | ".join(f"ROAR {k} ↓" for k in ks)
        + " | "
        + " | ".join(f"KAR {k} ↑" for k in ks)
        + f" | beats random at {k10} | mask only ({', '.join(ks)}) | maps s |",
        "|---|" + "---|" * (2 * len(ks) + 3),
    ]
    for name, row in rows.items():
        cells = []
        for mode in ("roar", "kar"):
            for k in ks:
                value = f"{row[mode]['accuracy'][k]:.3f}"
                if len(row[mode]["per_seed"][k]) > 1:
                    value += f" ± {row[mode]['spread'][k] / 2:.3f}"
                if name != RANDOM and not beats(row, control, mode, k):
                    value += "†"
                cells.append(value)
        if name == RANDOM:
            verdict = "(control)"
        else:
            won = [m.upper() for m in ("roar", "kar") if beats(row, control, m, k10)]
            verdict = " + ".join(won) if won else "no"
        leak = " / ".join(f"{row['roar_mask_only'][k]:.2f}" for k in ks)
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {verdict} | {leak} | {row['map_seconds']:.0f} |"
        )
    check = results["check"]
    lines += [
        "",
        f"Beat the random map at {k10}: ROAR: {', '.join(check['beat_random_roar']) or 'none'}; "
        f"KAR: {', '.join(check['beat_random_kar']) or 'none'}.",
    ]
    lines += [
        "",
        "**mask only**: ROAR accuracy of a network retrained on the mask of the replaced "
        "voxels alone (1 where replaced, no pixel of the clip; first seed), the leakage "
        "control (chance 0.25). Far above chance, the shape of the removed region carries the "
        "label: a map that follows the object leaves a mean-coloured hole moving with it "
        "(class leakage through the mask, Rong et al. 2022). The KAR mask is the complement "
        "of the ROAR mask, so it carries the same shape. Where this column is high, a high "
        "ROAR accuracy does not show that the removed voxels were unimportant, and a high KAR "
        "accuracy may come from the shape of the kept region as well as from its pixels.",
    ]
    if results["skipped"]:
        lines += ["", "Skipped: " + "; ".join(f"{k} ({v})" for k, v in results["skipped"].items())]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line: ``python -m benchmarks.roar [--quick] [--out FILE.json]``.

    Args:
        argv (sequence of str, optional): arguments; default ``sys.argv[1:]``.

    Returns:
        dict: the JSON payload that was printed and written.

    Example::

        >>> main(["--quick", "--out", "/tmp/roar.json", "--markdown", "/tmp/roar.md"])
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="< 60 s: 2 methods, k = 10 %%")
    size.add_argument("--full", action="store_true", help="every method, five k (default)")
    parser.add_argument("--out", default=str(RESULTS_DIR / "roar.json"), help="JSON file")
    parser.add_argument("--markdown", default=str(RESULTS_DIR / "roar.md"), help="table file")
    parser.add_argument("--methods", nargs="+", default=None, help="registry names; default all")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="retraining seeds")
    parser.add_argument(
        "--arch", choices=("fast", "c3d_small"), default="fast", help="the retrained network"
    )
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else DEFAULT
    if args.methods is not None:
        settings = Settings(**{**asdict(settings), "methods": tuple(args.methods)})
    if args.seeds is not None:
        settings = Settings(**{**asdict(settings), "seeds": tuple(args.seeds)})
    settings = Settings(**{**asdict(settings), "arch": args.arch})
    results = run_roar(settings)
    command = "python -m benchmarks.roar" + (" --quick" if args.quick else "")
    payload = emit("roar", {"mode": "quick" if args.quick else "default", **results}, args.out)
    Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
    Path(args.markdown).write_text(to_markdown(results, command))
    return payload


if __name__ == "__main__":
    main()

"""Quality benchmark: which video explanation can a user trust?

Every attribution method captum-video ships (plus Captum references and a random map) explains
the bundled demo models on held-out :class:`~captum_video.datasets.MovingShapes` clips, whose
ground-truth masks mark the one object that decides the label. Each method gets

- localisation against the mask: relevance mass, relevance rank, pointing game (2 px);
- faithfulness: deletion and insertion AUC over 1x4x4 voxel cells with a fade (zeros) and a
  blur base;
- the model-randomisation sanity check: Spearman correlation of the map after randomising the
  classifier (``fc``) and after randomising every layer, with the original map.

Results go to JSON (``--out``) and a markdown table (``--markdown``, by default
``benchmarks/results/quality.md``). Every row is a method of the registry
(:data:`captum_video.explainers.EXPLAINERS`) at this run's sizes.

Run ``python -m benchmarks.quality --quick`` (minutes on a 2-core CPU) or ``--full``.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from benchmarks._common import emit, environment
from captum_video.attr import AttentionRollout, DeepTaylor3D, GradientWeightedAttention
from captum_video.datasets import MovingShapes
from captum_video.explainers import EXPLAINERS, build_method, make_explainer
from captum_video.metrics import (
    deletion,
    insertion,
    pointing_game,
    randomization_sanity,
    relevance_mass,
    relevance_rank,
)
from captum_video.models import load_demo_model

RESULTS_DIR = Path(__file__).with_name("results")
#: Which bundled demo model explains which data-set variant (each is trained on its own).
VARIANT_MODEL = {"motion": "motion", "appearance": "appearance", "mixed": "mixed"}
#: Rows that explain another bundled model than the variant's C3DSmall: row -> (the demo
#: model's name, the variants it was trained on). On other variants the row is left out; its
#: deletion / insertion curves and randomisation check use that model.
ROW_MODELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "AttentionRollout (demo transformer)": ("transformer", ("motion",)),
    "GradientWeightedAttention (demo transformer)": ("transformer", ("motion",)),
    "random map (demo transformer)": ("transformer", ("motion",)),
}
#: The control a row is marked against (†) when it is not the C3D's ``"random map"``: rows
#: that explain another model are compared with that model's random map.
ROW_CONTROLS = {
    "AttentionRollout (demo transformer)": "random map (demo transformer)",
    "GradientWeightedAttention (demo transformer)": "random map (demo transformer)",
    "random map (demo transformer)": "random map (demo transformer)",
}
HELD_OUT_SEED = 2024  # the demo models were trained on seeds 0 (train) and 1 (validation)
TOLERANCE_PX = 2.0  # TorchRay's 15 px on 224 px frames, scaled to 32 px frames

Explain = Callable[[Tensor, Tensor], Tensor]


@dataclass
class Settings:
    """Sizes of one benchmark run (:data:`QUICK` and :data:`FULL` are the presets).

    Args:
        num_clips (int): held-out clips per variant.
        n_steps (int): steps of the deletion / insertion curves.
        sanity_clips (int): clips of the randomisation check.
        ig_steps (int): IntegratedGradients steps.
        occlusion_window (tuple of int): Captum Occlusion window ``(C, t, h, w)``.
        occlusion_stride (tuple of int): Captum Occlusion strides.
        temporal_mask_iters (int): TemporalMask Adam iterations.
        seed (int): seed of the random map and of the weight randomisation.
        skip_sanity (set of str): methods whose randomisation check is skipped (cost).

    Returns:
        A plain dataclass.

    Example::

        >>> tiny = Settings(num_clips=2, n_steps=4, sanity_clips=1)
    """

    num_clips: int = 8
    n_steps: int = 8
    sanity_clips: int = 2
    ig_steps: int = 16
    occlusion_window: tuple[int, int, int, int] = (3, 4, 8, 8)
    occlusion_stride: tuple[int, int, int, int] = (3, 4, 8, 8)
    temporal_mask_iters: int = 20
    seed: int = 0
    skip_sanity: set[str] = field(default_factory=set)


QUICK = Settings(sanity_clips=1, skip_sanity={"TemporalMask (freeze)"})
FULL = Settings(
    num_clips=64,
    n_steps=32,
    sanity_clips=8,
    ig_steps=32,
    occlusion_window=(3, 2, 8, 8),
    occlusion_stride=(3, 2, 4, 4),
    temporal_mask_iters=300,
)


# -- methods -------------------------------------------------------------------------------


def _as_map(attr: Any, clips: Tensor) -> Tensor:
    """Any method's output as a detached ``(N, C | 1, T, H, W)`` float map."""
    if isinstance(attr, tuple) and not isinstance(attr, Tensor):
        attr = attr[0]
    attr = attr.detach().float()
    n, _, t, h, w = clips.shape
    if attr.dim() == 2:  # a per-frame curve (N, T), e.g. TemporalMask
        return attr.view(n, 1, t, 1, 1).expand(n, 1, t, h, w)
    return attr


def _split_part(result: Any, part: str) -> Tensor:
    if hasattr(result, part):
        return getattr(result, part)
    return result[{"spatial": 0, "temporal": 1, "joint": 2}[part]]


def method_builders(settings: Settings) -> dict[str, tuple[Callable[[nn.Module], Explain], str]]:
    """Every row of the benchmark: methods of the registry (:data:`EXPLAINERS`) at this run's
    sizes, plus a random map as the control.

    Args:
        settings (Settings): sizes (IG steps, occlusion windows, TemporalMask iterations).

    Returns:
        dict: name -> ``(build, note)``; ``build(model)`` returns ``explain(clips, targets)``.

    Example::

        >>> build, note = method_builders(QUICK)["random map"]
        >>> build(load_demo_model())(clips, labels).shape
        torch.Size([8, 1, 16, 32, 32])
    """
    s = settings
    ig = {"n_steps": s.ig_steps, "internal_batch_size": 4 * s.ig_steps}
    occlusion = {
        "sliding_window_shapes": s.occlusion_window,
        "strides": s.occlusion_stride,
        "perturbations_per_eval": 32,
    }

    def method(name: str, **kwargs: Any) -> Callable[[nn.Module], Explain]:
        return lambda model: make_explainer(name, model, **kwargs)

    # Both rows of the split come from the same calls (the randomisation check uses the same
    # seed for both): remember results by clips, targets and a fingerprint of the weights.
    split_cache: dict[tuple[Any, ...], Any] = {}

    def split(part: str) -> Callable[[nn.Module], Explain]:
        name = f"deep_taylor_{part}"

        def build(model: nn.Module) -> Explain:
            attribution = build_method(name, model)

            def explain(x: Tensor, t: Tensor) -> Tensor:
                weights = tuple(float(p.detach().double().sum()) for p in model.parameters())
                key = (id(model), x.data_ptr(), tuple(x.shape), tuple(t.tolist()), weights)
                if key not in split_cache:
                    if len(split_cache) >= 16:
                        split_cache.pop(next(iter(split_cache)))
                    split_cache[key] = attribution.attribute(x, target=t)
                return EXPLAINERS[name].output(split_cache[key], x)

            return explain

        return build

    def random_map(model: nn.Module) -> Explain:
        # A fixed seed: the same map whatever the model, as a model-blind explanation would be.
        return lambda x, t: torch.rand(
            (x.shape[0], 1, *x.shape[2:]), generator=torch.Generator().manual_seed(s.seed)
        )

    temporal_note = "one value per frame: localisation scores only reflect which frames rank high"
    return {
        "GradCAMTube (layer3, clip)": (method("gradcam_tube"), ""),
        "GradCAMTube (layer3, per_step)": (
            method("gradcam_tube", temporal_weights="per_step"),
            "equals clip on a GAP + linear head: its gradients are constant over positions",
        ),
        "SaliencyTube (layer3)": (method("saliency_tube"), ""),
        "DeepTaylor3D": (method("deep_taylor"), ""),
        "DeepTaylor3D (epsilon-gamma-box)": (
            lambda model: (
                lambda x, t: DeepTaylor3D(model, composite="epsilon-gamma-box").attribute(
                    x, target=t
                )
            ),
            "LRP composite: epsilon on fc, gamma 0.25 on convs, z^B input layer",
        ),
        "DeepTaylor3D (epsilon-box)": (
            lambda model: (
                lambda x, t: DeepTaylor3D(model, composite="epsilon-box").attribute(x, target=t)
            ),
            "LRP composite: epsilon everywhere, z^B input layer",
        ),
        "DeepTaylor3D (epsilon-plus)": (
            lambda model: (
                lambda x, t: DeepTaylor3D(model, composite="epsilon-plus").attribute(x, target=t)
            ),
            "LRP composite: epsilon on fc, z+ on convs",
        ),
        "DeepTaylor3D (epsilon-plus-flat)": (
            lambda model: (
                lambda x, t: DeepTaylor3D(model, composite="epsilon-plus-flat").attribute(
                    x, target=t
                )
            ),
            "LRP composite: epsilon on fc, z+ on convs, flat input layer",
        ),
        "SpatioTemporalSplit(DeepTaylor3D).temporal": (split("temporal"), ""),
        "SpatioTemporalSplit(DeepTaylor3D).spatial": (
            split("spatial"),
            "same call as the temporal row, which carries the time",
        ),
        "Selective(GradCAMTube)": (method("selective_gradcam_tube"), "sigma 3"),
        "Selective(SaliencyTube)": (method("selective_saliency_tube"), "sigma 3"),
        "Selective(DeepTaylor3D)": (method("selective_deep_taylor"), "sigma 3"),
        "Selective(Saliency)": (method("selective_saliency"), "sigma 3"),
        "Selective(IntegratedGradients)": (
            method("selective_integrated_gradients", **ig),
            "sigma 3",
        ),
        "Selective(Occlusion)": (method("selective_occlusion", **occlusion), "sigma 3"),
        "TemporalOcclusion (w=4, freeze)": (
            method(
                "temporal_occlusion",
                window=4,
                stride=1,
                baselines="freeze",
                perturbations_per_eval=16,
            ),
            temporal_note,
        ),
        "TemporalMask (freeze)": (
            lambda model: make_explainer(
                "temporal_mask",
                model,
                n_iter=s.temporal_mask_iters,
                generator=torch.Generator().manual_seed(s.seed),
            ),
            temporal_note,
        ),
        "Captum Saliency": (method("saliency"), "reference"),
        "Captum IntegratedGradients": (
            method("integrated_gradients", **ig),
            "reference, zero baseline",
        ),
        "Captum Occlusion": (method("occlusion", **occlusion), "reference, zero baseline"),
        "AttentionRollout (demo transformer)": (
            lambda model: lambda x, t: AttentionRollout(model).attribute(x, target=t),
            "explains the demo transformer (motion only); class-agnostic, so rho fc is 1",
        ),
        "GradientWeightedAttention (demo transformer)": (
            lambda model: lambda x, t: GradientWeightedAttention(model).attribute(x, target=t),
            "explains the demo transformer (motion only)",
        ),
        "random map (demo transformer)": (
            random_map,
            "control: the transformer rows' † compare with it",
        ),
        "random map": (random_map, "control"),
    }


# -- evaluation ----------------------------------------------------------------------------

#: metric -> (column header, higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "relevance_mass": ("mass", True),
    "relevance_rank": ("rank", True),
    "pointing_game": ("pointing", True),
    "deletion_fade": ("del fade", False),
    "insertion_fade": ("ins fade", True),
    "deletion_blur": ("del blur", False),
    "insertion_blur": ("ins blur", True),
    "sanity_fc": ("rho fc", False),
    "sanity_all": ("rho all", False),
}


def _nanmean(values: Tensor) -> float | None:
    values = values.float()
    keep = ~torch.isnan(values)
    return float(values[keep].mean()) if bool(keep.any()) else None


def score_map(
    model: nn.Module,
    clips: Tensor,
    targets: Tensor,
    masks: Tensor,
    attr: Tensor,
    settings: Settings,
) -> dict[str, float | None]:
    """Localisation and faithfulness of one map for a batch of clips (means over clips).

    Args:
        model (nn.Module): the explained model.
        clips (Tensor): ``(N, 3, T, H, W)``.
        targets (Tensor): ``(N,)`` explained classes.
        masks (Tensor): ``(N, T, H, W)`` ground truth.
        attr (Tensor): ``(N, C | 1, T, H, W)`` map.
        settings (Settings): sizes.

    Returns:
        dict: metric name -> mean over clips (None where undefined).

    Example::

        >>> score_map(model, clips, labels, masks, masks[:, None].float(), QUICK)
    """
    out: dict[str, float | None] = {
        "relevance_mass": _nanmean(relevance_mass(attr, masks)),
        "relevance_rank": _nanmean(relevance_rank(attr, masks)),
        "pointing_game": _nanmean(pointing_game(attr, masks, TOLERANCE_PX).accuracy),
    }
    for base in ("fade", "blur"):
        for name, fn in (("deletion", deletion), ("insertion", insertion)):
            curve = fn(
                model,
                clips,
                attr,
                target=targets,
                n_steps=settings.n_steps,
                base=base,
                cell=(1, 4, 4),
                perturbations_per_eval=max(1, 64 // len(clips)),
            )
            out[f"{name}_{base}"] = _nanmean(curve.auc)
    return out


def run_variant(
    variant: str,
    settings: Settings,
    methods: Sequence[str] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Evaluate every (or the named) method on one MovingShapes variant.

    Args:
        variant (str): ``"motion"``, ``"appearance"`` or ``"mixed"``.
        settings (Settings): sizes.
        methods (sequence of str, optional): names from :func:`method_builders`.
        log (callable, optional): where progress lines go. Default: ``print``

    Returns:
        dict: model, its accuracy on the clips, and per method its metrics.

    Example::

        >>> run_variant("motion", QUICK, ["random map"])["methods"]["random map"]["note"]
        'control'
    """
    model_name = VARIANT_MODEL[variant]
    model = load_demo_model(model_name)
    clips, labels, masks = MovingShapes(
        variant, num_samples=settings.num_clips, seed=HELD_OUT_SEED
    ).tensors()
    with torch.no_grad():
        predicted = model(clips).argmax(1)
    accuracy = float((predicted == labels).float().mean())
    targets = labels  # each model is right on its own variant: explain the true class
    result: dict[str, Any] = {
        "model": f"demo C3DSmall ({model_name})",
        "accuracy": accuracy,
        "methods": {},
    }
    builders = method_builders(settings)
    names = list(builders) if methods is None else list(methods)
    unknown = [n for n in names if n not in builders]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; known: {list(builders)}")
    oracle = masks.unsqueeze(1).float()
    result["methods"]["ground-truth mask (oracle)"] = {
        "note": "the mask itself as a map: an upper reference",
        **score_map(model, clips, targets, masks, oracle, settings),
    }
    for name in names:
        build, note = builders[name]
        row_model = model
        if name in ROW_MODELS:  # explains another bundled model, where it was trained
            other, trained_on = ROW_MODELS[name]
            if variant not in trained_on:
                continue
            row_model = load_demo_model(other)
        entry: dict[str, Any] = {"note": note}
        result["methods"][name] = entry
        explain = build(row_model)
        start = time.perf_counter()
        attr = _as_map(explain(clips, targets), clips)
        entry["seconds_per_clip"] = (time.perf_counter() - start) / len(clips)
        entry.update(score_map(row_model, clips, targets, masks, attr, settings))
        if name in settings.skip_sanity:
            entry["sanity_note"] = "skipped at this size (cost)"
        else:
            k = settings.sanity_clips
            check = randomization_sanity(
                lambda x, t, fn=explain: _as_map(fn(x, t), x),
                row_model,
                clips[:k],
                targets[:k],
                seed=settings.seed,
            )
            entry["sanity_fc"] = _nanmean(check.correlation[0])
            entry["sanity_all"] = _nanmean(check.correlation[-1])
            entry["sanity_layers"] = check.layers
        log(
            f"[{variant}] {name}: "
            + ", ".join(f"{k}={v:.3f}" for k, v in entry.items() if isinstance(v, float))
        )
    return result


def run_quality(
    variants: Sequence[str] = ("motion", "appearance", "mixed"),
    settings: Settings = QUICK,
    methods: Sequence[str] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the quality benchmark and return its results as a JSON-ready dict.

    Args:
        variants (sequence of str, optional): MovingShapes variants.
        settings (Settings, optional): sizes; :data:`QUICK` or :data:`FULL`.
        methods (sequence of str, optional): method names; default all.
        log (callable, optional): where progress lines go. Default: ``print``

    Returns:
        dict: ``{"settings": ..., "variants": {variant: {...}}}``.

    Example::

        >>> results = run_quality(["motion"], QUICK, ["random map"], log=lambda s: None)
    """
    torch.manual_seed(settings.seed)
    return {
        "settings": {
            k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(settings).items()
        },
        "tolerance_px": TOLERANCE_PX,
        "variants": {v: run_variant(v, settings, methods, log) for v in variants},
    }


# -- report --------------------------------------------------------------------------------


def _beats(value: float | None, reference: float | None, higher: bool) -> bool | None:
    if value is None or reference is None or math.isnan(value) or math.isnan(reference):
        return None
    return value > reference if higher else value < reference


def to_markdown(results: dict[str, Any], command: str = "") -> str:
    """The benchmark as markdown tables, marking where the random map does not lose.

    Args:
        results (dict): what :func:`run_quality` returned.
        command (str, optional): the command line, quoted in the header. Default: ``""``

    Returns:
        str: markdown.

    Example::

        >>> text = to_markdown(run_quality(["motion"], QUICK, ["random map"]))
    """
    lines = ["# Quality benchmark: video explanations against ground truth", ""]
    if command:
        lines += [
            f"Produced by `{command}` on {environment()['device']} "
            f"({environment()['threads']} threads, torch {environment()['torch']}).",
            "",
        ]
    s = results["settings"]
    lines += [
        f"Held-out `MovingShapes` clips ({s['num_clips']} per variant, 3x16x32x32), the bundled "
        "demo C3DSmall models (one per variant, each trained on its own variant), the true "
        "class as the target.",
        "",
        "Columns: **mass** = share of positive relevance inside the object mask; **rank** = "
        "share of the |mask| most relevant voxels inside it; **pointing** = per-frame maximum "
        f"within {results['tolerance_px']:g} px of the object; **del/ins** = deletion / "
        f"insertion AUC of the softmax target score over 1x4x4 voxel cells, {s['n_steps']} "
        "steps, fade (zeros) or blur base; **rho fc / rho all** = Spearman correlation of |map| "
        f"with the map after randomising the classifier / every layer ({s['sanity_clips']} "
        "clips; lower is better, a model-blind map scores 1). Arrows: higher or lower is "
        "better. **†** = not better than the random map on that metric. s/clip is wall time "
        "on a shared, noisy CPU: for orientation only.",
        "",
    ]
    heads = [METRICS[m][0] + (" ↑" if METRICS[m][1] else " ↓") for m in METRICS]
    for variant, vres in results["variants"].items():
        lines += [f"## {variant}", ""]
        lines += [f"Model: {vres['model']}, accuracy on these clips {vres['accuracy']:.2f}.", ""]
        lines += [
            "| method | " + " | ".join(heads) + " | s/clip | note |",
            "|---" * (len(heads) + 3) + "|",
        ]
        methods = vres["methods"]
        losses: dict[str, list[str]] = {}
        for name, entry in methods.items():
            cells = []
            control = ROW_CONTROLS.get(name, "random map")
            rand = methods.get(control, {})
            for metric, (_, higher) in METRICS.items():
                value = entry.get(metric)
                if value is None:
                    cells.append("—")
                    continue
                mark = ""
                if name != control and rand:
                    beats = _beats(value, rand.get(metric), higher)
                    if beats is False:
                        mark = "†"
                        losses.setdefault(METRICS[metric][0], []).append(name)
                cells.append(f"{value:.3f}{mark}")
            secs = entry.get("seconds_per_clip")
            note = entry.get("note", "")
            if entry.get("sanity_note"):
                note = (note + "; " if note else "") + "randomisation check " + entry["sanity_note"]
            lines.append(
                f"| {name} | " + " | ".join(cells) + f" | "
                f"{'—' if secs is None else f'{secs:.3f}'} | {note} |"
            )
        lines.append("")
        if losses:
            lines += ["Where the random map does not lose:", ""]
            lines += [f"- **{metric}**: {', '.join(names)}" for metric, names in losses.items()]
            lines.append("")
    lines += [
        "## Reading the table",
        "",
        "- Fade deletion is known to favour scattered maps: fading random cells all over the "
        "clip destroys it faster than fading the object the model uses. Li et al.'s stored "
        "curves (R(2+1)D, UCF101-24) give deletion AUC 0.280 for Grad-CAM against 0.204 for a "
        "random order, while insertion separates them (0.756 against 0.206). On MovingShapes the "
        "random map loses fade deletion to most methods (the lists above name the exceptions), "
        "probably because its frames are dark and mostly empty, so fading scattered background "
        "cells to zero changes little; where it does win, read insertion and the blur base.",
        "- Temporal methods (TemporalOcclusion, TemporalMask) give one value per frame: their "
        "spatial scores only reflect which frames they rank, not where in a frame.",
        "- The oracle row (the ground-truth mask as a map) shows how far each metric can go on "
        "this data; it has no randomisation check.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line: ``python -m benchmarks.quality --quick | --full [--out FILE.json]``.

    Args:
        argv (sequence of str, optional): arguments; default ``sys.argv[1:]``.

    Returns:
        dict: the JSON payload that was printed and written.

    Example::

        >>> main(["--quick", "--variants", "motion", "--out", "/tmp/q.json",
        ...       "--markdown", "/tmp/q.md"])
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes (default)")
    size.add_argument("--full", action="store_true", help="the issue's sizes")
    parser.add_argument("--out", default=str(RESULTS_DIR / "quality.json"), help="JSON file")
    parser.add_argument(
        "--markdown", default=str(RESULTS_DIR / "quality.md"), help="markdown table file"
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["motion", "appearance", "mixed"],
        choices=list(VARIANT_MODEL),
    )
    parser.add_argument("--methods", nargs="+", default=None, help="method names; default all")
    args = parser.parse_args(argv)
    settings = FULL if args.full else QUICK
    results = run_quality(args.variants, settings, args.methods)
    command = "python -m benchmarks.quality " + ("--full" if args.full else "--quick")
    payload = emit("quality", {"mode": "full" if args.full else "quick", **results}, args.out)
    Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
    Path(args.markdown).write_text(to_markdown(results, command))
    return payload


if __name__ == "__main__":
    main()

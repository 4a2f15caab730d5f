"""Running the methods over a data set: batches on the model's device, per-clip metrics, and
finished shards handed to the writer (:mod:`captum_video.pipeline.store`)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from captum_video.attr import selective_relevance
from captum_video.baselines import freeze, shuffle
from captum_video.metrics import relevance_mass, spatial_bias, temporal_sensitivity
from captum_video.pipeline.items import Indexed, clip_name, collate
from captum_video.pipeline.store import ShardWriter, shard_range
from captum_video.relevance import reduce_channels, relevance_per_frame

__all__ = ["Explain", "TEMPORAL_OPS", "explain_batch", "run_shards"]

#: Temporal perturbations measured once per clip (names as in temporal_sensitivity).
TEMPORAL_OPS = ("freeze", "shuffle")
_FLOAT16_MAX = float(torch.finfo(torch.float16).max)

Explain = Callable[[Tensor, Tensor], Tensor]


def run_shards(
    model: nn.Module,
    dataset: Dataset,
    explainers: Mapping[str, Explain],
    prepare: Callable[[Tensor], Tensor],
    config: Mapping[str, Any],
    shards: Sequence[int],
    out: Path,
    device: torch.device,
    batch_size: int,
    num_workers: int,
    run_id: str,
    rank: int,
    world: int,
    progress: bool,
) -> int:
    """Explain the clips of ``shards`` and write each shard as soon as it is complete."""
    owner = {i: k for k in shards for i in shard_range(config, k)}
    loader = DataLoader(
        Indexed(dataset, list(owner)),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
    )
    pending: dict[int, list[dict[str, Any]]] = {k: [] for k in shards}
    started = {k: 0.0 for k in shards}
    computed = 0
    bar = tqdm(
        total=len(owner),
        unit="clip",
        desc=f"explain (rank {rank}/{world})" if world > 1 else "explain",
        disable=not progress,
        position=rank if world > 1 else None,
        dynamic_ncols=True,
    )
    with bar, ShardWriter() as writer:
        for batch in loader:
            tic = time.perf_counter()
            results = explain_batch(model, batch, explainers, prepare, config, device, dataset)
            seconds = (time.perf_counter() - tic) / len(results)
            for result in results:
                shard = owner[result["record"]["index"]]
                pending[shard].append(result)
                started[shard] += seconds
                clips = shard_range(config, shard)
                if len(pending[shard]) == len(clips):
                    manifest = {
                        "shard": shard,
                        "clips": [clips.start, clips.stop],
                        "run_id": run_id,
                        "rank": rank,
                        "world_size": world,
                        "device": str(device),
                        "seconds": started[shard],
                        "finished": time.time(),
                    }
                    done = sorted(pending.pop(shard), key=lambda r: r["record"]["index"])
                    writer.submit(
                        out,
                        shard,
                        [r["record"] for r in done],
                        {m: np.stack([r["attr"][m] for r in done]) for m in explainers},
                        manifest,
                        float16=config["float16"],
                    )
            computed += len(results)
            bar.update(len(results))
    return computed


def explain_batch(
    model: nn.Module,
    batch: Mapping[str, Any],
    explainers: Mapping[str, Explain],
    prepare: Callable[[Tensor], Tensor],
    config: Mapping[str, Any],
    device: torch.device,
    dataset: Dataset,
) -> list[dict[str, Any]]:
    """Attributions and metrics of one batch, as per-clip ``{"record", "attr"}`` dicts."""
    indices: list[int] = batch["index"]
    clips = batch["clips"].to(device, non_blocking=True)
    labels = batch["labels"]
    masks = batch["masks"].to(device) if batch["masks"] is not None else None
    x = prepare(clips)
    with torch.no_grad():
        logits = model(x)
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != len(indices):
        raise ValueError(
            f"the model must return (N, K) scores, got "
            f"{tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__}"
        )
    probs = logits.float().softmax(1)
    prob, pred = probs.max(1)
    target = _targets(config["target"], pred, labels, probs.shape[1])
    target_prob = probs.gather(1, target[:, None])[:, 0]
    top_probs, top_classes = probs.topk(min(5, probs.shape[1]), dim=1)

    drops: dict[str, Tensor] = {}
    if config["temporal_ops"]:
        ops = {name: _temporal_op(name, indices, config["seed"]) for name in config["temporal_ops"]}

        def forward(inputs: Tensor) -> Tensor:
            # temporal_sensitivity first scores x itself: reuse the logits computed above.
            return logits if inputs is x else model(inputs)

        drops = temporal_sensitivity(forward, x, target, ops=ops)

    attrs: dict[str, Tensor] = {}
    per_method: dict[str, dict[str, Tensor]] = {}
    for name, explain in explainers.items():
        relevance = explain(x, target).detach()
        expected = (x.shape[0], *x.shape[2:])
        if relevance.dim() != 5 or (relevance.shape[0], *relevance.shape[2:]) != expected:
            raise ValueError(
                f"method {name!r} returned {tuple(relevance.shape)}; expected (N, C, T, H, W) "
                f"with (N, T, H, W) of the clips, {expected}"
            )
        if relevance.shape[1] != 1:
            relevance = reduce_channels(relevance, "sum")
        relevance = relevance.float()
        metrics = {"curve": relevance_per_frame(relevance)}
        if config["selective_sigma"] is not None:
            selected, _, _ = selective_relevance(relevance, sigma=config["selective_sigma"])
            metrics["spatial_bias"] = spatial_bias(relevance, selected)
        if masks is not None:
            metrics["relevance_mass"] = relevance_mass(relevance, masks)
        per_method[name] = {k: v.cpu() for k, v in metrics.items()}
        attrs[name] = relevance.cpu()

    results = []
    for j, index in enumerate(indices):
        record: dict[str, Any] = {
            "index": index,
            "name": clip_name(dataset, index),
            "label": None if labels is None else int(labels[j]),
            "target": int(target[j]),
            "prediction": int(pred[j]),
            "probability": float(prob[j]),
            "target_probability": float(target_prob[j]),
            "top5": [[int(c), float(p)] for c, p in zip(top_classes[j], top_probs[j], strict=True)],
            "temporal_sensitivity": {k: float(v[j]) for k, v in drops.items()},
            "methods": {
                name: {
                    "curve": [float(v) for v in m["curve"][j]],
                    "spatial_bias": float(m["spatial_bias"][j]) if "spatial_bias" in m else None,
                    "relevance_mass": float(m["relevance_mass"][j])
                    if "relevance_mass" in m
                    else None,
                }
                for name, m in per_method.items()
            },
        }
        attr = {name: _storable(a[j], config["float16"], name) for name, a in attrs.items()}
        results.append({"record": record, "attr": attr})
    return results


def _targets(mode: str | int, pred: Tensor, labels: Tensor | None, num_classes: int) -> Tensor:
    if mode == "prediction":
        return pred
    if mode == "label":
        if labels is None:
            raise ValueError("target='label' needs a data set that gives labels")
        target = labels.to(pred.device)
    else:
        target = torch.full_like(pred, int(mode))
    if bool(((target < 0) | (target >= num_classes)).any()):
        raise ValueError(f"targets must be in [0, {num_classes}), got {target.tolist()}")
    return target


def _temporal_op(name: str, indices: Sequence[int], seed: int) -> Callable[[Tensor], Tensor]:
    """The perturbation ``name`` with randomness tied to each clip's index, not its batch."""
    if name == "freeze":
        return freeze

    def per_clip_shuffle(x: Tensor) -> Tensor:
        generators = [torch.Generator().manual_seed(seed * 1_000_003 + i) for i in indices]
        return torch.cat([shuffle(x[j : j + 1], g) for j, g in enumerate(generators)])

    return per_clip_shuffle


def _storable(relevance: Tensor, float16: bool, name: str) -> np.ndarray:
    array = relevance.numpy()
    if float16 and np.abs(array).max(initial=0.0) > _FLOAT16_MAX:
        warnings.warn(
            f"{name}: relevance beyond the float16 range was clipped to +-{_FLOAT16_MAX:g}",
            stacklevel=3,
        )
        array = np.clip(array, -_FLOAT16_MAX, _FLOAT16_MAX)
    return array

"""Running the methods over a data set: batches on the model's device, per-clip metrics, and
finished shards handed to the writer (:mod:`captum_video.pipeline.store`).

A clip that fails is isolated, not fatal (:mod:`~captum_video.pipeline.failures`): a batch
that raises is tried again clip by clip, so only the clip at fault is recorded as failed and
its neighbours are explained. Results do not depend on the batching (the shuffles are seeded
per clip), so a clip explained alone equals the same clip explained in a batch.
"""

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
from captum_video.pipeline.failures import ConfigurationError, StageFailed, failure_record
from captum_video.pipeline.items import Indexed, clip_name, collate
from captum_video.pipeline.store import (
    ShardWriter,
    read_shard_arrays,
    read_shard_json,
    shard_path,
    shard_range,
)
from captum_video.relevance import reduce_channels, relevance_per_frame

__all__ = ["Explain", "TEMPORAL_OPS", "explain_batch", "explain_isolated", "run_shards"]

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
    todo: Mapping[int, Sequence[int]],
    out: Path,
    device: torch.device,
    batch_size: int,
    num_workers: int,
    manifest: Mapping[str, Any],
    progress: bool,
    succeeded_before: int = 0,
) -> int:
    """Explain the clips of ``todo`` (shard -> clip indices) and write each shard when complete.

    A shard that was written before (its failed clips are tried again) is rewritten with its
    earlier records and attributions and the new ones. ``manifest`` holds what every shard's
    manifest shares (run key, run id, rank, world size, device). ``succeeded_before`` counts
    the clips of the run that succeeded earlier: while it and this call's successes are 0, a
    batch whose every clip fails on its own raises (a mistake for every clip, not a bad clip).
    Returns the number of clips tried.
    """
    owner = {i: k for k, clips in todo.items() for i in clips}
    loader = DataLoader(
        Indexed(dataset, list(owner)),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
    )
    results: dict[int, list[dict[str, Any]]] = {k: [] for k in todo}
    failures: dict[int, list[dict[str, Any]]] = {k: [] for k in todo}
    seconds = {k: 0.0 for k in todo}
    computed, succeeded = 0, succeeded_before
    rank, world = manifest.get("rank", 0), manifest.get("world_size", 1)
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
            failed = [
                failure_record(i, clip_name(dataset, i), "load", why) for i, why in batch["failed"]
            ]
            ok: list[dict[str, Any]] = []
            if batch["index"]:
                ok, more = explain_isolated(
                    model, batch, explainers, prepare, config, device, dataset, succeeded == 0
                )
                failed += more
            share = (time.perf_counter() - tic) / max(1, len(ok) + len(failed))
            touched: set[int] = set()
            for result in ok:
                shard = owner[result["record"]["index"]]
                results[shard].append(result)
                seconds[shard] += share
                touched.add(shard)
            for failure in failed:
                shard = owner[failure["index"]]
                failures[shard].append(failure)
                seconds[shard] += share
                touched.add(shard)
            for shard in sorted(touched):
                if len(results[shard]) + len(failures[shard]) == len(todo[shard]):
                    _submit(
                        writer,
                        out,
                        config,
                        explainers,
                        shard,
                        results.pop(shard),
                        failures.pop(shard),
                        {**manifest, "seconds": seconds.pop(shard)},
                    )
            computed += len(ok) + len(failed)
            succeeded += len(ok)
            bar.update(len(ok) + len(failed))
    return computed


def _submit(
    writer: ShardWriter,
    out: Path,
    config: Mapping[str, Any],
    explainers: Mapping[str, Explain],
    shard: int,
    results: list[dict[str, Any]],
    failures: list[dict[str, Any]],
    manifest: dict[str, Any],
) -> None:
    """Hand a complete shard to the writer, with what an earlier call kept of it."""
    records = [r["record"] for r in results]
    attrs = {m: [r["attr"][m] for r in results] for m in explainers}
    # A shard on disk here was verified by prepare_out_dir and only its failed clips were
    # tried again. Rewriting it replaces the .npz before the .json: a kill in between leaves a
    # checksum mismatch, which the next run names and recomputes (never a silent mix).
    if shard_path(out, shard, ".json").exists():
        before = read_shard_json(shard_path(out, shard, ".json"))
        manifest["seconds"] += before["manifest"].get("seconds", 0.0)
        if before["records"]:
            arrays = read_shard_arrays(out, shard)
            records = before["records"] + records
            for m in explainers:
                attrs[m] = [*arrays[f"attr_{m}"].astype(np.float32), *attrs[m]]
    order = sorted(range(len(records)), key=lambda j: records[j]["index"])
    clips = shard_range(config, shard)
    writer.submit(
        out,
        shard,
        [records[j] for j in order],
        {m: np.stack([a[j] for j in order]) if order else np.zeros(0) for m, a in attrs.items()},
        {**manifest, "shard": shard, "clips": [clips.start, clips.stop], "finished": time.time()},
        float16=config["float16"],
        failures=sorted(failures, key=lambda f: f["index"]),
    )


def _one_clip(batch: Mapping[str, Any], j: int) -> dict[str, Any]:
    """Clip ``j`` of a batch as a batch of one."""
    pick = slice(j, j + 1)
    return {
        "index": [batch["index"][j]],
        "clips": batch["clips"][pick],
        "labels": None if batch["labels"] is None else batch["labels"][pick],
        "masks": None if batch["masks"] is None else batch["masks"][pick],
        "failed": [],
    }


def explain_isolated(
    model: nn.Module,
    batch: Mapping[str, Any],
    explainers: Mapping[str, Explain],
    prepare: Callable[[Tensor], Tensor],
    config: Mapping[str, Any],
    device: torch.device,
    dataset: Dataset,
    raise_if_all_fail: bool = False,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    r""":func:`explain_batch`, with a failing batch tried again clip by clip.

    Args:
        model, batch, explainers, prepare, config, device, dataset: as for
            :func:`explain_batch`.
        raise_if_all_fail (bool, optional): when every clip of the batch fails on its own,
            raise the first clip's error instead of recording it (nothing of the run has
            succeeded yet: a mistake that hits every clip should stop the run at once).
            Default: False

    Returns:
        tuple: the results of the clips that succeeded and the failure records
        (:func:`~captum_video.pipeline.failures.failure_record`; stage ``"explain"`` or the
        name of the method that raised) of the others.

    Raises:
        ConfigurationError: a mistake of the configuration (always raised).

    Example::

        >>> ok, failed = explain_isolated(model, batch, explainers, prepare, config, device, data)
        >>> [f["stage"] for f in failed]
        ['gradcam_tube']
    """
    try:
        return explain_batch(model, batch, explainers, prepare, config, device, dataset), []
    except ConfigurationError:
        raise
    except Exception as err:
        if len(batch["index"]) == 1:
            errors: list[tuple[int, Exception]] = [(batch["index"][0], err)]
            ok: list[dict[str, Any]] = []
        else:
            ok, errors = _clip_by_clip(model, batch, explainers, prepare, config, device, dataset)
    if raise_if_all_fail and not ok:
        first = errors[0][1]
        raise first.error if isinstance(first, StageFailed) else first
    failed = [
        failure_record(
            index,
            clip_name(dataset, index),
            e.stage if isinstance(e, StageFailed) else "explain",
            e.error if isinstance(e, StageFailed) else e,
        )
        for index, e in errors
    ]
    return ok, failed


def _clip_by_clip(
    model: nn.Module,
    batch: Mapping[str, Any],
    explainers: Mapping[str, Explain],
    prepare: Callable[[Tensor], Tensor],
    config: Mapping[str, Any],
    device: torch.device,
    dataset: Dataset,
) -> tuple[list[dict[str, Any]], list[tuple[int, Exception]]]:
    ok: list[dict[str, Any]] = []
    errors: list[tuple[int, Exception]] = []
    for j, index in enumerate(batch["index"]):
        try:
            ok += explain_batch(
                model, _one_clip(batch, j), explainers, prepare, config, device, dataset
            )
        except ConfigurationError:
            raise
        except Exception as err:
            errors.append((index, err))
    return ok, errors


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
        raise ConfigurationError(
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
        try:
            relevance = explain(x, target).detach()
        except Exception as err:  # the clip's failure is this method's
            raise StageFailed(name, err) from err
        expected = (x.shape[0], *x.shape[2:])
        if relevance.dim() != 5 or (relevance.shape[0], *relevance.shape[2:]) != expected:
            raise ConfigurationError(
                f"method {name!r} returned {tuple(relevance.shape)}; expected (N, C, T, H, W) "
                f"with (N, T, H, W) of the clips, {expected}"
            )
        try:
            per_method[name], attrs[name] = _method_metrics(relevance, masks, config)
        except Exception as err:
            raise StageFailed(name, err) from err

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
            "num_classes": int(probs.shape[1]),
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


def _method_metrics(
    relevance: Tensor, masks: Tensor | None, config: Mapping[str, Any]
) -> tuple[dict[str, Tensor], Tensor]:
    """Per-clip metrics of one method's relevance, and the channel-reduced relevance."""
    if relevance.shape[1] != 1:
        relevance = reduce_channels(relevance, "sum")
    relevance = relevance.float()
    metrics = {"curve": relevance_per_frame(relevance)}
    if config["selective_sigma"] is not None:
        selected, _, _ = selective_relevance(relevance, sigma=config["selective_sigma"])
        metrics["spatial_bias"] = spatial_bias(relevance, selected)
    if masks is not None:
        metrics["relevance_mass"] = relevance_mass(relevance, masks)
    return {k: v.cpu() for k, v in metrics.items()}, relevance.cpu()


def _targets(mode: str | int, pred: Tensor, labels: Tensor | None, num_classes: int) -> Tensor:
    if mode == "prediction":
        return pred
    if mode == "label":
        if labels is None:
            raise ConfigurationError("target='label' needs a data set that gives labels")
        target = labels.to(pred.device)
        if bool(((target < 0) | (target >= num_classes)).any()):  # a bad label: that clip's
            raise ValueError(f"labels must be in [0, {num_classes}), got {target.tolist()}")
        return target
    if not 0 <= int(mode) < num_classes:
        raise ConfigurationError(f"targets must be in [0, {num_classes}), got {int(mode)}")
    return torch.full_like(pred, int(mode))


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

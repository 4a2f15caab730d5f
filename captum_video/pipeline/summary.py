r"""Summaries of an explained data set: overall and per-class means, a plain verdict.

Everything here works on the per-clip records of
:func:`captum_video.pipeline.store.load_records` (plain dicts), so summaries can be
recomputed from the shards alone, by rank 0 after a distributed run or by anyone later.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from captum_video.pipeline.store import FORMAT_VERSION, atomic_write
from captum_video.pipeline.verdict import motion_verdict

__all__ = ["summarize", "pick_highlights", "write_table"]


def _mean(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def _mean_curve(curves: Sequence[Sequence[float]]) -> list[float] | None:
    rows = [c for c in curves if all(math.isfinite(v) for v in c)]
    if not rows:
        return None
    return [sum(col) / len(rows) for col in zip(*rows, strict=True)]


def _core_window(curve: Sequence[float], share: float = 0.5) -> list[int]:
    """The shortest run of frames ``[start, stop)`` holding at least ``share`` of the curve."""
    n, total = len(curve), sum(curve)
    for length in range(1, n + 1):
        sums = [sum(curve[s : s + length]) for s in range(n - length + 1)]
        best = max(range(len(sums)), key=sums.__getitem__)
        if sums[best] >= share * total - 1e-12:
            return [best, best + length]
    return [0, n]


def _group_stats(records: Sequence[Mapping[str, Any]], config: Mapping[str, Any]) -> dict:
    """Means of one group of clips (all of them, or one class)."""
    labelled = [r for r in records if r["label"] is not None]
    stats: dict[str, Any] = {
        "clips": len(records),
        "accuracy": _mean([float(r["prediction"] == r["label"]) for r in labelled])
        if labelled
        else None,
        "probability": _mean([r["probability"] for r in records]),
        "target_probability": _mean([r["target_probability"] for r in records]),
        "temporal_sensitivity": {
            op: _mean([r["temporal_sensitivity"][op] for r in records])
            for op in config["temporal_ops"]
        },
        "methods": {},
    }
    for name in config["methods"]:
        curve = _mean_curve([r["methods"][name]["curve"] for r in records])
        stats["methods"][name] = {
            "curve": curve,
            "peak_frame": None if curve is None else max(range(len(curve)), key=curve.__getitem__),
            "core_frames": None if curve is None else _core_window(curve),
            "spatial_bias": _mean([r["methods"][name]["spatial_bias"] for r in records]),
            "relevance_mass": _mean([r["methods"][name]["relevance_mass"] for r in records]),
        }
    return stats


def _num_classes(records: Sequence[Mapping[str, Any]], names: Sequence[str] | None) -> int:
    """The model's number of outputs: recorded per clip, else from the class names."""
    recorded = [int(r["num_classes"]) for r in records if r.get("num_classes") is not None]
    if recorded:
        return max(recorded)
    if names:
        return len(names)
    return 1 + max((c for r in records for c, _ in r.get("top5", [])), default=1)


def summarize(records: Sequence[Mapping[str, Any]], config: Mapping[str, Any]) -> dict[str, Any]:
    r"""The data-set summary of a run: overall and per-class means of every per-clip metric.

    Args:
        records (sequence of dict): per-clip records
            (:func:`~captum_video.pipeline.store.load_records`).
        config (mapping): the run's configuration (``run.json``).

    Returns:
        dict: ``num_clips``, ``num_frames``, ``methods``, ``class_names``, ``has_labels``,
        ``has_masks``, ``overall`` and ``per_class`` (each with ``clips``, ``accuracy``,
        ``probability``, ``target_probability``, ``temporal_sensitivity`` and per method the
        mean ``curve``, ``peak_frame``, ``core_frames`` (the shortest run of frames
        ``[start, stop)`` holding half the relevance), ``spatial_bias``, ``relevance_mass``),
        ``verdict`` (:func:`~captum_video.pipeline.verdict.motion_verdict`: motion,
        appearance, both or inconclusive, with its interval and reason) and ``reliance``
        (the verdict's word). Frames are 0-based (``frame_numbering`` says so; the report
        numbers them from 1); undefined means are None.

    Example::

        >>> summary = summarize(load_records(out), json.loads((out / "run.json").read_text()))
        >>> summary["overall"]["temporal_sensitivity"]["freeze"]
    """
    records = sorted(records, key=lambda r: r["index"])
    has_labels = bool(records) and all(r["label"] is not None for r in records)
    names = config.get("class_names")
    key = "label" if has_labels else "prediction"
    per_class = []
    for cls in sorted({r[key] for r in records}):
        group = [r for r in records if r[key] == cls]
        label = names[cls] if names and 0 <= cls < len(names) else str(cls)
        per_class.append({"class": cls, "class_name": label, **_group_stats(group, config)})
    overall = _group_stats(records, config)
    verdict = motion_verdict(records, _num_classes(records, names))
    first = records[0]["methods"][config["methods"][0]]["curve"] if records else []
    return {
        "format": FORMAT_VERSION,
        "num_clips": len(records),
        "num_frames": len(first),
        "methods": list(config["methods"]),
        "class_names": names,
        "grouped_by": key,
        "has_labels": has_labels,
        "has_masks": any(
            m["relevance_mass"] is not None for r in records for m in r["methods"].values()
        ),
        "target": config["target"],
        "overall": overall,
        "verdict": verdict,
        "reliance": verdict["verdict"],
        "frame_numbering": "indices from 0 (the report numbers frames from 1)",
        "per_class": per_class,
    }


def pick_highlights(records: Sequence[Mapping[str, Any]], k: int) -> list[int]:
    r"""Clips worth showing: misclassified ones first, then the surest clip of each class.

    Up to ``max(1, k // 2)`` misclassified clips (least probability of the explained class
    first), then per predicted class its most confident clip (most confident classes first),
    then the first clips by index until there are ``k``.

    Args:
        records (sequence of dict): per-clip records
            (:func:`~captum_video.pipeline.store.load_records`).
        k (int): how many.

    Returns:
        list of int: clip indices.

    Example::

        >>> pick_highlights(load_records(out), 4)
        [5, 0, 3, 1]
    """
    if k <= 0:
        return []
    wrong = sorted(
        (r for r in records if r["label"] is not None and r["prediction"] != r["label"]),
        key=lambda r: (r["target_probability"], r["index"]),
    )
    chosen = [r["index"] for r in wrong[: max(1, k // 2)]]
    by_class: dict[int, Mapping[str, Any]] = {}
    for r in records:
        best = by_class.get(r["prediction"])
        if best is None or r["probability"] > best["probability"]:
            by_class[r["prediction"]] = r
    for r in sorted(by_class.values(), key=lambda r: -r["probability"]):
        if len(chosen) < k and r["index"] not in chosen:
            chosen.append(r["index"])
    for r in records:
        if len(chosen) >= k:
            break
        if r["index"] not in chosen:
            chosen.append(r["index"])
    return chosen


def write_table(path: Path, records: Sequence[Mapping[str, Any]], config: Mapping) -> None:
    r"""Write the per-clip metrics as a CSV table, one row per clip.

    Columns: index, name, label, target, prediction, probability, target_probability, one
    ``drop_<op>`` per temporal perturbation, and per method ``<method>_spatial_bias``,
    ``<method>_relevance_mass`` and ``<method>_peak_frame`` (0-based); empty cells where a
    value is undefined.

    Args:
        path (Path): the CSV file (written atomically).
        records (sequence of dict): per-clip records.
        config (mapping): the run's configuration.

    Returns:
        None

    Example::

        >>> write_table(out / "clips.csv", load_records(out), config)
    """
    columns = ["index", "name", "label", "target", "prediction", "probability"]
    columns += ["target_probability", *(f"drop_{op}" for op in config["temporal_ops"])]
    for name in config["methods"]:
        columns += [f"{name}_spatial_bias", f"{name}_relevance_mass", f"{name}_peak_frame"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for r in records:
        row = [r[c] for c in columns[:7]]
        row += [r["temporal_sensitivity"][op] for op in config["temporal_ops"]]
        for name in config["methods"]:
            m = r["methods"][name]
            finite = all(math.isfinite(v) for v in m["curve"])
            peak = max(range(len(m["curve"])), key=m["curve"].__getitem__) if finite else None
            row += [m["spatial_bias"], m["relevance_mass"], peak]
        writer.writerow(["" if v is None else v for v in row])
    atomic_write(path, buffer.getvalue().encode())

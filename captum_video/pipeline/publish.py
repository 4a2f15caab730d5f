"""Publishing a finished run: the merged summary and table, exported clips, TensorBoard logs
and the HTML report (rank 0, after every shard is on disk)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor
from torch.utils.data import Dataset
from torch.utils.tensorboard import SummaryWriter

from captum_video.pipeline.failures import FAILURES_FILE, describe_failures
from captum_video.pipeline.items import split_item
from captum_video.pipeline.report import write_report
from captum_video.pipeline.store import atomic_write, clear_merged, load_attribution
from captum_video.pipeline.summary import pick_highlights, summarize, write_table
from captum_video.pipeline.verify import verified_contents
from captum_video.tensorboard import add_relevance_clip
from captum_video.visualization import write_video

__all__ = ["merge"]


def merge(
    out: Path,
    config: dict[str, Any],
    dataset: Dataset,
    highlights: int,
    clip_format: str,
    fps: float,
    tensorboard: bool,
    report: bool,
) -> tuple[list[Path], Path | None]:
    """Merge every shard of ``out`` into the summary, table, exports, logs and report.

    Every shard is checked first (:func:`~captum_video.pipeline.verify.verified_contents`):
    a damaged, copied or foreign shard stops the merge with an error naming the file. The
    clips that failed are written to ``failures.json`` (also when there are none) and listed
    in the summary (``failures``, ``num_failures``) and the report.

    Args:
        out (Path): the run's folder, with all shards written.
        config (dict): the run's configuration.
        dataset (Dataset): the explained data set (the highlighted clips are read again).
        highlights (int): how many clips to export and log.
        clip_format (str): ``".webm"`` or ``".gif"``.
        fps (float): frame rate of exported clips and logs.
        tensorboard (bool): write TensorBoard logs.
        report (bool): write ``report.html``.

    Returns:
        tuple: the files written, and the report's path (or None).

    Raises:
        RuntimeError: some shards are missing.
        DamagedShard: a shard does not verify (a ``ValueError``; the message names it).
        ValueError: every clip failed (the failures are in ``failures.json``).

    Example::

        >>> files, report = merge(out, config, data, 4, ".gif", 8.0, True, True)
    """
    records, failures, _ = verified_contents(out, config)
    atomic_write(out / FAILURES_FILE, json.dumps(failures, indent=2).encode())
    if not records:
        raise ValueError(
            f"every clip failed ({len(failures)} of {config['num_clips']}): "
            f"{describe_failures(failures)}; all are listed in {out / FAILURES_FILE}"
        )
    summary = summarize(records, config)
    summary["num_failures"] = len(failures)
    summary["failures"] = failures
    clear_merged(out)
    summary["highlights"] = pick_highlights(records, highlights)
    summary["exports"] = _export_highlights(
        out, config, dataset, summary, clip_format, fps, _predicted_labels(records, config)
    )
    if tensorboard:
        _log_tensorboard(out, config, dataset, records, summary, fps)
        summary["tensorboard"] = "tensorboard"
    atomic_write(out / "summary.json", json.dumps(summary, indent=2).encode())
    write_table(out / "clips.csv", records, config)
    files = [out / "summary.json", out / "clips.csv", out / FAILURES_FILE]
    files += [out / p for paths in summary["exports"].values() for p in paths.values()]
    report_path = None
    if report:
        report_path = write_report(out)
        files.append(report_path)
    return files, report_path


def _highlight_clips(
    out: Path, config: Mapping, dataset: Dataset, summary: Mapping
) -> Iterator[tuple[int, Tensor, dict[str, Tensor]]]:
    for index in summary["highlights"]:
        clip = split_item(dataset[index], index)[0]
        attrs = {name: load_attribution(out, index, name) for name in config["methods"]}
        yield index, clip, attrs


def _predicted_labels(
    records: Sequence[Mapping[str, Any]], config: Mapping[str, Any]
) -> dict[int, str]:
    """Clip index -> "predicted 'name' (p=0.93)", for captions."""
    names = config.get("class_names")
    labels = {}
    for r in records:
        cls = r["prediction"]
        name = names[cls] if names and 0 <= cls < len(names) else str(cls)
        labels[r["index"]] = f"predicted {name!r} (p={r['probability']:.2f})"
    return labels


def _export_highlights(
    out: Path,
    config: Mapping,
    dataset: Dataset,
    summary: Mapping,
    clip_format: str,
    fps: float,
    labels: Mapping[int, str],
) -> dict[str, dict[str, str]]:
    """Write the highlighted clips as captioned videos (method, predicted class, frame and
    time); ``index -> method -> path relative to out``."""
    exports: dict[str, dict[str, str]] = {}
    for index, clip, attrs in _highlight_clips(out, config, dataset, summary):
        scale = max(1, 128 // max(clip.shape[-2:]))
        times = [t / fps for t in range(clip.shape[1])]
        exports[str(index)] = {}
        for name, attr in attrs.items():
            path = out / "clips" / f"clip-{index:05d}-{name}{clip_format}"
            written = write_video(
                attr,
                path,
                fps=fps,
                video=clip.clamp(0, 1),
                scale=scale,
                caption=f"{name} | {labels.get(index, '')}",
                times=times,
            )
            exports[str(index)][name] = written.relative_to(out).as_posix()
    return exports


def _log_tensorboard(
    out: Path,
    config: Mapping,
    dataset: Dataset,
    records: Sequence[Mapping[str, Any]],
    summary: Mapping,
    fps: float,
) -> None:
    by_index = {r["index"]: r for r in records}
    writer = SummaryWriter(str(out / "tensorboard"))
    try:
        for index, clip, attrs in _highlight_clips(out, config, dataset, summary):
            record = by_index[index]
            for name, attr in attrs.items():
                facts = {"probability": record["probability"], "clip": record["name"]}
                spatial = record["methods"][name]["spatial_bias"]
                if spatial is not None and math.isfinite(spatial):
                    facts["spatial_bias"] = spatial
                add_relevance_clip(
                    writer,
                    f"{name}/clip{index:05d}",
                    clip.clamp(0, 1),
                    attr,
                    0,
                    target=record["target"],
                    prediction=record["prediction"],
                    method=name,
                    fps=fps,
                    extra=facts,
                    class_names=config["class_names"],
                )
        overall = summary["overall"]
        for op, value in overall["temporal_sensitivity"].items():
            if value is not None:
                writer.add_scalar(f"summary/temporal_sensitivity_{op}", value, 0)
        for name, m in overall["methods"].items():
            for key in ("spatial_bias", "relevance_mass"):
                if m[key] is not None:
                    writer.add_scalar(f"summary/{name}/{key}", m[key], 0)
    finally:
        writer.close()

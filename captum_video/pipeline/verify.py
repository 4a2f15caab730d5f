r"""Trusting what an output folder holds: shards are checked before they are skipped or merged.

A shard on disk is only as good as the run that wrote it and the disk that kept it. Before a
resumed run skips a shard, and again before the merge reads it, :func:`check_shard` makes
sure that its ``.json`` parses, that it is the shard its file name says (number and clip
range: a ``.json`` copied over another's is caught), that it belongs to this run (the run
key of :mod:`~captum_video.pipeline.identity`: a shard of other weights or data is caught
even when ``run.json`` is gone), that it accounts for each of its clips exactly once
(records + failures), and that its ``.npz`` has the sha256 the ``.json`` recorded (a flipped
byte or a truncated archive is caught). :func:`prepare_out_dir` recomputes a bad shard with
a warning naming the file; :func:`verified_contents` (the merge) refuses it with an error
naming the file.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from captum_video.pipeline.failures import FAILURES_FILE
from captum_video.pipeline.identity import (
    ConfigurationChanged,
    changed_keys,
    file_sha256,
    run_key,
)
from captum_video.pipeline.store import (
    DamagedShard,
    atomic_write,
    clear_merged,
    read_shard_json,
    shard_path,
    shard_range,
)

__all__ = ["ResumePlan", "check_shard", "prepare_out_dir", "verified_contents"]


def _num_shards(config: Mapping[str, Any]) -> int:
    return math.ceil(config["num_clips"] / config["shard_size"])


def check_shard(
    out_dir: Path, shard: int, config: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, str | None]:
    r"""Read shard ``shard`` and check it is the one this run needs, undamaged.

    Args:
        out_dir (Path): the run's folder.
        shard (int): the shard number; its ``.json`` must exist.
        config (mapping): the run's configuration (its
            :func:`~captum_video.pipeline.identity.run_key` is what the shard must carry).

    Returns:
        tuple: ``(payload, None)`` for a good shard (``{"manifest", "records",
        "failures"}``), ``(None, problem)`` otherwise, ``problem`` naming the file and
        what is wrong with it.

    Example::

        >>> payload, problem = check_shard(Path("runs/x"), 0, config)
        >>> problem
        'shards/shard-00000.npz is damaged: its sha256 differs from ...'
    """
    json_path, npz_path = shard_path(out_dir, shard, ".json"), shard_path(out_dir, shard, ".npz")
    name = f"shards/{json_path.name}"
    try:
        payload = read_shard_json(json_path)
        manifest = payload["manifest"]
        clips = shard_range(config, shard)
        if manifest.get("shard") != shard or manifest.get("clips") != [clips.start, clips.stop]:
            return None, (
                f"{name} describes shard {manifest.get('shard')} (clips {manifest.get('clips')}), "
                f"not shard {shard} (clips {[clips.start, clips.stop]}): a copied or misplaced file"
            )
        if manifest.get("run_key") != run_key(config):
            return None, f"{name} belongs to another run (its run key is not this run's)"
        held = sorted(int(r["index"]) for r in [*payload["records"], *payload["failures"]])
        if held != list(clips):
            return None, f"{name} accounts for clips {held}, not for {list(clips)}"
    except DamagedShard as err:
        return None, str(err)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        return None, f"{name} is damaged ({type(err).__name__}: {err})"
    if not npz_path.exists():
        return None, f"shards/{npz_path.name} is missing"
    if file_sha256(npz_path) != manifest.get("npz_sha256"):
        return None, (
            f"shards/{npz_path.name} is damaged: its sha256 differs from the one {name} records"
        )
    return payload, None


@dataclass
class ResumePlan:
    """What a (resumed) run still has to do.

    Attributes:
        todo (dict): shard number -> the clip indices to compute in it (all of a shard not
            done yet; only the failed clips of a done shard).
        skipped (int): clips of done shards that succeeded and are not computed again.
    """

    todo: dict[int, list[int]]
    skipped: int


def _read_previous(run_file: Path) -> dict[str, Any] | None:
    if not run_file.exists():
        return None
    try:
        previous = json.loads(run_file.read_text())
        if not isinstance(previous, dict):
            raise ValueError("not a JSON object")
        return previous
    except ValueError as err:
        warnings.warn(
            f"{run_file} is damaged ({err}); keeping only the shards whose run key is this run's",
            stacklevel=4,
        )
        return None


def _remove_strays(out_dir: Path, total: int) -> None:
    """Shard files past the last shard, left by a run of more clips (with run.json gone)."""
    for path in sorted((out_dir / "shards").glob("shard-*.*")):
        number = path.name.split(".")[0].removeprefix("shard-")
        if number.isdigit() and int(number) >= total:
            warnings.warn(f"shards/{path.name} is no shard of this run; removing it", stacklevel=4)
            path.unlink()


def prepare_out_dir(
    out_dir: Path, config: Mapping[str, Any], overwrite: bool = False
) -> ResumePlan:
    r"""Get ``out_dir`` ready for a run and list what is still to do.

    Writes ``run.json`` (the configuration and its run key). With results already there,
    checks they come from the same configuration (else resuming would mix runs), removes
    ``.tmp`` leftovers of an interrupted write, and checks every finished shard
    (:func:`check_shard`): a bad one is removed and recomputed, with a warning naming the
    file. A done shard's failed clips are tried again; its other clips are kept. Without
    ``run.json`` (deleted, or unreadable) the shards whose run key is this run's are kept.

    Args:
        out_dir (Path): the run's folder (created).
        config (mapping): the run's configuration; ``num_clips`` and ``shard_size`` define
            the shards.
        overwrite (bool, optional): start afresh instead of resuming. Default: False

    Returns:
        ResumePlan: the clips to compute per shard and how many clips are kept.

    Raises:
        ConfigurationChanged: ``out_dir`` holds results of a different configuration; the
            message names what differs.

    Example::

        >>> plan = prepare_out_dir(Path("runs/x"), config)
        >>> plan.todo, plan.skipped
        ({0: [0, 1, 2, 3], 1: [4, 5, 6, 7], 2: [8, 9]}, 0)
    """
    shards = out_dir / "shards"
    run_file = out_dir / "run.json"
    if overwrite:
        merged = [out_dir / "summary.json", out_dir / FAILURES_FILE, run_file]
        for path in [*shards.glob("shard-*"), *merged]:
            if path.exists():
                path.unlink()
        clear_merged(out_dir)
    previous = _read_previous(run_file)
    if previous is not None:
        changed = changed_keys(previous, config)
        if changed:
            raise ConfigurationChanged(out_dir, changed)
    elif not run_file.exists() and any(shards.glob("shard-*.json")):
        warnings.warn(
            f"{run_file} is missing; keeping only the shards whose run key is this run's",
            stacklevel=3,
        )
    shards.mkdir(parents=True, exist_ok=True)
    atomic_write(run_file, json.dumps({**config, "run_key": run_key(config)}, indent=2).encode())
    for leftover in shards.glob("*.tmp"):  # a write cut off by an interruption
        leftover.unlink()
    total = _num_shards(config)
    _remove_strays(out_dir, total)
    todo: dict[int, list[int]] = {}
    skipped = 0
    for k in range(total):
        clips = list(shard_range(config, k))
        if not shard_path(out_dir, k, ".json").exists():
            todo[k] = clips
            continue
        payload, problem = check_shard(out_dir, k, config)
        if payload is None:
            warnings.warn(f"{problem}; recomputing shard {k}", stacklevel=3)
            for suffix in (".json", ".npz"):
                shard_path(out_dir, k, suffix).unlink(missing_ok=True)
            todo[k] = clips
            continue
        skipped += len(payload["records"])
        if payload["failures"]:
            todo[k] = sorted(int(f["index"]) for f in payload["failures"])
    return ResumePlan(todo, skipped)


def verified_contents(
    out_dir: Path, config: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    r"""Records, failures and manifests of every shard of a finished run, each shard checked.

    Args:
        out_dir (Path): the run's folder.
        config (mapping): the run's configuration.

    Returns:
        tuple: ``(records, failures, manifests)``, records and failures ordered by clip
        index, manifests by shard.

    Raises:
        RuntimeError: a shard is not written yet.
        DamagedShard: a shard fails :func:`check_shard`; the message names the file.

    Example::

        >>> records, failures, manifests = verified_contents(Path("runs/x"), config)
    """
    records: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    manifests: list[dict[str, Any]] = []
    for k in range(_num_shards(config)):
        path = shard_path(out_dir, k, ".json")
        if not path.exists():
            raise RuntimeError(
                f"shard {k} of {out_dir} is not written yet (shards/{path.name} is missing); "
                "rerun explain_dataset to finish the run"
            )
        payload, problem = check_shard(out_dir, k, config)
        if payload is None:
            raise DamagedShard(
                f"{problem}; refusing to merge {out_dir}: rerun explain_dataset on it to "
                "recompute the shard"
            )
        records += payload["records"]
        failures += payload["failures"]
        manifests.append(payload["manifest"])
    return (
        sorted(records, key=lambda r: r["index"]),
        sorted(failures, key=lambda f: f["index"]),
        manifests,
    )

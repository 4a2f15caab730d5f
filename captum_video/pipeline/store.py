r"""The on-disk format of :func:`captum_video.pipeline.explain_dataset`: shards, atomically written.

A run's ``out_dir`` holds ``run.json`` (the configuration) and ``shards/``. Shard ``k`` holds
the clips ``k * shard_size .. (k + 1) * shard_size - 1`` in two files:

- ``shard-0000k.npz``: a compressed NumPy archive (``np.load`` reads it) with ``index``
  ``(n,)`` and, per method, ``attr_<method>`` ``(n, 1, T, H, W)`` (float32, or float16 when
  the run asked for it), for the ``n`` clips of the shard that did not fail;
- ``shard-0000k.json``: ``{"manifest": {...}, "records": [...], "failures": [...]}``, the
  per-clip metrics (:func:`load_records`), the clips that failed
  (:mod:`~captum_video.pipeline.failures`) and the manifest (:func:`load_manifests`): who
  wrote the shard when, and what makes it checkable: its number and clip range, the run's
  key (:func:`~captum_video.pipeline.identity.run_key`) and the sha256 of the ``.npz``
  (``npz_sha256``). :mod:`~captum_video.pipeline.verify` uses them to catch damaged,
  truncated, copied and foreign shards.

Each file is written to ``<name>.tmp``, flushed to disk and renamed over its final name, the
``.json`` last: a shard is done exactly when its ``.json`` exists (and verifies), and an
interruption leaves at most a ``.tmp`` file, which the next run removes. Readers never see
half a file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import zipfile
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "FORMAT_VERSION",
    "DamagedShard",
    "load_records",
    "load_manifests",
    "load_attribution",
    "read_shard_json",
    "read_shard_arrays",
    "write_shard",
    "shard_path",
    "shard_range",
    "atomic_write",
    "clear_merged",
    "ShardWriter",
]

#: Bumped when the layout of shards or records changes (2: failures, checksums, run key).
FORMAT_VERSION = 2


class DamagedShard(ValueError):
    """A shard file that cannot be read or does not belong where it is; the message names it.

    Example::

        >>> raise DamagedShard("shards/shard-00003.json is damaged (not valid JSON: ...)")
    """


def shard_path(out_dir: Path, shard: int, suffix: str) -> Path:
    """The file of shard ``shard`` with ``suffix`` (``".npz"`` or ``".json"``)."""
    return Path(out_dir) / "shards" / f"shard-{shard:05d}{suffix}"


def shard_range(config: Mapping[str, Any], shard: int) -> range:
    r"""The clip indices shard ``shard`` holds.

    Args:
        config (mapping): the run's configuration (``num_clips``, ``shard_size``).
        shard (int): the shard number.

    Returns:
        range: ``shard * shard_size .. min((shard + 1) * shard_size, num_clips) - 1``.

    Example::

        >>> shard_range({"num_clips": 10, "shard_size": 4}, 2)
        range(8, 10)
    """
    size = config["shard_size"]
    return range(shard * size, min((shard + 1) * size, config["num_clips"]))


def atomic_write(path: Path, data: bytes) -> None:
    r"""Write ``data`` to ``path.tmp``, flush it to disk and rename it to ``path``.

    Readers see the old file or the whole new one, never a part (``os.replace`` is atomic
    on POSIX and on Windows within one file system).

    Args:
        path (Path): the final file.
        data (bytes): its content.

    Returns:
        None

    Example::

        >>> atomic_write(Path("/tmp/x.json"), b"{}")
    """
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def clear_merged(out_dir: Path) -> None:
    """Remove the merged clip videos and TensorBoard logs (a merge writes them anew)."""
    for folder in ("clips", "tensorboard"):
        if (out_dir / folder).is_dir():
            shutil.rmtree(out_dir / folder)


def write_shard(
    out_dir: Path,
    shard: int,
    records: list[dict[str, Any]],
    attributions: Mapping[str, np.ndarray],
    manifest: Mapping[str, Any],
    float16: bool = False,
    failures: list[dict[str, Any]] | None = None,
) -> None:
    r"""Write one finished shard: attributions (``.npz``), then records + manifest (``.json``).

    The manifest gets ``npz_sha256``, the checksum of the ``.npz`` bytes written, so a reader
    can tell a damaged or swapped archive from the one the records describe.

    Args:
        out_dir (Path): the run's folder.
        shard (int): the shard number.
        records (list of dict): the per-clip records of the clips that succeeded, in clip
            order.
        attributions (mapping): ``method -> (n, 1, T, H, W)`` array, rows in clip order
            (``n = len(records)``; ignored when ``n == 0``).
        manifest (mapping): facts about the shard and its writing (shard, clips, run key,
            run id, rank, seconds ...).
        float16 (bool, optional): store attributions as float16. Default: False
        failures (list of dict, optional): records of the shard's clips that failed
            (:func:`~captum_video.pipeline.failures.failure_record`). Default: None

    Returns:
        None

    Example::

        >>> write_shard(out, 0, records, {"gradcam_tube": attr}, {"run_id": "abc"})
    """
    dtype = np.float16 if float16 else np.float32
    arrays: dict[str, Any] = {"index": np.array([r["index"] for r in records], dtype=np.int64)}
    for name, a in attributions.items():
        arrays[f"attr_{name}"] = a.astype(dtype) if records else np.zeros((0,), dtype)
    buffer = io.BytesIO()
    # np.savez_compressed's layout, but with the fastest deflate level: relevance maps compress
    # about as well at level 1, several times faster than at numpy's default.
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for key, array in arrays.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
    data = buffer.getvalue()
    atomic_write(shard_path(out_dir, shard, ".npz"), data)
    payload = {
        "manifest": {**manifest, "npz_sha256": hashlib.sha256(data).hexdigest()},
        "records": records,
        "failures": list(failures or []),
    }
    atomic_write(shard_path(out_dir, shard, ".json"), json.dumps(payload).encode())


def read_shard_json(path: Path) -> dict[str, Any]:
    r"""A shard's ``.json``, or a :class:`DamagedShard` error naming the file.

    Args:
        path (Path): the ``shard-*.json`` file.

    Returns:
        dict: ``{"manifest", "records", "failures"}``.

    Raises:
        DamagedShard: the file is truncated, not JSON, or lacks the shard's keys.

    Example::

        >>> read_shard_json(shard_path(out, 0, ".json"))["manifest"]["shard"]
        0
    """
    name = f"{path.parent.name}/{path.name}"
    try:
        payload = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise DamagedShard(f"{name} is damaged or truncated (not valid JSON: {err})") from None
    if not isinstance(payload, dict) or not {"manifest", "records"} <= payload.keys():
        raise DamagedShard(f"{name} is damaged (no manifest and records in it)")
    payload.setdefault("failures", [])
    return payload


def read_shard_arrays(
    out_dir: Path, shard: int, keys: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    r"""Arrays of a shard's ``.npz`` (``index`` and ``attr_<method>``), in memory.

    Args:
        out_dir (Path): the run's folder.
        shard (int): the shard number.
        keys (sequence of str, optional): the arrays to read; default all of them.

    Returns:
        dict: array name -> array.

    Raises:
        DamagedShard: the archive cannot be read; the message names it.

    Example::

        >>> read_shard_arrays(out, 0, ["index"])["index"]
        array([0, 1])
    """
    path = shard_path(out_dir, shard, ".npz")
    try:
        with np.load(path) as data:
            return {key: data[key] for key in (data.files if keys is None else keys)}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise DamagedShard(
            f"shards/{path.name} cannot be read ({type(err).__name__}: {err}); rerun "
            "explain_dataset on this folder to recompute it"
        ) from None


def _shard_jsons(out_dir: str | os.PathLike) -> list[Path]:
    return sorted((Path(out_dir) / "shards").glob("shard-*.json"))


def load_records(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    r"""Per-clip metrics of every finished shard of a run, ordered by clip index.

    Clips that failed have no record (see
    :func:`~captum_video.pipeline.failures.load_failures`).

    Args:
        out_dir (str or PathLike): the ``out_dir`` of
            :func:`~captum_video.pipeline.explain_dataset`.

    Returns:
        list of dict: one record per clip: ``index``, ``name``, ``label``, ``target``,
        ``prediction``, ``probability``, ``target_probability``, ``top5`` (pairs of class and
        probability), ``temporal_sensitivity`` (``op -> drop``) and ``methods``
        (``name -> {"curve", "spatial_bias", "relevance_mass"}``); NaN where undefined.

    Raises:
        DamagedShard: a shard's ``.json`` cannot be read; the message names it.

    Example::

        >>> records = load_records("runs/moving-shapes")
        >>> records[0]["methods"]["gradcam_tube"]["curve"][:3]
    """
    records: list[dict[str, Any]] = []
    for path in _shard_jsons(out_dir):
        records += read_shard_json(path)["records"]
    return sorted(records, key=lambda r: r["index"])


def load_manifests(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    r"""The manifests of a run's finished shards (shard, clips, run id, rank, seconds, time).

    Args:
        out_dir (str or PathLike): the ``out_dir`` of
            :func:`~captum_video.pipeline.explain_dataset`.

    Returns:
        list of dict: one manifest per shard, ordered by shard number.

    Raises:
        DamagedShard: a shard's ``.json`` cannot be read; the message names it.

    Example::

        >>> {m["run_id"] for m in load_manifests("runs/moving-shapes")}  # calls that wrote it
    """
    return [read_shard_json(p)["manifest"] for p in _shard_jsons(out_dir)]


def load_attribution(out_dir: str | os.PathLike, index: int, method: str) -> Tensor:
    r"""The stored attribution of one clip, ``(1, T, H, W)`` float32.

    Args:
        out_dir (str or PathLike): the ``out_dir`` of
            :func:`~captum_video.pipeline.explain_dataset`.
        index (int): the clip's index in the data set.
        method (str): the method's name.

    Returns:
        Tensor: the channel-reduced relevance ``(1, T, H, W)`` (float32, also when stored as
        float16).

    Raises:
        IndexError, KeyError: no such clip or method in the run.
        FileNotFoundError: the clip's shard is not written yet.
        ValueError: the clip failed (the message says how), or its shard is damaged
            (:class:`DamagedShard`, naming the file).

    Example::

        >>> load_attribution("runs/moving-shapes", 0, "gradcam_tube").shape
        torch.Size([1, 16, 32, 32])
    """
    out = Path(out_dir)
    config = json.loads((out / "run.json").read_text())
    if not 0 <= index < config["num_clips"]:
        raise IndexError(f"clip index {index} out of range for {config['num_clips']} clips")
    if method not in config["methods"]:
        raise KeyError(f"no method {method!r} in this run; it has {config['methods']}")
    shard = index // config["shard_size"]
    path = shard_path(out, shard, ".npz")
    if not path.exists():
        raise FileNotFoundError(f"clip {index} is not explained yet ({path.name} is missing)")
    arrays = read_shard_arrays(out, shard, ["index", f"attr_{method}"])
    found = np.flatnonzero(arrays["index"] == index)
    if not len(found):
        failed = read_shard_json(path.with_suffix(".json"))["failures"]
        why = next((f for f in failed if f["index"] == index), None)
        detail = f" ({why['stage']}: {why['error']}: {why['message']})" if why else ""
        raise ValueError(f"clip {index} failed{detail}; it has no attribution")
    return torch.from_numpy(arrays[f"attr_{method}"][int(found[0])].astype(np.float32))


class ShardWriter:
    """Writes finished shards on a background thread while the next batches are computed.

    Compressing float relevance is slow (zlib manages about 20 MB/s) but releases the GIL, so
    one writer thread hides it behind the model. At most ``max_pending`` shards wait (memory
    stays bounded); leaving the block waits for all of them, also when the loop was
    interrupted, so every shard completed before an interruption is on disk.
    """

    def __init__(self, max_pending: int = 2) -> None:
        self.max_pending = max_pending
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="captum-video-shards")
        self.futures: list[Future] = []

    def submit(self, *args: Any, **kwargs: Any) -> None:
        self.futures.append(self.pool.submit(write_shard, *args, **kwargs))
        while len(self.futures) > self.max_pending:
            self.futures.pop(0).result()  # re-raises a failed write here

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for future in self.futures:
                future.result()
        finally:
            self.pool.shutdown(wait=True)

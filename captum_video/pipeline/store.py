r"""The on-disk format of :func:`captum_video.pipeline.explain_dataset`: shards, atomically written.

A run's ``out_dir`` holds ``run.json`` (the configuration) and ``shards/``. Shard ``k`` holds
the clips ``k * shard_size .. (k + 1) * shard_size - 1`` in two files:

- ``shard-0000k.npz``: a compressed NumPy archive (``np.load`` reads it) with ``index``
  ``(n,)`` and, per method, ``attr_<method>`` ``(n, 1, T, H, W)`` (float32, or float16 when
  the run asked for it);
- ``shard-0000k.json``: ``{"manifest": {...}, "records": [...]}``, the per-clip metrics
  (:func:`load_records`) and who wrote the shard when (:func:`load_manifests`).

Each file is written to ``<name>.tmp``, flushed to disk and renamed over its final name, the
``.json`` last: a shard is done exactly when its ``.json`` exists, and an interruption leaves
at most a ``.tmp`` file, which the next run removes. Readers never see half a file.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import zipfile
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "FORMAT_VERSION",
    "load_records",
    "load_manifests",
    "load_attribution",
    "prepare_out_dir",
    "write_shard",
    "shard_path",
    "shard_range",
    "atomic_write",
    "clear_merged",
    "ShardWriter",
]

#: Bumped when the layout of shards or records changes.
FORMAT_VERSION = 1


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


def prepare_out_dir(
    out_dir: Path, config: Mapping[str, Any], overwrite: bool = False
) -> tuple[list[int], int]:
    r"""Get ``out_dir`` ready for a run and list the shards still to do.

    Writes ``run.json``; with results already there, checks that they come from the same
    configuration (else resuming would mix runs) and removes ``.tmp`` leftovers of an
    interrupted write. ``overwrite`` deletes earlier shards and merged outputs first.

    Args:
        out_dir (Path): the run's folder (created).
        config (mapping): the run's configuration; ``num_clips`` and ``shard_size`` define
            the shards.
        overwrite (bool, optional): start afresh instead of resuming. Default: False

    Returns:
        tuple: ``(pending shard numbers, number of clips in finished shards)``.

    Raises:
        ValueError: ``out_dir`` holds results of a different configuration; the message
            names the keys that differ.

    Example::

        >>> pending, done = prepare_out_dir(Path("runs/x"), {"num_clips": 10, "shard_size": 4})
        >>> pending, done
        ([0, 1, 2], 0)
    """
    shards = out_dir / "shards"
    run_file = out_dir / "run.json"
    if overwrite:
        for path in [*shards.glob("shard-*"), out_dir / "summary.json", run_file]:
            if path.exists():
                path.unlink()
        clear_merged(out_dir)
    if run_file.exists():
        previous = json.loads(run_file.read_text())
        changed = sorted(k for k in set(previous) | set(config) if previous.get(k) != config.get(k))
        if changed:
            raise ValueError(
                f"{out_dir} holds results of a different configuration (differs in {changed}); "
                "use another out_dir or overwrite=True"
            )
    shards.mkdir(parents=True, exist_ok=True)
    atomic_write(run_file, json.dumps(dict(config), indent=2).encode())
    for leftover in shards.glob("*.tmp"):  # a write cut off by an interruption
        leftover.unlink()
    total = math.ceil(config["num_clips"] / config["shard_size"])
    done = {k for k in range(total) if shard_path(out_dir, k, ".json").exists()}
    skipped = sum(len(shard_range(config, k)) for k in done)
    return [k for k in range(total) if k not in done], skipped


def write_shard(
    out_dir: Path,
    shard: int,
    records: list[dict[str, Any]],
    attributions: Mapping[str, np.ndarray],
    manifest: Mapping[str, Any],
    float16: bool = False,
) -> None:
    r"""Write one finished shard: attributions (``.npz``), then records + manifest (``.json``).

    Args:
        out_dir (Path): the run's folder.
        shard (int): the shard number.
        records (list of dict): the per-clip records, in clip order.
        attributions (mapping): ``method -> (n, 1, T, H, W)`` array, rows in clip order.
        manifest (mapping): facts about the writing (run id, rank, seconds ...).
        float16 (bool, optional): store attributions as float16. Default: False

    Returns:
        None

    Example::

        >>> write_shard(out, 0, records, {"gradcam_tube": attr}, {"run_id": "abc"})
    """
    dtype = np.float16 if float16 else np.float32
    arrays: dict[str, Any] = {"index": np.array([r["index"] for r in records], dtype=np.int64)}
    arrays.update({f"attr_{name}": a.astype(dtype) for name, a in attributions.items()})
    buffer = io.BytesIO()
    # np.savez_compressed's layout, but with the fastest deflate level: relevance maps compress
    # about as well at level 1, several times faster than at numpy's default.
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for key, array in arrays.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
    atomic_write(shard_path(out_dir, shard, ".npz"), buffer.getvalue())
    payload = {"manifest": dict(manifest), "records": records}
    atomic_write(shard_path(out_dir, shard, ".json"), json.dumps(payload).encode())


def load_records(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    r"""Per-clip metrics of every finished shard of a run, ordered by clip index.

    Args:
        out_dir (str or PathLike): the ``out_dir`` of :func:`~captum_video.batch.explain_dataset`.

    Returns:
        list of dict: one record per clip: ``index``, ``name``, ``label``, ``target``,
        ``prediction``, ``probability``, ``target_probability``, ``top5`` (pairs of class and
        probability), ``temporal_sensitivity`` (``op -> drop``) and ``methods``
        (``name -> {"curve", "spatial_bias", "relevance_mass"}``); NaN where undefined.

    Example::

        >>> records = load_records("runs/moving-shapes")
        >>> records[0]["methods"]["gradcam_tube"]["curve"][:3]
    """
    records: list[dict[str, Any]] = []
    for path in sorted((Path(out_dir) / "shards").glob("shard-*.json")):
        records += json.loads(path.read_text())["records"]
    return sorted(records, key=lambda r: r["index"])


def load_manifests(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    r"""The manifests of a run's finished shards (shard, clips, run id, rank, seconds, time).

    Args:
        out_dir (str or PathLike): the ``out_dir`` of :func:`~captum_video.batch.explain_dataset`.

    Returns:
        list of dict: one manifest per shard, ordered by shard number.

    Example::

        >>> {m["run_id"] for m in load_manifests("runs/moving-shapes")}  # calls that wrote it
    """
    paths = sorted((Path(out_dir) / "shards").glob("shard-*.json"))
    return [json.loads(p.read_text())["manifest"] for p in paths]


def load_attribution(out_dir: str | os.PathLike, index: int, method: str) -> Tensor:
    r"""The stored attribution of one clip, ``(1, T, H, W)`` float32.

    Args:
        out_dir (str or PathLike): the ``out_dir`` of :func:`~captum_video.batch.explain_dataset`.
        index (int): the clip's index in the data set.
        method (str): the method's name.

    Returns:
        Tensor: the channel-reduced relevance ``(1, T, H, W)`` (float32, also when stored as
        float16).

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
    path = shard_path(out, index // config["shard_size"], ".npz")
    if not path.exists():
        raise FileNotFoundError(f"clip {index} is not explained yet ({path.name} is missing)")
    with np.load(path) as data:
        position = int(np.flatnonzero(data["index"] == index)[0])
        return torch.from_numpy(data[f"attr_{method}"][position].astype(np.float32))


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

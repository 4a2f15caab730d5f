r"""One process at a time per output folder: ``out_dir/.lock``.

Two runs writing the same shards race on their ``.tmp`` files and on ``run.json`` (one of
them crashed renaming a ``.tmp`` file the other had already renamed). :func:`out_dir_lock`
creates ``out_dir/.lock`` with ``O_CREAT | O_EXCL`` (atomic on local file systems and NFS v3+),
holding the owner's pid, host and start time, and removes it when the block ends, also on
an error. A second process gets :class:`OutDirInUse` naming the owner. A lock whose owner
is gone (same host, pid not alive, or a zombie) was left by a killed run: it is taken over
with a warning. Under ``torchrun`` only rank 0 takes the lock (the ranks of one run share the
folder by design).
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["LOCK_FILE", "OutDirInUse", "out_dir_lock"]

LOCK_FILE = ".lock"
#: A lock file still empty after this long was left by a process killed while creating it.
_EMPTY_GRACE_S = 10.0


class OutDirInUse(RuntimeError):
    """Another live process holds ``out_dir/.lock``.

    Example::

        >>> raise OutDirInUse("out is in use by process 1234 on host h since ...")
    """


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie, killed but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): trust kill(pid, 0)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(path.read_text())
        return holder if isinstance(holder, dict) and "pid" in holder else None
    except (OSError, ValueError):
        return None


def _stale(path: Path, holder: dict[str, Any] | None) -> str | None:
    """Why the lock at ``path`` is left over by a dead process, or None if it may be live."""
    if holder is None:
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return "it vanished"
        return "it is empty" if age > _EMPTY_GRACE_S else None
    if holder.get("host") == socket.gethostname() and not _alive(int(holder["pid"])):
        return f"process {holder['pid']} is not running"
    return None


def _take_over(path: Path, seen: dict[str, Any] | None) -> None:
    """Remove the stale lock ``seen``, but not a fresh one another process made meanwhile."""
    aside = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex}")
    try:
        os.rename(path, aside)  # atomic: of two processes taking over, one gets the file
    except FileNotFoundError:
        return
    if _read(aside) != seen:  # we moved a live lock created after our look: put it back
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
    aside.unlink(missing_ok=True)


def _describe(out_dir: Path, holder: dict[str, Any] | None) -> str:
    if holder is None:
        return (
            f"{out_dir} is in use: another process is creating {out_dir / LOCK_FILE}; wait for "
            "it or remove the file if no run is going on"
        )
    since = holder.get("started_at", "an unknown time")
    return (
        f"{out_dir} is in use by process {holder['pid']} on host {holder.get('host')} since "
        f"{since}; wait for it or remove {out_dir / LOCK_FILE} if it is dead"
    )


@contextmanager
def out_dir_lock(out_dir: str | os.PathLike) -> Iterator[Path]:
    r"""Hold ``out_dir/.lock`` for the block.

    Args:
        out_dir (str or PathLike): the run's folder (created).

    Yields:
        Path: the lock file.

    Raises:
        OutDirInUse: a live process holds the lock (or one on another host, which cannot be
            checked); the message names it and says how to remove a dead one's lock.

    Example::

        >>> with out_dir_lock("runs/x"):
        ...     pass  # explain into runs/x
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_FILE
    mine = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "token": uuid.uuid4().hex,
    }
    for _ in range(5):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read(path)
            why = _stale(path, holder)
            if why is None:
                raise OutDirInUse(_describe(out, holder)) from None
            warnings.warn(
                f"{path} was left by a run that is gone ({why}); taking it over",
                stacklevel=3,
            )
            _take_over(path, holder)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(mine))
            f.flush()
            os.fsync(f.fileno())
        break
    else:
        raise OutDirInUse(_describe(out, _read(path)))
    try:
        yield path
    finally:
        if _read(path) == mine:  # never remove a lock another process took over
            path.unlink(missing_ok=True)

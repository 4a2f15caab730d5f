"""Fault injection: runs killed at random points, damaged shards, a lost run.json, two processes.

Every scenario ends with a run identical to a clean one (``_assert_same_results`` of
tests/test_batch.py) and with the damaged parts named in the warnings or errors.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from captum_video.pipeline import explain_dataset
from captum_video.pipeline.lock import OutDirInUse, out_dir_lock
from captum_video.pipeline.publish import merge
from captum_video.pipeline.store import DamagedShard, load_attribution, load_records
from tests.test_batch import (
    BATCH_SIZE,
    NUM_CLIPS,
    SCRIPT,
    SHARD_SIZE,
    _assert_same_results,
    _env,
    _moving_shapes,
)

SHARDS = NUM_CLIPS // SHARD_SIZE
OPTS: dict[str, Any] = {
    "batch_size": BATCH_SIZE,
    "shard_size": SHARD_SIZE,
    "highlights": 0,
    "tensorboard": False,
    "report": False,
    "progress": False,
}


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory, demo_model: torch.nn.Module) -> Path:
    """An uninterrupted run with the script's configuration."""
    out = tmp_path_factory.mktemp("clean")
    explain_dataset(demo_model, _moving_shapes(), ["gradcam_tube"], out, **OPTS)
    return out


def _explain(model: torch.nn.Module, out: Path, **kwargs: Any) -> tuple[Any, list[str]]:
    """Run (resume) into ``out``; the run and the messages of the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = explain_dataset(model, _moving_shapes(), ["gradcam_tube"], out, **OPTS, **kwargs)
    return run, [str(w.message) for w in caught]


def _flip_bytes(path: Path, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    for _ in range(4):
        position = rng.randrange(len(data) // 4, len(data))
        data[position] ^= 0xFF
    path.write_bytes(bytes(data))


def _wait_for_lock(out: Path, proc: subprocess.Popen) -> dict[str, Any]:
    deadline = time.monotonic() + 240
    while True:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the script took no lock in time"
        try:
            return json.loads((out / ".lock").read_text())
        except (FileNotFoundError, ValueError):
            time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_runs_killed_at_random_points_while_locked_resume_to_a_clean_run(
    seed: int, clean: Path, tmp_path: Path, demo_model: torch.nn.Module
) -> None:
    rng = random.Random(seed)
    out = tmp_path / "run"
    # A run in another process: while it holds the lock a second one is refused; then it is
    # killed at a random point (4 batches of ~1.2 s of sleeping model calls after the lock).
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(out), "--sleep", "0.3", "--batch-size", "2"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        holder = _wait_for_lock(out, proc)
        assert holder["pid"] == proc.pid
        with pytest.raises(OutDirInUse) as refused:
            explain_dataset(demo_model, _moving_shapes(), ["gradcam_tube"], out, **OPTS)
        message = str(refused.value)
        assert f"in use by process {proc.pid} on host {socket.gethostname()} since" in message
        assert "remove" in message and str(out / ".lock") in message
        time.sleep(rng.uniform(0.0, 3.5))
        assert proc.poll() is None, "the run ended before it was killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert (out / ".lock").exists()  # left by the killed run

    run, messages = _explain(demo_model, out)
    assert any("was left by a run that is gone" in m for m in messages), messages
    assert run.computed_clips + run.skipped_clips == NUM_CLIPS
    assert not (out / ".lock").exists()
    _assert_same_results(out, clean)


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory, demo_model: torch.nn.Module) -> Path:
    """A run of another configuration (another shuffle seed) with shards of the same shape."""
    out = tmp_path_factory.mktemp("foreign")
    explain_dataset(demo_model, _moving_shapes(), ["gradcam_tube"], out, seed=1, **OPTS)
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_damaged_copied_and_foreign_shards_are_named_and_recomputed(
    seed: int, clean: Path, foreign: Path, tmp_path: Path, demo_model: torch.nn.Module
) -> None:
    rng = random.Random(seed)
    out = tmp_path / "run"
    shutil.copytree(clean, out)
    # Flip bytes of one .npz, truncate one .json, copy one shard's .json over another's: each
    # is named and recomputed; the fourth shard is kept.
    flipped, truncated, source, target = rng.sample(range(SHARDS), 4)
    shards = out / "shards"
    _flip_bytes(shards / f"shard-{flipped:05d}.npz", rng)
    text = (shards / f"shard-{truncated:05d}.json").read_bytes()
    (shards / f"shard-{truncated:05d}.json").write_bytes(text[: rng.randrange(1, len(text))])
    shutil.copy(shards / f"shard-{source:05d}.json", shards / f"shard-{target:05d}.json")
    run, messages = _explain(demo_model, out)
    assert (run.computed_clips, run.skipped_clips) == (3 * SHARD_SIZE, SHARD_SIZE)
    named = " ".join(messages)
    assert f"shard-{flipped:05d}.npz is damaged" in named
    assert f"shard-{truncated:05d}.json is damaged or truncated" in named
    assert f"shard-{target:05d}.json describes shard {source}" in named
    _assert_same_results(out, clean)

    # run.json deleted, and a shard of another run slipped in: the shards of this run are
    # kept, the foreign one is named and recomputed.
    (out / "run.json").unlink()
    stranger = rng.randrange(SHARDS)
    for suffix in (".json", ".npz"):
        name = f"shard-{stranger:05d}{suffix}"
        shutil.copy(foreign / "shards" / name, shards / name)
    run, messages = _explain(demo_model, out)
    assert (run.computed_clips, run.skipped_clips) == (SHARD_SIZE, NUM_CLIPS - SHARD_SIZE)
    assert any("run.json is missing" in m for m in messages), messages
    assert any(f"shard-{stranger:05d}.json belongs to another run" in m for m in messages)
    _assert_same_results(out, clean)


def test_the_merge_refuses_a_damaged_shard_and_readers_name_files(
    clean: Path, tmp_path: Path
) -> None:
    out = tmp_path / "copy"
    shutil.copytree(clean, out)
    config = json.loads((out / "run.json").read_text())
    _flip_bytes(out / "shards" / "shard-00002.npz", random.Random(0))
    with pytest.raises(DamagedShard, match=r"shard-00002.npz is damaged.*refusing to merge"):
        merge(out, config, _moving_shapes(), 0, ".gif", 8.0, False, False)
    with pytest.raises(DamagedShard, match=r"shard-00002.npz cannot be read"):
        load_attribution(out, 4, "gradcam_tube")

    shutil.copy(clean / "shards" / "shard-00002.npz", out / "shards" / "shard-00002.npz")
    shutil.copy(out / "shards" / "shard-00000.json", out / "shards" / "shard-00001.json")
    with pytest.raises(DamagedShard, match=r"shard-00001.json describes shard 0"):
        merge(out, config, _moving_shapes(), 0, ".gif", 8.0, False, False)

    text = (clean / "shards" / "shard-00001.json").read_bytes()
    (out / "shards" / "shard-00001.json").write_bytes(text[:100])
    with pytest.raises(DamagedShard, match=r"shards/shard-00001.json is damaged or truncated"):
        load_records(out)
    with pytest.raises(DamagedShard, match=r"shard-00001.json is damaged or truncated"):
        merge(out, config, _moving_shapes(), 0, ".gif", 8.0, False, False)


def test_a_stale_lock_is_taken_over_and_a_live_one_is_not(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is free now
    host = socket.gethostname()
    lock = tmp_path / ".lock"
    lock.write_text(json.dumps({"pid": dead.pid, "host": host, "started_at": "earlier"}))
    with pytest.warns(UserWarning, match=f"process {dead.pid} is not running"):
        with out_dir_lock(tmp_path):
            assert json.loads(lock.read_text())["pid"] == os.getpid()
            with pytest.raises(OutDirInUse, match=f"in use by process {os.getpid()}"):
                with out_dir_lock(tmp_path):
                    pass
    assert not lock.exists()  # released, also after the nested refusal

    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started_at": "noon"}))
    with pytest.raises(OutDirInUse, match="process 1 on host elsewhere since noon"):
        with out_dir_lock(tmp_path):
            pass
    assert json.loads(lock.read_text())["host"] == "elsewhere"  # another host's lock stays

    lock.write_text("")  # a process killed between creating and writing the lock
    os.utime(lock, (time.time() - 60, time.time() - 60))
    with pytest.warns(UserWarning, match="it is empty"):
        with out_dir_lock(tmp_path):
            pass


def test_an_error_in_the_run_releases_the_lock(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 6 * 6, 3))
    data = torch.utils.data.TensorDataset(torch.rand(2, 3, 4, 6, 6))
    with pytest.raises(ValueError, match="returned"):
        explain_dataset(model, data, {"m": lambda x, t: x[:, :, :1]}, tmp_path, **OPTS)
    assert not (tmp_path / ".lock").exists()

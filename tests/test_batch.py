"""explain_dataset: per-clip results against direct computation, shards, resuming, torchrun."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from captum_video._distributed import my_shards
from captum_video.attr import GradCAMTube, selective_relevance
from captum_video.baselines import shuffle
from captum_video.datasets import MovingShapes
from captum_video.io import normalize_video
from captum_video.metrics import relevance_mass, spatial_bias, temporal_sensitivity
from captum_video.pipeline import explain_dataset
from captum_video.pipeline.store import load_attribution, load_manifests, load_records
from tests.helpers import assert_model_unchanged, model_snapshot

SCRIPT = Path(__file__).parent / "_scripts" / "explain_moving_shapes.py"
# The data set and options of the script (tests/_scripts/explain_moving_shapes.py).
NUM_CLIPS, SEED, SHARD_SIZE, BATCH_SIZE = 8, 77, 2, 4
QUIET = {"progress": False, "highlights": 0, "tensorboard": False, "report": False}


def _moving_shapes() -> MovingShapes:
    return MovingShapes("motion", num_samples=NUM_CLIPS, seed=SEED)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, demo_model: torch.nn.Module) -> Path:
    """A single-process run with the script's settings (report on, one highlight)."""
    out = tmp_path_factory.mktemp("reference")
    explain_dataset(
        demo_model,
        _moving_shapes(),
        ["gradcam_tube"],
        out,
        batch_size=BATCH_SIZE,
        shard_size=SHARD_SIZE,
        highlights=1,
        clip_format=".gif",
        progress=False,
    )
    return out


def _assert_same_results(a: Path, b: Path, methods: tuple[str, ...] = ("gradcam_tube",)) -> None:
    """Two runs hold the same records, attributions and summary (up to float rounding)."""

    def close(x: Any, y: Any, path: str) -> None:
        if isinstance(x, dict):
            assert x.keys() == y.keys(), path
            for k in x:
                close(x[k], y[k], f"{path}.{k}")
        elif isinstance(x, list):
            assert len(x) == len(y), path
            for i, (u, v) in enumerate(zip(x, y, strict=True)):
                close(u, v, f"{path}[{i}]")
        elif isinstance(x, float):
            assert math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-6) or (
                math.isnan(x) and math.isnan(y)
            ), f"{path}: {x} != {y}"
        else:
            assert x == y, f"{path}: {x!r} != {y!r}"

    close(load_records(a), load_records(b), "records")
    summary = [json.loads((d / "summary.json").read_text()) for d in (a, b)]
    for s in summary:
        s.pop("highlights", None), s.pop("exports", None), s.pop("tensorboard", None)
    close(summary[0], summary[1], "summary")
    for index in range(NUM_CLIPS):
        for method in methods:
            torch.testing.assert_close(
                load_attribution(a, index, method),
                load_attribution(b, index, method),
                rtol=1e-4,
                atol=1e-6,
            )


# --------------------------------------------------------------------------- per-clip results


def test_records_match_direct_computation(reference: Path, demo_model: torch.nn.Module) -> None:
    clips, labels, masks = _moving_shapes().tensors()
    with torch.no_grad():
        probs = demo_model(clips).softmax(1)
    prob, pred = probs.max(1)
    attr = GradCAMTube(demo_model, demo_model.layer3).attribute(clips, target=pred)
    selected, _, _ = selective_relevance(attr, sigma=3.0)
    bias = spatial_bias(attr, selected)
    mass = relevance_mass(attr, masks)
    frozen = temporal_sensitivity(demo_model, clips, pred, ops=("freeze",))["freeze"]
    shuffled = torch.cat(
        [shuffle(clips[i : i + 1], torch.Generator().manual_seed(i)) for i in range(NUM_CLIPS)]
    )
    with torch.no_grad():
        p_shuffled = demo_model(shuffled).softmax(1).gather(1, pred[:, None])[:, 0]

    records = load_records(reference)
    assert [r["index"] for r in records] == list(range(NUM_CLIPS))
    for i, r in enumerate(records):
        assert (r["label"], r["prediction"], r["target"]) == (
            int(labels[i]),
            int(pred[i]),
            int(pred[i]),
        )
        assert r["probability"] == pytest.approx(float(prob[i]), abs=1e-6)
        assert r["top5"][0] == [int(pred[i]), pytest.approx(float(prob[i]), abs=1e-6)]
        ts = r["temporal_sensitivity"]
        assert ts["freeze"] == pytest.approx(float(frozen[i]), abs=1e-5)
        assert ts["shuffle"] == pytest.approx(float(prob[i] - p_shuffled[i]), abs=1e-5)
        m = r["methods"]["gradcam_tube"]
        frame_mass = attr[i].abs().sum(dim=(0, 2, 3))
        assert m["curve"] == pytest.approx((frame_mass / frame_mass.sum()).tolist(), abs=1e-6)
        assert m["spatial_bias"] == pytest.approx(float(bias[i]), abs=1e-5)
        assert m["relevance_mass"] == pytest.approx(float(mass[i]), abs=1e-5)
        torch.testing.assert_close(load_attribution(reference, i, "gradcam_tube"), attr[i])
    # The demo model decides from motion: freezing the clips must cost most of its confidence.
    summary = json.loads((reference / "summary.json").read_text())
    assert summary["reliance"] == "motion"
    assert summary["overall"]["temporal_sensitivity"]["freeze"] == pytest.approx(
        float(frozen.mean()), abs=1e-5
    )
    assert summary["overall"]["accuracy"] == pytest.approx(float((pred == labels).float().mean()))
    for row in summary["per_class"]:
        in_class = labels == row["class"]
        assert row["clips"] == int(in_class.sum())
        assert row["methods"]["gradcam_tube"]["spatial_bias"] == pytest.approx(
            float(bias[in_class].mean()), abs=1e-5
        )


def test_reference_run_writes_tables_report_tensorboard_and_clips(reference: Path) -> None:
    summary = json.loads((reference / "summary.json").read_text())
    (index,) = summary["highlights"]
    video = reference / summary["exports"][str(index)]["gradcam_tube"]
    assert video.suffix == ".gif" and video.stat().st_size > 0
    assert list((reference / "tensorboard").glob("events.out.tfevents.*"))
    rows = (reference / "clips.csv").read_text().splitlines()
    assert len(rows) == NUM_CLIPS + 1 and rows[0].startswith("index,name,label")
    assert (reference / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_explain_dataset_leaves_the_model_as_it_was(
    demo_model: torch.nn.Module, tmp_path: Path
) -> None:
    snapshot = model_snapshot(demo_model)
    demo_model.train()
    try:
        data = MovingShapes("motion", num_samples=2, seed=1)
        explain_dataset(demo_model, data, "gradcam_tube", tmp_path, temporal_ops=(), **QUIET)
        assert demo_model.training and all(m.training for m in demo_model.modules())
    finally:
        demo_model.eval()
    assert_model_unchanged(snapshot, demo_model)


# --------------------------------------------------------------------------- options, fast


def _random_set(n: int = 6, labels: bool = True) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    clips = torch.rand(n, 3, 4, 6, 6, generator=g)
    return TensorDataset(clips, torch.arange(n) % 3) if labels else TensorDataset(clips)


class _TinyModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3 * 4 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def _identity(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return x.clone()


def test_float16_storage_and_custom_methods(tmp_path: Path) -> None:
    model, data = _TinyModel(), _random_set()
    methods = {"input": _identity, "twice": lambda x, t: 2 * x[:, :1]}
    run32 = explain_dataset(model, data, methods, tmp_path / "a", shard_size=4, **QUIET)
    run16 = explain_dataset(
        model, data, methods, tmp_path / "b", shard_size=4, float16=True, **QUIET
    )
    with np.load(tmp_path / "b" / "shards" / "shard-00000.npz") as shard:
        assert shard["attr_input"].dtype == np.float16
        assert shard["attr_input"].shape == (4, 1, 4, 6, 6)
    clips = data.tensors[0]
    for i in range(len(data)):
        # multi-channel relevance is summed over channels
        torch.testing.assert_close(run32.attribution(i, "input"), clips[i].sum(0, keepdim=True))
        torch.testing.assert_close(run32.attribution(i, "twice"), 2 * clips[i, :1])
        torch.testing.assert_close(
            run16.attribution(i, "input"), run32.attribution(i, "input"), rtol=1e-3, atol=1e-3
        )
    assert run32.computed_clips == len(data) and run32.skipped_clips == 0
    assert run32.summary["has_labels"] and not run32.summary["has_masks"]


def test_preprocess_reaches_the_model_but_not_the_stored_clip(tmp_path: Path) -> None:
    model, data = _TinyModel(), _random_set(4)
    seen: list[torch.Tensor] = []

    def spy(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        seen.append(x)
        return x[:, :1].clone()

    explain_dataset(
        model, data, {"spy": spy}, tmp_path, preprocess="kinetics", batch_size=4, **QUIET
    )
    torch.testing.assert_close(seen[0], normalize_video(data.tensors[0], "kinetics"))


def test_dataloader_dict_items_label_target_and_progress(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    class Dicts(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 5

        def __getitem__(self, i: int) -> dict[str, Any]:
            return {"video": torch.full((3, 4, 6, 6), i / 5), "label": i % 3}

    loader = DataLoader(Dicts(), batch_size=2)
    targets: list[list[int]] = []

    def record(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        targets.append(target.tolist())
        return x[:, :1].clone()

    opts = {**QUIET, "progress": True}
    run = explain_dataset(_TinyModel(), loader, {"r": record}, tmp_path, target="label", **opts)
    assert targets == [[0, 1], [2, 0], [1]]  # batch size from the loader, targets = labels
    assert [r["target"] for r in run.records()] == [0, 1, 2, 0, 1]
    assert "5/5" in capsys.readouterr().err  # the tqdm bar


def test_interrupted_run_resumes_without_recomputing_finished_shards(tmp_path: Path) -> None:
    model, data = _TinyModel(), _random_set(10)
    calls = {"n": 0}

    def flaky(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # the user stops the run during the 4th batch
        return x[:, :1] * 3

    opts = {"shard_size": 3, "batch_size": 2, **QUIET}
    with pytest.raises(KeyboardInterrupt):
        explain_dataset(model, data, {"m": flaky}, tmp_path, **opts)
    # batches 1-3 hold clips 0-5: shards 0 and 1 are written, shard 2 (clips 6-8) is not
    assert sorted(m["shard"] for m in load_manifests(tmp_path)) == [0, 1]
    first_id = load_manifests(tmp_path)[0]["run_id"]
    (tmp_path / "shards" / "shard-00002.npz.tmp").write_bytes(b"cut off")  # a killed write
    run = explain_dataset(model, data, {"m": flaky}, tmp_path, **opts)
    assert (run.skipped_clips, run.computed_clips) == (6, 4)
    manifests = load_manifests(tmp_path)
    assert [m["run_id"] == first_id for m in manifests] == [True, True, False, False]
    assert not list((tmp_path / "shards").glob("*.tmp"))
    for i in range(10):
        torch.testing.assert_close(run.attribution(i, "m"), 3 * data.tensors[0][i, :1])
    again = explain_dataset(model, data, {"m": flaky}, tmp_path, **opts)
    assert (again.skipped_clips, again.computed_clips) == (10, 0)


def test_other_configuration_in_out_dir_is_an_error_unless_overwrite(tmp_path: Path) -> None:
    model, data = _TinyModel(), _random_set(4)
    explain_dataset(model, data, {"a": _identity}, tmp_path, **QUIET)
    with pytest.raises(
        ValueError, match=r"other methods \(methods differs\).*different configuration"
    ):
        explain_dataset(model, data, {"b": _identity}, tmp_path, **QUIET)
    run = explain_dataset(model, data, {"b": _identity}, tmp_path, overwrite=True, **QUIET)
    assert run.computed_clips == 4 and run.summary["methods"] == ["b"]
    with pytest.raises(ValueError, match=r"another fingerprint \(fingerprint differs\)"):
        explain_dataset(model, data, {"b": _identity}, tmp_path, fingerprint="w2.pt", **QUIET)


def test_resuming_on_other_data_is_an_error(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 16 * 16, 4))
    opts = {"temporal_ops": (), "selective_sigma": None, **QUIET}
    shapes = {"num_frames": 4, "size": 16, "speed": (1.0, 1.0), "object_size": 3}
    data = MovingShapes("motion", num_samples=2, seed=1, **shapes)
    explain_dataset(model, data, {"m": _identity}, tmp_path, **opts)
    other = MovingShapes("motion", num_samples=2, seed=2, **shapes)
    with pytest.raises(ValueError, match=r"other data \(data differs\)"):
        explain_dataset(model, other, {"m": _identity}, tmp_path, **opts)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"methods": ["no_such_method"]}, ValueError, "unknown method"),
        ({"methods": {"bad name": _identity}}, ValueError, "names must match"),
        ({"methods": {"m": 3}}, TypeError, "callable"),
        ({"methods": {"m": lambda x, t: x[:, :, :2]}}, ValueError, "returned"),
        ({"target": "label"}, ValueError, "needs a data set that gives labels"),
        ({"target": 7}, ValueError, r"targets must be in \[0, 3\)"),
        ({"target": "best"}, ValueError, "target must be"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"shard_size": 0}, ValueError, "shard_size"),
        ({"preprocess": "imagenet-ish"}, ValueError, "unknown normalisation preset"),
        ({"temporal_ops": ("reverse",)}, ValueError, "temporal_ops"),
    ],
)
def test_bad_arguments_are_clear_errors(
    tmp_path: Path, kwargs: dict[str, Any], error: type, match: str
) -> None:
    model = _TinyModel()
    snapshot = model_snapshot(model)
    args = {"methods": {"m": _identity}, **kwargs}
    with pytest.raises(error, match=match):
        explain_dataset(
            model, _random_set(labels=False), args.pop("methods"), tmp_path, **args, **QUIET
        )
    assert_model_unchanged(snapshot, model)


def test_data_that_is_not_a_clip_or_not_indexable_is_rejected(tmp_path: Path) -> None:
    class Stream(IterableDataset):
        def __iter__(self):  # type: ignore[no-untyped-def]
            yield torch.rand(3, 4, 6, 6)

    with pytest.raises(TypeError, match="map-style"):
        explain_dataset(_TinyModel(), Stream(), {"m": _identity}, tmp_path, **QUIET)
    images = TensorDataset(torch.rand(2, 3, 6, 6))
    with pytest.raises(ValueError, match=r"item 0 must hold a float clip \(C, T, H, W\)"):
        explain_dataset(_TinyModel(), images, {"m": _identity}, tmp_path / "x", **QUIET)


@pytest.mark.parametrize("world", [2, 3, 4])
def test_ranks_take_each_pending_shard_exactly_once(world: int) -> None:
    pending = [0, 2, 3, 5, 8]
    taken = [s for rank in range(world) for s in my_shards(pending, rank, world)]
    assert sorted(taken) == pending


# --------------------------------------------------------------------------- processes


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": root, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_torchrun_two_ranks_gives_the_single_process_result(
    reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "torchrun"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = subprocess.run(
        [*cmd, str(SCRIPT), str(out)], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    manifests = load_manifests(out)
    assert {m["rank"] for m in manifests} == {0, 1}  # both ranks computed shards
    assert {m["world_size"] for m in manifests} == {2}
    assert len({m["run_id"] for m in manifests}) == 1
    _assert_same_results(out, reference)
    assert (out / "report.html").exists()


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(
    reference: Path, tmp_path: Path, demo_model: torch.nn.Module
) -> None:
    out = tmp_path / "killed"
    # batches of 2 clips = one shard each, 1 s apart: kill after the first shard is written
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(out), "--sleep", "0.25", "--batch-size", "2"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while not list((out / "shards").glob("shard-*.json")):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "no shard was written in time"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    before = {m["shard"]: m["run_id"] for m in load_manifests(out)}
    assert 1 <= len(before) < NUM_CLIPS // SHARD_SIZE, before
    assert not (out / "summary.json").exists()

    with pytest.warns(UserWarning, match="left by a run that is gone"):  # the killed run's lock
        run = explain_dataset(
            demo_model,
            _moving_shapes(),
            ["gradcam_tube"],
            out,
            batch_size=BATCH_SIZE,
            shard_size=SHARD_SIZE,
            highlights=0,
            tensorboard=False,
            progress=False,
        )
    assert run.skipped_clips == SHARD_SIZE * len(before)
    assert run.computed_clips == NUM_CLIPS - run.skipped_clips  # finished clips not recomputed
    after = {m["shard"]: m["run_id"] for m in load_manifests(out)}
    assert all(after[s] == before[s] for s in before)  # finished shards untouched
    assert len(set(after.values())) == 2
    _assert_same_results(out, reference)

"""A run is identified by what it computes: weights, layer, method arguments, data, version.

Each test resumes an ``out_dir`` with one thing changed and checks the refusal names that
thing; the oracle of "the results are the new configuration's" is the model itself.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import Subset, TensorDataset

import captum_video
from captum_video.cli import main
from captum_video.datasets import MovingShapes
from captum_video.pipeline import explain_dataset
from captum_video.pipeline.identity import (
    ConfigurationChanged,
    data_fingerprint,
    model_sha256,
    run_key,
)
from captum_video.pipeline.store import load_records
from captum_video.video_folder import VideoFolder

QUIET = {"progress": False, "highlights": 0, "tensorboard": False, "report": False}
FAST = {**QUIET, "temporal_ops": (), "selective_sigma": None}


class _TinyModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3 * 4 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def _clips(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 4, 6, 6, generator=torch.Generator().manual_seed(seed))


def _identity(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return x.clone()


def _double(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 2 * x


def test_resuming_with_other_weights_is_refused_and_overwrite_starts_over(
    tmp_path: Path, demo_model: torch.nn.Module, appearance_model: torch.nn.Module
) -> None:
    # The case: an out_dir written by the motion model, resumed with the appearance
    # model, reported "computed 0, skipped 8" and the motion model's results.
    data = MovingShapes("motion", num_samples=4, seed=5)
    first = explain_dataset(demo_model, data, ["gradcam_tube"], tmp_path, shard_size=2, **FAST)
    assert (first.computed_clips, first.skipped_clips) == (4, 0)
    with pytest.raises(ConfigurationChanged, match=r"other model weights \(model_sha256 differs\)"):
        explain_dataset(appearance_model, data, ["gradcam_tube"], tmp_path, shard_size=2, **FAST)
    again = explain_dataset(
        appearance_model, data, ["gradcam_tube"], tmp_path, shard_size=2, overwrite=True, **FAST
    )
    assert (again.computed_clips, again.skipped_clips) == (4, 0)
    clips = data.tensors()[0]
    with torch.no_grad():
        prob, pred = appearance_model(clips).softmax(1).max(1)
    records = load_records(tmp_path)
    assert [r["prediction"] for r in records] == pred.tolist()  # the appearance model's
    assert [r["probability"] for r in records] == pytest.approx(prob.tolist(), abs=1e-6)


def test_resuming_with_another_layer_is_refused(
    tmp_path: Path, demo_model: torch.nn.Module
) -> None:
    data = MovingShapes("motion", num_samples=2, seed=5)
    explain_dataset(demo_model, data, ["gradcam_tube"], tmp_path, **FAST)
    assert json.loads((tmp_path / "run.json").read_text())["layer"] == "layer3"  # the default
    with pytest.raises(ConfigurationChanged, match=r"another layer \(layer differs\)"):
        explain_dataset(
            demo_model, data, ["gradcam_tube"], tmp_path, layer=demo_model.layer2, **FAST
        )
    # the default layer given explicitly is the same run
    run = explain_dataset(
        demo_model, data, ["gradcam_tube"], tmp_path, layer=demo_model.layer3, **FAST
    )
    assert (run.computed_clips, run.skipped_clips) == (0, 2)


def test_resuming_with_other_method_arguments_is_refused(tmp_path: Path) -> None:
    model, data = _TinyModel(), TensorDataset(_clips())
    explain_dataset(model, data, ["saliency"], tmp_path / "a", **FAST)
    with pytest.raises(ConfigurationChanged, match=r"other method arguments \(method_args"):
        explain_dataset(model, data, {"saliency": {"abs": False}}, tmp_path / "a", **FAST)
    # a name, or a name with no keywords replaced, is the same run ...
    run = explain_dataset(model, data, {"saliency": {}}, tmp_path / "a", **FAST)
    assert run.computed_clips == 0
    # ... and so is another chunk size: internal_batch_size only splits the work
    explain_dataset(model, data, {"integrated_gradients": {}}, tmp_path / "b", **FAST)
    run = explain_dataset(
        model, data, {"integrated_gradients": {"internal_batch_size": 3}}, tmp_path / "b", **FAST
    )
    assert run.computed_clips == 0
    with pytest.raises(ConfigurationChanged, match=r"method_args differs"):
        explain_dataset(
            model, data, {"integrated_gradients": {"n_steps": 4}}, tmp_path / "b", **FAST
        )
    # a user callable counts by its qualified name
    explain_dataset(model, data, {"m": _identity}, tmp_path / "c", **FAST)
    with pytest.raises(ConfigurationChanged, match=r"method_args differs"):
        explain_dataset(model, data, {"m": _double}, tmp_path / "c", **FAST)


def test_resuming_with_other_tensor_data_is_refused(tmp_path: Path) -> None:
    model, clips = _TinyModel(), _clips()
    explain_dataset(model, TensorDataset(clips), {"m": _identity}, tmp_path, **FAST)
    same = explain_dataset(model, TensorDataset(clips.clone()), {"m": _identity}, tmp_path, **FAST)
    assert same.computed_clips == 0  # equal tensors are the same data
    changed = clips.clone()
    changed[2, 1, 3, 4, 5] += 0.5  # one voxel of one clip
    with pytest.raises(ConfigurationChanged, match=r"other data \(data differs\)"):
        explain_dataset(model, TensorDataset(changed), {"m": _identity}, tmp_path, **FAST)


def test_resuming_under_another_package_version_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, data = _TinyModel(), TensorDataset(_clips())
    explain_dataset(model, data, {"m": _identity}, tmp_path, **FAST)
    monkeypatch.setattr(captum_video, "__version__", "99.0")
    with pytest.raises(
        ConfigurationChanged, match=r"another captum_video version \(version differs\)"
    ):
        explain_dataset(model, data, {"m": _identity}, tmp_path, **FAST)
    run = explain_dataset(model, data, {"m": _identity}, tmp_path, overwrite=True, **FAST)
    assert run.computed_clips == 4
    assert json.loads((tmp_path / "run.json").read_text())["version"] == "99.0"


def test_max_memory_is_not_part_of_the_run(tmp_path: Path, demo_model: torch.nn.Module) -> None:
    data = MovingShapes("motion", num_samples=2, seed=5)
    explain_dataset(demo_model, data, ["saliency"], tmp_path, **FAST)
    run = explain_dataset(demo_model, data, ["saliency"], tmp_path, max_memory="64MiB", **FAST)
    assert run.computed_clips == 0


def test_run_key_and_model_hash_cover_parameters_and_buffers() -> None:
    model = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 1), torch.nn.BatchNorm3d(4))
    twin = copy.deepcopy(model)
    assert model_sha256(model) == model_sha256(twin)
    twin[1].running_mean += 1e-3  # a buffer, not a parameter
    assert model_sha256(model) != model_sha256(twin)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin[0].weight[0, 0, 0, 0, 0] += 1e-6
    assert model_sha256(model) != model_sha256(twin)
    assert run_key({"a": 1, "b": [1, 2]}) == run_key({"b": (1, 2), "a": 1, "run_key": "x"})


def test_model_hash_of_30m_parameters_is_fast() -> None:
    model = torch.nn.Sequential(*[torch.nn.Linear(1000, 1000) for _ in range(30)])
    tic = time.perf_counter()
    model_sha256(model)
    seconds = time.perf_counter() - tic
    # about 0.2 s on one core with SHA-NI; a loose bound for loaded CI machines
    assert seconds < 5.0, seconds


def _write_avi(path: Path, clip: torch.Tensor) -> None:
    """A (3, T, H, W) clip in [0, 1] as an MJPG .avi file."""
    t, h, w = clip.shape[1:]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 8, (w, h))
    frames = (clip.permute(1, 2, 3, 0).numpy()[..., ::-1] * 255).round().astype("uint8")
    for frame in frames:
        writer.write(frame.copy())
    writer.release()


def test_data_fingerprints_see_files_options_tensors_and_subsets(tmp_path: Path) -> None:
    clip = MovingShapes("motion", num_samples=1, num_frames=4, size=16, object_size=3)[0][0]
    for name in ("a.avi", "b.avi"):
        _write_avi(tmp_path / name, clip)
    base = VideoFolder(tmp_path, num_frames=4, size=(16, 16)).fingerprint()
    assert VideoFolder(tmp_path, num_frames=4, size=(16, 16)).fingerprint() == base
    assert VideoFolder(tmp_path, num_frames=2, size=(16, 16)).fingerprint() != base
    assert VideoFolder(tmp_path, num_frames=4, size=(8, 8)).fingerprint() != base
    stat = (tmp_path / "b.avi").stat()
    os.utime(tmp_path / "b.avi", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched
    assert VideoFolder(tmp_path, num_frames=4, size=(16, 16)).fingerprint() != base
    _write_avi(tmp_path / "c.avi", clip)  # a new file
    assert VideoFolder(tmp_path, num_frames=4, size=(16, 16)).fingerprint() != base

    assert data_fingerprint(MovingShapes(seed=1)) != data_fingerprint(MovingShapes(seed=2))
    assert data_fingerprint(MovingShapes(seed=1)) == data_fingerprint(MovingShapes(seed=1))
    tensors = TensorDataset(_clips(), torch.arange(4))
    relabelled = TensorDataset(_clips(), torch.tensor([0, 1, 2, 0]))
    assert data_fingerprint(tensors) != data_fingerprint(relabelled)
    assert data_fingerprint(Subset(tensors, [0, 1])) != data_fingerprint(Subset(tensors, [1, 0]))
    arrays = data_fingerprint(TensorDataset(torch.from_numpy(np.zeros((2, 3), np.float32))))
    assert arrays == data_fingerprint(TensorDataset(torch.zeros(2, 3)))


def test_cli_refusal_spells_overwrite_as_the_cli_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    data = MovingShapes("motion", num_samples=2, seed=21)
    for i in range(2):
        _write_avi(folder / f"clip{i}.avi", data[i][0])
    weights = tmp_path / "appearance.pt"
    torch.save(captum_video.models.load_demo_model("appearance").state_dict(), weights)
    args = ["explain", str(folder), "--sampling", "spread", "--out", str(tmp_path / "out")]
    args += ["--quiet", "--no-report"]
    args += ["--no-tensorboard", "--highlights", "0", "--per-video", "never"]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--weights", str(weights)]) == 2  # same model name, other weights
    err = capsys.readouterr().err
    assert "other model weights (model_sha256 differs)" in err
    assert "--overwrite" in err and "overwrite=True" not in err
    assert main([*args, "--weights", str(weights), "--overwrite"]) == 0
    assert "(2 computed now, 0 resumed)" in capsys.readouterr().out
    # a run of another host holds the folder: a clear error, not a traceback
    lock = {"pid": 4321, "host": "elsewhere", "started_at": "noon"}
    (tmp_path / "out" / ".lock").write_text(json.dumps(lock))
    assert main([*args, "--weights", str(weights)]) == 2
    assert "in use by process 4321 on host elsewhere since noon" in capsys.readouterr().err

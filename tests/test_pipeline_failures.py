"""Failures are isolated and reported: a bad clip is recorded, the other clips are explained.

The oracle of every good clip is the model (and Grad-CAM) run on that clip directly, so a
failure that leaked into its neighbours, or shifted them, shows.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from captum_video.attr import GradCAMTube
from captum_video.cli import main
from captum_video.datasets import MovingShapes
from captum_video.io import read_video
from captum_video.pipeline import explain_dataset
from captum_video.pipeline.failures import load_failures
from captum_video.pipeline.store import load_manifests, load_records
from captum_video.video_folder import VideoFolder

QUIET = {"progress": False, "highlights": 0, "tensorboard": False, "report": False}
GOOD = [f"clip{i}.avi" for i in range(8)]


def _write_avi(path: Path, clip: torch.Tensor) -> None:
    """A (3, T, H, W) clip in [0, 1] as an MJPG .avi file."""
    t, h, w = clip.shape[1:]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 8, (w, h))
    frames = (clip.permute(1, 2, 3, 0).numpy()[..., ::-1] * 255).round().astype("uint8")
    for frame in frames:
        writer.write(frame.copy())
    writer.release()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 good videos, one file of random bytes and one video of 4 frames (16 are needed)."""
    root = tmp_path_factory.mktemp("videos")
    data = MovingShapes("motion", num_samples=9, seed=31)
    for i, name in enumerate(GOOD):
        _write_avi(root / name, data[i][0])
    rng = np.random.default_rng(0)
    (root / "broken.mp4").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _write_avi(root / "short.avi", data[8][0][:, :4])
    return root


class _Rows(HTMLParser):
    """The text of each row of ``table#failures-table``."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and dict(attrs).get("id") == "failures-table":
            self._in = True
        elif tag == "tr" and self._in:
            self.rows.append([])

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in = False

    def handle_data(self, data: str) -> None:
        if self._in and self.rows:
            self.rows[-1].append(data)


def test_unreadable_and_short_videos_are_recorded_and_the_rest_explained(
    folder: Path, tmp_path: Path, demo_model: torch.nn.Module
) -> None:
    data = VideoFolder(folder, num_frames=16, size=(32, 32))
    assert [p.name for p in data.paths] == ["broken.mp4", *GOOD, "short.avi"]
    opts = {"batch_size": 4, "shard_size": 4, "num_workers": 2, **QUIET, "report": True}
    run = explain_dataset(demo_model, data, ["gradcam_tube"], tmp_path, **opts)
    assert (run.computed_clips, run.skipped_clips) == (10, 0)

    failures = load_failures(tmp_path)
    assert [(f["index"], f["name"], f["stage"]) for f in failures] == [
        (0, "broken.mp4", "load"),
        (9, "short.avi", "load"),
    ]
    assert all(f["error"] == "ValueError" for f in failures)
    assert "broken.mp4" in failures[0]["message"] and "too short" in failures[1]["message"]
    assert run.failures == failures
    assert run.summary["num_failures"] == 2 and run.summary["failures"] == failures
    assert run.summary["num_clips"] == 8

    # the good clips, against the model and Grad-CAM run on each file directly
    records = load_records(tmp_path)
    assert [r["name"] for r in records] == GOOD
    clips = torch.stack([read_video(folder / name, num_frames=16, size=(32, 32)) for name in GOOD])
    with torch.no_grad():
        prob, pred = demo_model(clips).softmax(1).max(1)
    attr = GradCAMTube(demo_model, demo_model.layer3).attribute(clips, target=pred)
    for j, r in enumerate(records):
        assert r["prediction"] == int(pred[j])
        assert r["probability"] == pytest.approx(float(prob[j]), abs=1e-5)
        torch.testing.assert_close(run.attribution(r["index"], "gradcam_tube"), attr[j])
    with pytest.raises(ValueError, match=r"clip 0 failed \(load: ValueError: .*broken.mp4"):
        run.attribution(0, "gradcam_tube")

    parser = _Rows()
    parser.feed((tmp_path / "report.html").read_text())
    assert [row[:3] for row in parser.rows[1:]] == [
        ["0", "broken.mp4", "load"],
        ["9", "short.avi", "load"],
    ]

    # a rerun tries the two failures again, and only them: the shard without failures is
    # not rewritten, the good clips of the others are carried over unchanged
    before = {m["shard"]: m["run_id"] for m in load_manifests(tmp_path)}
    again = explain_dataset(demo_model, data, ["gradcam_tube"], tmp_path, **opts)
    assert (again.computed_clips, again.skipped_clips) == (2, 8)
    assert load_failures(tmp_path) == failures
    after = {m["shard"]: m["run_id"] for m in load_manifests(tmp_path)}
    assert after[1] == before[1] and after[0] != before[0] and after[2] != before[2]
    assert load_records(tmp_path) == records
    for j, r in enumerate(records):
        torch.testing.assert_close(again.attribution(r["index"], "gradcam_tube"), attr[j])


def test_cli_finishes_with_failures_and_strict_makes_them_an_error(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["explain", str(folder), "--sampling", "spread", "--out", str(out), "--quiet"]
    args += ["--no-tensorboard"]
    args += ["--highlights", "1", "--per-video", "never", "--batch-size", "4"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"finished with 2 failures (see {out / 'failures.json'})" in printed
    assert "(10 computed now, 0 resumed)" in printed
    assert "broken.mp4 (load)" in printed and "short.avi (load)" in printed
    assert len(json.loads((out / "failures.json").read_text())) == 2

    assert main([*args, "--strict"]) != 0  # the rerun retries the 2 failures, which fail again
    captured = capsys.readouterr()
    assert "(2 computed now, 8 resumed)" in captured.out
    assert "2 videos failed and --strict was given" in captured.err


class _Marked(TensorDataset):
    """Clip ``i`` holds ``i`` in its first voxel, so a method can tell which clip it sees."""

    def __init__(self, n: int = 8) -> None:
        clips = torch.rand(n, 3, 4, 6, 6, generator=torch.Generator().manual_seed(0))
        clips[:, 0, 0, 0, 0] = torch.arange(n, dtype=torch.float32)
        super().__init__(clips, torch.arange(n) % 3)


class _TinyModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3 * 4 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def _picky(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if bool((x[:, 0, 0, 0, 0] == 5).any()):
        raise RuntimeError("cannot explain clip 5")
    return x.clone()


def test_a_clip_whose_explanation_raises_is_recorded_with_the_method_name(
    tmp_path: Path,
) -> None:
    data = _Marked()
    methods = {"fine": lambda x, t: 2 * x, "picky": _picky}
    opts = {**QUIET, "report": True, "batch_size": 4, "shard_size": 4}
    run = explain_dataset(_TinyModel(), data, methods, tmp_path, **opts)
    assert [(f["index"], f["stage"], f["error"]) for f in run.failures] == [
        (5, "picky", "RuntimeError")
    ]
    assert run.failures[0]["message"] == "cannot explain clip 5"
    assert [r["index"] for r in run.records()] == [0, 1, 2, 3, 4, 6, 7]
    for i in [0, 1, 2, 3, 4, 6, 7]:  # the batch-mates of clip 5 too
        torch.testing.assert_close(run.attribution(i, "picky"), data.tensors[0][i].sum(0, True))
        torch.testing.assert_close(run.attribution(i, "fine"), 2 * data.tensors[0][i].sum(0, True))
    assert 'id="failures"' in (tmp_path / "report.html").read_text()


def test_a_bad_label_fails_only_its_clip(tmp_path: Path) -> None:
    clips = torch.rand(4, 3, 4, 6, 6)
    data = TensorDataset(clips, torch.tensor([0, 1, 7, 2]))  # 3 classes: label 7 is wrong
    run = explain_dataset(
        _TinyModel(), data, {"m": lambda x, t: x.clone()}, tmp_path, target="label", **QUIET
    )
    assert [(f["index"], f["stage"]) for f in run.failures] == [(2, "explain")]
    assert "labels must be in [0, 3)" in run.failures[0]["message"]
    assert [r["target"] for r in run.records()] == [0, 1, 2]


def test_a_mistake_for_every_clip_raises_at_once(tmp_path: Path) -> None:
    calls = {"n": 0}

    def broken(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        raise TypeError("explain() got an unexpected keyword argument")

    with pytest.raises(TypeError, match="unexpected keyword"):
        explain_dataset(_TinyModel(), _Marked(16), {"m": broken}, tmp_path, batch_size=4, **QUIET)
    assert calls["n"] == 5  # the first batch, then its 4 clips alone; not the other 12 clips


def test_every_clip_failing_to_load_is_an_error_naming_them(tmp_path: Path) -> None:
    class Missing(Dataset):
        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int) -> torch.Tensor:
            raise FileNotFoundError(f"video {i}.mp4 is gone")

    with pytest.raises(ValueError, match=r"every clip failed \(3 of 3\).*video 0.mp4 is gone"):
        explain_dataset(_TinyModel(), Missing(), {"m": lambda x, t: x}, tmp_path, **QUIET)
    assert len(load_failures(tmp_path)) == 3

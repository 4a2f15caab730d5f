"""Explanation by example through similarity (Captum's SimilarityInfluence over video clips).

* The demo motion model's nearest training clips carry the test clip's label: measured 1.00
  of the 5 nearest over seeds 0-4 (cosine and Euclidean), farthest 0.00; the same
  architecture with random weights: 0.35-0.59 nearest (chance 0.25).
* Indices and scores equal an independent computation: the layer's activations taken with a
  hook, cosine similarity / Euclidean distance written out, ``torch.topk``; also with a last
  training batch shorter than ``k`` (which Captum 0.9's loop cannot take by itself).
* The caller's model is untouched; the activation store is removed on ``close`` (a folder
  the caller passes is kept and reused); bad input is named; results render as a grid.
"""

from __future__ import annotations

import argparse
import gc
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from captum_video.cli.influence import add_influence_parser, run_influence
from captum_video.datasets import MovingShapes
from captum_video.influence import (
    InfluentialClips,
    SimilarClips,
    VideoSimilarityInfluence,
    render_influence,
)
from captum_video.io import read_video
from captum_video.models import C3DSmall, load_demo_model
from tests.helpers import assert_model_unchanged, model_snapshot


@pytest.fixture(scope="module")
def demo() -> nn.Module:
    return load_demo_model("motion")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nearest_clips_share_the_label(demo: nn.Module, seed: int) -> None:
    train = MovingShapes("motion", num_samples=64, seed=seed)
    test, truth, _ = MovingShapes("motion", num_samples=32, seed=100 + seed).tensors()
    fractions = {}
    for metric in ("cosine", "euclidean"):
        with VideoSimilarityInfluence(demo, train, metric=metric) as similar:
            near = similar.most_similar(test, k=5)
            far = similar.least_similar(test, k=5)
        assert near.most_similar and not far.most_similar and near.metric == metric
        assert torch.equal(near.targets, demo(test).argmax(1))  # the model's decisions
        fractions[metric] = (
            (near.train_labels == truth[:, None]).float().mean().item(),
            (far.train_labels == truth[:, None]).float().mean().item(),
        )
        nearer_first = near.scores[:, :-1] >= near.scores[:, 1:]
        if metric == "euclidean":
            nearer_first = near.scores[:, :-1] <= near.scores[:, 1:]
        assert bool(nearer_first.all())
    print(f"seed {seed}: share of the 5 nearest / farthest with the test label {fractions}")
    for near_share, far_share in fractions.values():
        assert near_share >= 0.9  # measured 1.00 over seeds 0-4; chance 0.25
        assert far_share <= 0.1  # measured 0.00


def test_random_weights_control(demo: nn.Module) -> None:
    # The check above can fail: the same architecture untrained finds the label far less often.
    train = MovingShapes("motion", num_samples=64, seed=0)
    test, truth, _ = MovingShapes("motion", num_samples=32, seed=100).tensors()
    torch.manual_seed(0)
    untrained = C3DSmall(**demo.demo_info["config"]).eval()
    with VideoSimilarityInfluence(untrained, train) as similar:
        near = similar.most_similar(test, k=5)
    share = (near.train_labels == truth[:, None]).float().mean().item()
    print(f"random weights: share of the 5 nearest with the test label {share:.2f}")
    assert share < 0.75  # measured 0.35-0.59 over seeds 0-4


def _activations(model: nn.Module, clips: torch.Tensor, layer: str) -> torch.Tensor:
    """The oracle's activations: ``"input of NAME"`` (pre-hook) or a layer's output (hook)."""
    saved: list[torch.Tensor] = []
    if layer.startswith("input of "):
        module = model.get_submodule(layer.removeprefix("input of "))
        handle = module.register_forward_pre_hook(lambda m, args: saved.append(args[0]))
    else:
        module = model.get_submodule(layer)
        handle = module.register_forward_hook(lambda m, args, out: saved.append(out))
    with torch.no_grad():
        model(clips)
    handle.remove()
    return saved[0].reshape(len(clips), -1)


def _oracle(a: torch.Tensor, b: torch.Tensor, metric: str) -> torch.Tensor:
    if metric == "cosine":
        return nn.functional.cosine_similarity(a[:, None], b[None], dim=2)
    return ((a[:, None] - b[None]) ** 2).sum(2).sqrt()


def _toy() -> nn.Module:
    # Linear features of Gaussian clips: activations spread out, so no two scores tie and
    # the order of the indices is defined (a random C3D maps clips to nearly parallel
    # vectors: cosines 0.99-1.00, a few 1e-6 apart).
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv3d(3, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 14 * 14, 16), nn.Linear(16, 4)
    ).eval()


@pytest.mark.parametrize("layer", [None, "0"])
def test_scores_equal_an_independent_oracle(layer: str | None) -> None:
    net = _toy()
    # 11 clips in batches of 4: the last batch holds 3 < k = 4.
    clips, labels = torch.randn(11, 3, 8, 16, 16), torch.randint(4, (11,))
    test = torch.randn(3, 3, 8, 16, 16)
    name = layer or "input of 3"
    a, b = _activations(net, test, name), _activations(net, clips, name)
    for metric in ("cosine", "euclidean"):
        scores = _oracle(a, b, metric)
        given = net.get_submodule(layer) if layer else None  # a module of the caller's model
        with VideoSimilarityInfluence(
            net, (clips, labels), layer=given, metric=metric, batch_size=4
        ) as similar:
            assert similar.layer == (layer or "input of 3")
            for most in (True, False):
                largest = most == (metric == "cosine")
                expected = torch.topk(scores, 4, dim=1, largest=largest)
                got = (similar.most_similar if most else similar.least_similar)(test, k=4)
                assert torch.equal(got.indices, expected.indices), (metric, most)
                torch.testing.assert_close(got.scores, expected.values, rtol=1e-5, atol=1e-5)
                assert torch.equal(got.train_labels, labels[got.indices])
            everything = similar.most_similar(test, k=11)  # padding never comes back
            assert sorted(everything.indices[0].tolist()) == list(range(11))


def test_registry_head_input_equals_the_oracle(demo: nn.Module) -> None:
    # The demo C3D's head (the registry's) reads flatten(avgpool(layer3)): its input is the
    # default layer. Scores are close to each other here, so the check allows ties: the
    # returned scores are the top-k values and are the oracle's at the returned indices.
    train = MovingShapes("motion", num_samples=10, num_frames=8, size=16, speed=(1.0, 1.0))
    clips, labels, _ = train.tensors()
    test = clips[:2] * 0.8
    a, b = _activations(demo, test, "input of fc"), _activations(demo, clips, "input of fc")
    for metric in ("cosine", "euclidean"):
        scores = _oracle(a, b, metric)
        with VideoSimilarityInfluence(demo, train, metric=metric, batch_size=3) as similar:
            got = similar.most_similar(test, k=5)
        expected = torch.topk(scores, 5, dim=1, largest=metric == "cosine")
        torch.testing.assert_close(got.scores, expected.values, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got.scores, scores.gather(1, got.indices), rtol=1e-5, atol=1e-5)


def test_callers_model_and_store_are_left_clean(tmp_path: Path) -> None:
    net = nn.Sequential(
        nn.Conv3d(3, 4, 3, padding=1),
        nn.BatchNorm3d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).train()
    net[0].bias.requires_grad_(False)
    clips, labels = torch.rand(6, 3, 4, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    keep = clips.clone()
    before = model_snapshot(net)
    with pytest.warns(UserWarning, match="eval mode"):
        similar = VideoSimilarityInfluence(net, (clips, labels), batch_size=4)
    assert similar.layer == "input of 5"  # no registry family: the last nn.Linear's input
    similar.most_similar(clips[:2], k=2)
    store = Path(similar.activation_dir)
    assert len(list(store.rglob("*.pt"))) == 2  # two batches of 4 (6 clips + 2 copies)
    similar.close()
    assert not store.exists()
    with pytest.raises(ValueError, match="was closed"):
        similar.most_similar(clips[:1], k=1)
    assert_model_unchanged(before, net)
    assert torch.equal(clips, keep)
    # Collected without close(): the temporary store goes too.
    other = VideoSimilarityInfluence(net.eval(), (clips, labels))
    store = Path(other.activation_dir)
    del other
    gc.collect()
    assert not store.exists()
    # A folder of the caller's is kept and reused; other weights get their own key.
    first = VideoSimilarityInfluence(net, (clips, labels), activation_dir=tmp_path / "av")
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "av").rglob("*.pt")}
    first.close()
    again = VideoSimilarityInfluence(net, (clips, labels), activation_dir=tmp_path / "av")
    assert again.model_id == first.model_id
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "av").rglob("*.pt")} == files
    with torch.no_grad():
        net[5].bias.add_(1.0)
    changed = VideoSimilarityInfluence(net, (clips, labels), activation_dir=tmp_path / "av")
    assert changed.model_id != first.model_id
    with torch.no_grad():
        net[5].bias.sub_(1.0)
    net.train()


def test_bad_input_is_named(demo: nn.Module, tmp_path: Path) -> None:
    data = MovingShapes("motion", num_samples=6, num_frames=8, size=16, speed=(1.0, 1.0), seed=0)
    clips = data.tensors()[0]
    with pytest.raises(ValueError, match="metric must be one of"):
        VideoSimilarityInfluence(demo, data, metric="dot")
    with pytest.raises(ValueError, match="layer 'layer9' is not a module"):
        VideoSimilarityInfluence(demo, data, layer="layer9")
    with pytest.raises(ValueError, match="layer must be a module of model"):
        VideoSimilarityInfluence(demo, data, layer=nn.Linear(2, 2))
    with pytest.raises(TypeError, match="layer must be an nn.Module"):
        VideoSimilarityInfluence(demo, data, layer=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        VideoSimilarityInfluence(lambda x: x, data)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        VideoSimilarityInfluence(demo, data, batch_size=0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="activation_dir .* is a file"):
        VideoSimilarityInfluence(demo, data, activation_dir=tmp_path / "file")
    with pytest.raises(TypeError, match=r"train_dataset\[0\] must be a \(clip, label\) pair"):
        VideoSimilarityInfluence(demo, torch.utils.data.TensorDataset(clips))
    with pytest.raises(ValueError, match=r"\[1\] \(the label\) is 7, outside"):
        VideoSimilarityInfluence(demo, (clips, torch.full((6,), 7)))
    with pytest.raises(ValueError, match="must return logits"):
        VideoSimilarityInfluence(nn.Sequential(nn.Conv3d(3, 2, 1)), data, layer="0")
    with VideoSimilarityInfluence(demo, data) as similar:
        with pytest.raises(ValueError, match="clips must be a 5-D"):
            similar.most_similar(clips[0])
        with pytest.raises(ValueError, match="k is 7"):
            similar.least_similar(clips[:1], k=7)
        with pytest.raises(ValueError, match=r"\bk\b"):
            similar.most_similar(clips[:1], k=0)


def test_render_nearest_and_farthest(demo: nn.Module, tmp_path: Path) -> None:
    data = MovingShapes("motion", num_samples=12, num_frames=8, size=16, speed=(1.0, 1.0), seed=4)
    test, _, _ = MovingShapes(
        "motion", num_samples=2, num_frames=8, size=16, speed=(1.0, 1.0), seed=5
    ).tensors()
    with VideoSimilarityInfluence(demo, data) as similar:
        near, far = similar.most_similar(test, k=3), similar.least_similar(test, k=2)
    assert isinstance(near, InfluentialClips) and isinstance(near, SimilarClips)
    frames = render_influence(
        test[1],
        data,
        near,
        far,
        index=1,
        scale=4,
        class_names=data.classes,
        path=tmp_path / "g.png",
    )
    assert frames.dtype == np.uint8 and frames.shape[0] == 8
    assert frames.shape[2] == 4 * 64 + 3 * 4 and frames.shape[1] > 2 * 64
    nearest = data[int(near.indices[1, 0])][0]
    tile = frames[0, frames.shape[1] // 2 - 64 - 2 : frames.shape[1] // 2 - 2, 68:132]
    expected = np.clip(np.rint(nearest[:, 0].permute(1, 2, 0).numpy() * 255), 0, 255)
    assert np.abs(tile[::4, ::4].astype(float) - expected).max() <= 1
    assert (tmp_path / "g.png").stat().st_size > 0


def _train_folder(root: Path) -> None:
    from captum_video.visualization import write_video

    data = MovingShapes("motion", num_samples=0, num_frames=8, size=16, speed=(1.0, 1.0), seed=6)
    for i in range(12):
        clip, label, _ = data.render(i % 4, torch.Generator().manual_seed(i))
        frames = np.clip(np.rint(clip.permute(1, 2, 3, 0).numpy() * 255), 0, 255)
        write_video(frames.astype(np.uint8), root / data.classes[label] / f"{i}.avi")


def test_cli_similarity(demo: nn.Module, tmp_path: Path) -> None:
    _train_folder(tmp_path / "train")
    parser = argparse.ArgumentParser()
    add_influence_parser(parser.add_subparsers(dest="command"), str)
    test_video = tmp_path / "train" / "up" / "3.avi"
    base = ["influence", str(test_video), "--train", str(tmp_path / "train"), "--model", "demo"]
    base += ["--frames", "8", "--size", "16", "--k", "2"]
    argv = [*base, "--method", "similarity", "--metric", "euclidean", "--out", str(tmp_path / "o")]
    written = run_influence(parser.parse_args(argv))
    assert {p.suffix for p in written} == {".mp4", ".png", ".json"}
    report = json.loads((tmp_path / "o" / "influence.json").read_text())
    assert (report["method"], report["metric"], report["layer"]) == (
        "similarity",
        "euclidean",
        "input of fc",
    )
    entry = report["videos"][0]
    assert len(entry["most_similar"]) == 2 and Path(entry["most_similar"][0]["file"]).is_file()
    assert entry["most_similar"][0]["score"] <= entry["least_similar"][0]["score"]
    clip = read_video(test_video, num_frames=8, size=(16, 16))
    assert entry["decision"] == int(demo(clip[None]).argmax())  # the bundled weights'
    # --weights gives the weights; --layer a module of the model.
    torch.manual_seed(0)
    other = C3DSmall(**demo.demo_info["config"])
    torch.save(other.state_dict(), tmp_path / "w.pt")
    argv = [*base, "--method", "similarity", "--weights", str(tmp_path / "w.pt")]
    run_influence(parser.parse_args([*argv, "--layer", "layer2", "--out", str(tmp_path / "w")]))
    report = json.loads((tmp_path / "w" / "influence.json").read_text())
    assert report["layer"] == "layer2" and report["weights"] == str(tmp_path / "w.pt")
    assert report["videos"][0]["decision"] == int(other.eval()(clip[None]).argmax())
    # Arguments of the other methods are named.
    with pytest.raises(ValueError, match="--checkpoints is required with --method fast"):
        run_influence(parser.parse_args(base))
    with pytest.raises(ValueError, match="--checkpoints is for TracIn"):
        run_influence(parser.parse_args([*argv, "--checkpoints", str(tmp_path)]))
    with pytest.raises(ValueError, match="--self-influence is TracIn's"):
        run_influence(parser.parse_args([*argv, "--self-influence"]))
    with pytest.raises(ValueError, match="--metric is for --method similarity"):
        run_influence(parser.parse_args([*base, "--checkpoints", "x", "--metric", "cosine"]))
    with pytest.raises(ValueError, match="--layer 'layer9' is not a module"):
        run_influence(parser.parse_args([*argv, "--layer", "layer9"]))

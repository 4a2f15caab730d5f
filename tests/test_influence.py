"""Explanation by example (TracIn over video clips): claims checked against oracles.

* Mislabelled clips: a tiny C3D trained on MovingShapes (motion) with 6 of 96 labels flipped;
  self-influence puts >= 80 % of the flipped clips in its top 12, for 3 seeds.
* Proponents carry the decision's label and, the mislabelled ones aside, its direction of
  motion; opponents mostly do not.
* Scores equal an independent computation: sum over checkpoints of step size x the dot
  product of per-clip loss gradients (torch.autograd), for both methods.
* The caller's model, its mode and ``requires_grad`` are untouched; bad input fails clearly.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from captum_video.cli.influence import add_influence_parser, run_influence
from captum_video.datasets import MovingShapes
from captum_video.influence import (
    ClipLabelDataset,
    VideoTracIn,
    find_checkpoints,
    influence_frames,
    render_influence,
)
from captum_video.io import read_video
from captum_video.models import C3DSmall
from captum_video.models.training import fit_classifier

NUM_TRAIN, NUM_FLIPPED = 96, 6


def _shapes(num: int, seed: int) -> MovingShapes:
    # 3 x 8 x 16 x 16 clips of one square, no distractors: a 4-8-8-8 C3D learns the direction
    # in 20 epochs of 96 clips (clean training accuracy 0.99-1.0 over seeds 0-2).
    return MovingShapes(
        "motion",
        num_samples=num,
        num_frames=8,
        size=16,
        speed=(1.0, 1.0),
        num_distractors=0,
        seed=seed,
    )


@pytest.fixture(scope="module", params=[0, 1, 2])
def noisy_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    seed = request.param
    clips, labels, _ = _shapes(NUM_TRAIN, seed).tensors()
    gen = torch.Generator().manual_seed(seed)
    flipped = torch.randperm(NUM_TRAIN, generator=gen)[:NUM_FLIPPED]
    noisy = labels.clone()
    noisy[flipped] = (labels[flipped] + 1 + torch.randint(3, (NUM_FLIPPED,), generator=gen)) % 4
    torch.manual_seed(seed)
    net = C3DSmall(widths=(4, 8, 8, 8))
    folder = tmp_path_factory.mktemp(f"ckpt{seed}")
    fit_classifier(
        net, clips, noisy, epochs=20, batch_size=16, lr=1e-2, seed=seed, checkpoint_dir=folder
    )
    net.eval()
    tracin = VideoTracIn(net, (clips, noisy), folder, batch_size=48)
    return {
        "seed": seed,
        "net": net,
        "clips": clips,
        "labels": labels,
        "noisy": noisy,
        "flipped": flipped,
        "tracin": tracin,
    }


def test_self_influence_finds_flipped_labels(noisy_run: dict) -> None:
    scores = noisy_run["tracin"].self_influence()
    assert scores.shape == (NUM_TRAIN,) and bool((scores >= 0).all())
    top = set(scores.argsort(descending=True)[: 2 * NUM_FLIPPED].tolist())
    recall = len(top & set(noisy_run["flipped"].tolist())) / NUM_FLIPPED
    print(f"seed {noisy_run['seed']}: flipped-label recall in top {2 * NUM_FLIPPED}: {recall:.2f}")
    assert recall >= 0.8


def test_proponents_share_the_decision_and_direction(noisy_run: dict) -> None:
    test, truth, _ = _shapes(16, 100 + noisy_run["seed"]).tensors()
    tracin = noisy_run["tracin"]
    pro = tracin.proponents(test, k=5)
    opp = tracin.opponents(test, k=5)
    assert pro.indices.shape == (16, 5) and pro.proponents and not opp.proponents
    assert bool((pro.scores[:, :-1] >= pro.scores[:, 1:]).all())  # highest first
    assert bool((opp.scores[:, :-1] <= opp.scores[:, 1:]).all())
    predicted = noisy_run["net"](test).argmax(1)
    assert torch.equal(pro.targets, predicted)  # target=None: the model's decision
    assert torch.equal(pro.train_labels, noisy_run["noisy"][pro.indices])
    same_label = (pro.train_labels == pro.targets[:, None]).float().mean().item()
    direction = noisy_run["labels"][pro.indices] == truth[:, None]
    clean = ~torch.isin(pro.indices, noisy_run["flipped"])
    clean_direction = direction[clean].float().mean().item()
    opp_label = (opp.train_labels == opp.targets[:, None]).float().mean().item()
    opp_flipped = torch.isin(opp.indices, noisy_run["flipped"]).float().mean().item()
    print(
        f"seed {noisy_run['seed']}: proponents with the decision's label {same_label:.2f}, "
        f"with the test clip's direction {direction.float().mean().item():.2f} (clean "
        f"proponents {clean_direction:.2f}); opponents with the decision's label {opp_label:.2f}, "
        f"flipped {opp_flipped:.2f} (of the training set: {NUM_FLIPPED / NUM_TRAIN:.2f})"
    )
    assert same_label >= 0.85  # measured 0.91-1.00 over seeds 0-2
    assert clean_direction >= 0.85  # chance: 0.25; measured 0.93-1.00
    assert opp_label <= 0.1
    # Clips labelled against their motion oppose the clips moving as they do.
    assert opp_flipped >= 3 * NUM_FLIPPED / NUM_TRAIN


def _clip_grads(
    model: nn.Module, params: list[nn.Parameter], x: torch.Tensor, y: int
) -> torch.Tensor:
    loss = nn.functional.cross_entropy(model(x[None]), torch.tensor([y]))
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])


@pytest.mark.parametrize("method", ["fast", "full"])
def test_scores_equal_an_autograd_oracle(method: str, tmp_path: Path) -> None:
    clips, labels, _ = _shapes(8, 5).tensors()
    net = C3DSmall(widths=(2, 4, 4, 4))
    paths = fit_classifier(net, clips, labels, epochs=2, batch_size=4, checkpoint_dir=tmp_path)
    net.eval()
    tracin = VideoTracIn(net, (clips, labels), tmp_path, method=method, batch_size=3)
    test = clips[:2] * 0.9
    got = tracin.influence(test, target=[1, 2])
    oracle = C3DSmall(widths=(2, 4, 4, 4)).eval()
    expected = torch.zeros(2, 8)
    for path in paths:
        saved = torch.load(path, weights_only=True)
        oracle.load_state_dict(saved["state_dict"])
        params = [oracle.fc.weight] if method == "fast" else list(oracle.parameters())
        train_g = torch.stack(
            [_clip_grads(oracle, params, c, int(y)) for c, y in zip(clips, labels, strict=True)]
        )
        test_g = torch.stack(
            [_clip_grads(oracle, params, c, y) for c, y in zip(test, [1, 2], strict=True)]
        )
        expected += saved["learning_rate"] * test_g @ train_g.T
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-9)
    self_scores = tracin.self_influence()
    diagonal = torch.zeros(8)
    for path in paths:
        saved = torch.load(path, weights_only=True)
        oracle.load_state_dict(saved["state_dict"])
        params = [oracle.fc.weight] if method == "fast" else list(oracle.parameters())
        g = torch.stack(
            [_clip_grads(oracle, params, c, int(y)) for c, y in zip(clips, labels, strict=True)]
        )
        diagonal += saved["learning_rate"] * (g * g).sum(1)
    torch.testing.assert_close(self_scores, diagonal, rtol=1e-4, atol=1e-9)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict:
    data = _shapes(12, 3)
    clips, labels, _ = data.tensors()
    net = C3DSmall(widths=(2, 4, 4, 4))
    folder = tmp_path_factory.mktemp("small")
    fit_classifier(net, clips, labels, epochs=2, batch_size=6, checkpoint_dir=folder)
    return {"data": data, "clips": clips, "labels": labels, "net": net.eval(), "folder": folder}


def test_callers_model_is_left_alone(small: dict) -> None:
    net = small["net"]
    net.fc.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    with pytest.warns(UserWarning, match="eval mode"):
        tracin = VideoTracIn(net, small["data"], small["folder"], method="full")
    tracin.proponents(small["clips"][:1], k=2)
    tracin.self_influence()
    assert net.training and all(m.training for m in net.modules())
    assert not net.fc.weight.requires_grad and net.stem.conv.weight.requires_grad
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key
    net.fc.weight.requires_grad_(True)
    net.eval()


def test_moving_shapes_triples_are_cut_to_clip_label(small: dict) -> None:
    data = ClipLabelDataset(small["data"])
    clip, label = data[3]
    assert clip.shape == (3, 8, 16, 16) and label.dtype == torch.long
    from_tensors = VideoTracIn(small["net"], (small["clips"], small["labels"]), small["folder"])
    from_dataset = VideoTracIn(small["net"], small["data"], small["folder"])
    x = small["clips"][:2]
    torch.testing.assert_close(from_tensors.influence(x), from_dataset.influence(x))


def test_render_grid_and_files(small: dict, tmp_path: Path) -> None:
    tracin = VideoTracIn(small["net"], small["data"], small["folder"])
    test = small["clips"][:2]
    pro, opp = tracin.proponents(test, k=3), tracin.opponents(test, k=2)
    frames = render_influence(
        test[1],
        small["data"],
        pro,
        opp,
        index=1,
        scale=4,
        class_names=small["data"].classes,
        path=tmp_path / "g.png",
    )
    assert frames.dtype == np.uint8 and frames.shape[0] == 8
    # 4 tiles of 64 px + 3 gaps; two rows of captioned 64 px tiles.
    assert frames.shape[2] == 4 * 64 + 3 * 4 and frames.shape[1] > 2 * 64
    first = small["clips"][int(pro.indices[1, 0])]
    tile = frames[0, frames.shape[1] // 2 - 64 - 2 : frames.shape[1] // 2 - 2, 68:132]
    expected = np.clip(np.rint(first[:, 0].permute(1, 2, 0).numpy() * 255), 0, 255)
    assert np.abs(tile[::4, ::4].astype(float) - expected).max() <= 1
    assert (tmp_path / "g.png").stat().st_size > 0
    render_influence(test[0], small["data"], opponents=opp, path=tmp_path / "g.gif", scale=2)
    assert (tmp_path / "g.gif").stat().st_size > 0
    with pytest.raises(ValueError, match="shape"):
        influence_frames(test[0], [torch.rand(3, 4, 16, 16)])


def test_bad_input_is_named(small: dict, tmp_path: Path) -> None:
    net, data, folder, clips = small["net"], small["data"], small["folder"], small["clips"]
    with pytest.raises(ValueError, match="checkpoints is None; TracIn needs"):
        VideoTracIn(net, data, None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no checkpoint files"):
        VideoTracIn(net, data, tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        VideoTracIn(net, data, [tmp_path / "missing.pt"])
    torch.save(C3DSmall().state_dict(), tmp_path / "other.pt")
    with pytest.raises(ValueError, match="does not fit the model"):
        VideoTracIn(net, data, [tmp_path / "other.pt"])
    with pytest.raises(TypeError, match=r"train_dataset\[0\] must be a \(clip, label\) pair"):
        VideoTracIn(net, torch.utils.data.TensorDataset(clips), folder)
    with pytest.raises(TypeError, match=r"train_dataset\[0\] looks like \(label, clip\)"):
        VideoTracIn(net, list(zip(small["labels"].tolist(), clips, strict=True)), folder)
    with pytest.raises(TypeError, match=r"train_dataset\[0\]\[0\] \(the clip\) must be a"):
        VideoTracIn(net, [("clip.mp4", 0)], folder)
    with pytest.raises(ValueError, match=r"\[1\] \(the label\) is 7, outside"):
        VideoTracIn(net, (clips, torch.full((12,), 7)), folder)
    with pytest.raises(ValueError, match=r"4-D"):
        VideoTracIn(net, (clips[:, 0], small["labels"]), folder)
    tracin = VideoTracIn(net, data, folder)
    with pytest.raises(ValueError, match="clips must be a 5-D"):
        tracin.proponents(clips[0])
    with pytest.raises(ValueError, match="k is 13"):
        tracin.proponents(clips[:1], k=13)
    with pytest.raises(ValueError, match="method must be one of"):
        VideoTracIn(net, data, folder, method="exact")
    with pytest.raises(ValueError, match="must be an nn.Linear"):
        VideoTracIn(net, data, folder, final_fc_layer="layer3.conv")


def test_fit_classifier_checkpoints(tmp_path: Path) -> None:
    clips, labels, _ = _shapes(8, 1).tensors()
    paths = fit_classifier(
        C3DSmall(widths=(2, 4, 4, 4)),
        clips,
        labels,
        epochs=3,
        batch_size=4,
        checkpoint_dir=tmp_path,
    )
    assert [p.name for p in paths] == ["epoch_001.pt", "epoch_002.pt", "epoch_003.pt"]
    assert find_checkpoints(tmp_path) == [str(p) for p in paths]
    rates = [torch.load(p, weights_only=True)["learning_rate"] for p in paths]
    assert all(r > 0 for r in rates) and rates[1] > rates[0]  # one-cycle: warm-up first


def test_train_demo_model_can_save_epoch_checkpoints(tmp_path: Path) -> None:
    from captum_video.models import train_demo_model

    model, _ = train_demo_model(
        "motion",
        num_train=16,
        num_val=8,
        epochs=2,
        batch_size=8,
        out=tmp_path / "m.pt",
        log=lambda s: None,
        checkpoint_dir=tmp_path / "ck",
    )
    assert find_checkpoints(tmp_path / "ck") == [
        str(tmp_path / "ck" / f"epoch_00{i}.pt") for i in (1, 2)
    ]
    last = torch.load(tmp_path / "ck" / "epoch_002.pt", weights_only=True)["state_dict"]
    for key, value in model.state_dict().items():
        assert torch.equal(last[key], value), key


def test_cli_influence(tmp_path: Path) -> None:
    from captum_video.visualization import write_video

    data = _shapes(0, 6)
    names = sorted(data.classes)  # class folders are read in sorted order: the labels
    clips, labels = [], []
    for i in range(12):
        clip, label, _ = data.render(i % 4, torch.Generator().manual_seed(i))
        folder_label = names.index(data.classes[label])
        frames = np.clip(np.rint(clip.permute(1, 2, 3, 0).numpy() * 255), 0, 255)
        write_video(frames.astype(np.uint8), tmp_path / "train" / names[folder_label] / f"{i}.avi")
        clips.append(clip)
        labels.append(folder_label)
    clips, labels = torch.stack(clips), torch.tensor(labels)
    # Checkpoints of the demo model's architecture: they replace its bundled weights.
    fit_classifier(
        C3DSmall(), clips, labels, epochs=2, batch_size=6, checkpoint_dir=tmp_path / "ck"
    )
    parser = argparse.ArgumentParser()
    add_influence_parser(parser.add_subparsers(dest="command"), str)
    test_video = tmp_path / "train" / "up" / "3.avi"
    argv = [
        "influence",
        str(test_video),
        "--train",
        str(tmp_path / "train"),
        "--checkpoints",
        str(tmp_path / "ck"),
        "--model",
        "demo",
        "--frames",
        "8",
        "--size",
        "16",
        "--k",
        "2",
        "--self-influence",
        "--out",
        str(tmp_path / "out"),
    ]
    written = run_influence(parser.parse_args(argv))
    names = {p.name for p in written}
    assert {"influence.json", "self_influence.json"} <= names
    assert any(n.endswith(".mp4") for n in names) and any(n.endswith(".png") for n in names)
    report = json.loads((tmp_path / "out" / "influence.json").read_text())
    entry = report["videos"][0]
    assert len(entry["proponents"]) == 2 and Path(entry["proponents"][0]["file"]).is_file()
    assert report["classes"] == ["down", "left", "right", "up"]
    # Without --weights the decision explained is the last checkpoint's.
    last = C3DSmall().eval()
    last.load_state_dict(torch.load(tmp_path / "ck" / "epoch_002.pt")["state_dict"])
    clip = read_video(test_video, num_frames=8, size=(16, 16))
    assert entry["decision"] == int(last(clip[None]).argmax())
    ranked = json.loads((tmp_path / "out" / "self_influence.json").read_text())
    assert len(ranked) == len(clips) and ranked[0]["score"] >= ranked[-1]["score"]
    argv[argv.index("--checkpoints") + 1] = str(tmp_path / "nothing")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ValueError, match="holds no checkpoint files"):
        run_influence(parser.parse_args(argv))

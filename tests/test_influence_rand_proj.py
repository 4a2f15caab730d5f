"""TracIn with stored training gradients (``method="fast_rand_proj"``): claims against oracles.

* :class:`ExactNearestNeighbors` returns what ``torch.topk`` of the full product matrix
  returns (indices and dot products), across block boundaries, for any ``k``, and the
  bottom-``k`` for a negated query (how Captum finds opponents).
* Without a projection, ``fast_rand_proj`` gives the proponents, opponents, scores and
  self-influence of an independent autograd computation (sum over checkpoints of step size x
  the dot product of per-clip last-layer gradients) and of ``method="fast"``.
* With a projection (``projection_dim=64`` for ``4 x 32 = 128`` exact numbers per checkpoint),
  the neighbour search is still exact *in the projected space*, and the proponents found
  stay those of the exact scores: measured over projection seeds 0-2, top-5 overlap 0.80,
  0.91, 0.69 (chance: 5/64 = 0.08), exact score kept by the approximate top-5 >= 0.99 of the
  best, correlation of all scores with the exact ones 0.89-0.95, proponents carrying the
  decision's label 1.00.
* The caller's model and random state are untouched; bad input is named; the CLI's
  ``--method fast_rand_proj`` writes the same proponents and opponents as ``--method fast``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from captum_video.cli.influence import add_influence_parser, run_influence
from captum_video.influence import METHODS, ExactNearestNeighbors, VideoTracIn
from captum_video.models import C3DSmall
from captum_video.models.training import fit_classifier
from tests.helpers import assert_model_unchanged, model_snapshot
from tests.test_influence import _clip_grads, _shapes

NUM_TRAIN, K = 64, 5


# -- the neighbour search ---------------------------------------------------------------------


def test_exact_neighbors_equal_a_topk_oracle() -> None:
    gen = torch.Generator().manual_seed(0)
    data = torch.randn(1000, 3, 13, generator=gen)  # rows of any shape are flattened
    query = torch.randn(7, 39, generator=gen)
    products = query @ data.reshape(1000, -1).T
    for chunk_size in (1, 64, 333, 5000):  # one row per block, a partial last block, one block
        index = ExactNearestNeighbors(chunk_size=chunk_size)
        index.setup(data)
        assert index.num_stored == 1000
        for k in (1, 10, 1000):
            indices, found = index.get_nearest_neighbors(query, k)
            top = products.topk(k, dim=1)
            assert indices.dtype == torch.long and indices.shape == (7, k)
            assert torch.equal(indices, top.indices)
            torch.testing.assert_close(found, top.values)
    # Opponents: Captum negates the query and the returned products; that is the bottom-k.
    indices, found = index.get_nearest_neighbors(-query, 10)
    bottom = products.topk(10, dim=1, largest=False)
    assert torch.equal(indices, bottom.indices)
    torch.testing.assert_close(-found, bottom.values)
    # Another dtype of query is searched in the stored dtype.
    index.setup(data.double())
    assert index.get_nearest_neighbors(query, 3)[1].dtype == torch.float64


def test_exact_neighbors_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="chunk_size must be an int >= 1"):
        ExactNearestNeighbors(chunk_size=0)
    index = ExactNearestNeighbors()
    with pytest.raises(RuntimeError, match=r"call setup\(data\)"):
        index.get_nearest_neighbors(torch.zeros(1, 4), 1)
    with pytest.raises(TypeError, match="data must be a torch.Tensor"):
        index.setup(np.zeros((3, 4)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"data must be a tensor \(N, \*\).*shape \(4,\)"):
        index.setup(torch.zeros(4))
    with pytest.raises(ValueError, match=r"shape \(0, 4\)"):
        index.setup(torch.zeros(0, 4))
    with pytest.raises(TypeError, match="data must be a floating-point tensor"):
        index.setup(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="data holds NaN or inf"):
        index.setup(torch.tensor([[0.0, float("nan")]]))
    index.setup(torch.randn(5, 4))
    with pytest.raises(ValueError, match="query rows have 3 elements, the stored rows 4"):
        index.get_nearest_neighbors(torch.zeros(2, 3), 1)
    with pytest.raises(ValueError, match="k is 6 but only 5"):
        index.get_nearest_neighbors(torch.zeros(2, 4), 6)
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        index.get_nearest_neighbors(torch.zeros(2, 4), 0)


# -- VideoTracIn(method="fast_rand_proj") ------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    # A 4-8-16-32 C3D on 64 clips of 3 x 8 x 16 x 16 learns the direction of motion in 16
    # epochs (training and held-out accuracy 1.0); 4 of the 16 epoch checkpoints are traced.
    clips, labels, _ = _shapes(NUM_TRAIN, 0).tensors()
    torch.manual_seed(0)
    net = C3DSmall(widths=(4, 8, 16, 32))
    folder = tmp_path_factory.mktemp("rand_proj")
    paths = fit_classifier(
        net, clips, labels, epochs=16, batch_size=16, lr=1e-2, seed=0, checkpoint_dir=folder
    )
    test, truth, _ = _shapes(16, 50).tensors()
    net.eval()
    fast = VideoTracIn(net, (clips, labels), paths[3::4])
    return {
        "net": net,
        "clips": clips,
        "labels": labels,
        "paths": paths[3::4],
        "test": test,
        "truth": truth,
        "exact": fast.influence(test),
        "fast": fast,
    }


def test_method_is_listed() -> None:
    assert METHODS == ("fast", "full", "fast_rand_proj")


def test_without_projection_equals_autograd_and_fast(trained: dict) -> None:
    clips, labels, test = trained["clips"], trained["labels"], trained["test"]
    tracin = VideoTracIn(trained["net"], (clips, labels), trained["paths"], method="fast_rand_proj")
    # The oracle: per-clip gradients of the last layer's weight by autograd, summed over
    # checkpoints with their step sizes, at the predicted class (target=None).
    oracle = C3DSmall(widths=(4, 8, 16, 32)).eval()
    targets = trained["net"](test).argmax(1).tolist()
    expected = torch.zeros(len(test), NUM_TRAIN)
    diagonal = torch.zeros(NUM_TRAIN)
    for path in trained["paths"]:
        saved = torch.load(path, weights_only=True)
        oracle.load_state_dict(saved["state_dict"])
        params = [oracle.fc.weight]
        train_g = torch.stack(
            [_clip_grads(oracle, params, c, int(y)) for c, y in zip(clips, labels, strict=True)]
        )
        test_g = torch.stack(
            [_clip_grads(oracle, params, c, y) for c, y in zip(test, targets, strict=True)]
        )
        expected += saved["learning_rate"] * test_g @ train_g.T
        diagonal += saved["learning_rate"] * (train_g * train_g).sum(1)
    torch.testing.assert_close(tracin.influence(test), expected, rtol=1e-4, atol=1e-9)
    pro, opp = tracin.proponents(test, k=K), tracin.opponents(test, k=K)
    top, bottom = expected.topk(K, dim=1), expected.topk(K, dim=1, largest=False)
    assert torch.equal(pro.indices, top.indices) and torch.equal(opp.indices, bottom.indices)
    torch.testing.assert_close(pro.scores, top.values, rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(opp.scores, bottom.values, rtol=1e-4, atol=1e-9)
    assert pro.proponents and not opp.proponents and torch.equal(pro.targets, opp.targets)
    assert torch.equal(pro.train_labels, labels[pro.indices])
    # And the same answers as TracInCPFast, which passes over the training set per query.
    fast = trained["fast"]
    for mine, theirs in ((pro, fast.proponents(test, k=K)), (opp, fast.opponents(test, k=K))):
        assert torch.equal(mine.indices, theirs.indices)
        torch.testing.assert_close(mine.scores, theirs.scores, rtol=1e-4, atol=1e-9)
    # Self-influence is TracInCPFast's (RandProj has none): exact.
    torch.testing.assert_close(tracin.self_influence(), diagonal, rtol=1e-4, atol=1e-9)


def _overlap(a: torch.Tensor, b: torch.Tensor) -> float:
    return (
        float(np.mean([len(set(x.tolist()) & set(y.tolist())) for x, y in zip(a, b, strict=True)]))
        / K
    )


def test_projection_keeps_the_most_influential_clips(trained: dict) -> None:
    clips, labels, test, exact = (trained[k] for k in ("clips", "labels", "test", "exact"))
    best = exact.topk(K, dim=1)
    overlaps = []
    for seed in range(3):
        tracin = VideoTracIn(
            trained["net"],
            (clips, labels),
            trained["paths"],
            method="fast_rand_proj",
            projection_dim=64,
            seed=seed,
        )
        # Projected: 4 x 8 numbers per checkpoint (int(sqrt(64)) = 8 of the 32 inputs, the
        # 4 classes mixed at random) instead of 4 x 32.
        assert tracin._captum.src_intermediate_quantities.shape == (NUM_TRAIN, 4 * 8 * 4)
        projected = tracin.influence(test)
        assert not torch.allclose(projected, exact, rtol=1e-2)
        pro = tracin.proponents(test, k=K)
        # The search is exact in the projected space.
        assert torch.equal(pro.indices, projected.topk(K, dim=1).indices)
        torch.testing.assert_close(pro.scores, projected.gather(1, pro.indices))
        overlap = _overlap(pro.indices, best.indices)
        kept = (exact.gather(1, pro.indices).sum(1) / best.values.sum(1)).mean().item()
        corr = np.mean([np.corrcoef(projected[i], exact[i])[0, 1] for i in range(len(test))])
        label = (pro.train_labels == pro.targets[:, None]).float().mean().item()
        print(
            f"projection seed {seed}: top-{K} overlap {overlap:.2f} (chance {K / NUM_TRAIN:.2f}),"
            f" exact score kept {kept:.3f}, correlation {corr:.2f}, decision's label {label:.2f}"
        )
        assert overlap >= 0.6  # measured 0.80, 0.91, 0.69
        assert kept >= 0.98  # measured 0.991-1.000
        assert corr >= 0.8  # measured 0.89-0.95
        assert label >= 0.95  # measured 1.00
        overlaps.append(overlap)
    assert np.mean(overlaps) >= 0.75  # measured 0.80
    # The same seed draws the same projection; projection_dim >= 4 x 32 projects nothing.
    again = VideoTracIn(
        trained["net"], (clips, labels), trained["paths"], method="fast_rand_proj",
        projection_dim=64, seed=2,
    )  # fmt: skip
    torch.testing.assert_close(again.influence(test), projected, rtol=0, atol=0)
    wide = VideoTracIn(
        trained["net"], (clips, labels), trained["paths"], method="fast_rand_proj",
        projection_dim=128,
    )  # fmt: skip
    torch.testing.assert_close(wide.influence(test), exact, rtol=1e-4, atol=1e-9)


def test_callers_model_and_random_state_are_left_alone(trained: dict) -> None:
    net, clips, labels = trained["net"], trained["clips"], trained["labels"]
    saved_clips = clips.clone()
    net.train()
    before = model_snapshot(net)
    rng = torch.random.get_rng_state()
    try:
        with pytest.warns(UserWarning, match="eval mode"):
            tracin = VideoTracIn(
                net, (clips, labels), trained["paths"], method="fast_rand_proj", projection_dim=16
            )
        # Captum calls torch.manual_seed(seed) to draw the projection: on a forked generator.
        assert torch.equal(torch.random.get_rng_state(), rng)
        tracin.proponents(trained["test"][:2], k=2)
        tracin.opponents(trained["test"][:2], k=2)
        tracin.self_influence()
        assert_model_unchanged(before, net)
        assert torch.equal(clips, saved_clips)
    finally:
        net.eval()


def test_bad_input_is_named(trained: dict) -> None:
    args = (trained["net"], (trained["clips"], trained["labels"]), trained["paths"])
    with pytest.raises(ValueError, match="projection_dim= projects .* method='fast_rand_proj'"):
        VideoTracIn(*args, projection_dim=16)
    with pytest.raises(ValueError, match="projection_dim must be an int >= 1, got 0"):
        VideoTracIn(*args, method="fast_rand_proj", projection_dim=0)
    with pytest.raises(TypeError, match="projection_dim must be an int"):
        VideoTracIn(*args, method="fast_rand_proj", projection_dim=16.0)
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        VideoTracIn(*args, method="fast_rand_proj", projection_dim=16, seed=-1)
    with pytest.raises(ValueError, match="layers= chooses the parameters of method='full'"):
        VideoTracIn(*args, method="fast_rand_proj", layers=["fc"])
    with pytest.raises(ValueError, match="final_fc_layer= is the layer of method='fast' or"):
        VideoTracIn(*args, method="full", final_fc_layer="fc")
    with pytest.raises(ValueError, match="must be an nn.Linear"):
        VideoTracIn(*args, method="fast_rand_proj", final_fc_layer="layer3.conv")
    tracin = VideoTracIn(*args, method="fast_rand_proj")
    with pytest.raises(ValueError, match="k is 65"):
        tracin.proponents(trained["test"][:1], k=65)
    with pytest.raises(ValueError, match="clips must be a 5-D"):
        tracin.opponents(trained["test"][0])


# -- the command line ----------------------------------------------------------------------------


def test_cli_fast_rand_proj_answers_as_fast(tmp_path: Path) -> None:
    from captum_video.visualization import write_video

    data = _shapes(0, 6)
    names = sorted(data.classes)  # class folders are read in sorted order: the labels
    clips, labels = [], []
    for i in range(8):
        clip, label, _ = data.render(i % 4, torch.Generator().manual_seed(i))
        frames = np.clip(np.rint(clip.permute(1, 2, 3, 0).numpy() * 255), 0, 255)
        folder = names[names.index(data.classes[label])]
        write_video(frames.astype(np.uint8), tmp_path / "train" / folder / f"{i}.avi")
        clips.append(clip)
        labels.append(names.index(data.classes[label]))
    fit_classifier(
        C3DSmall(),
        torch.stack(clips),
        torch.tensor(labels),
        epochs=2,
        batch_size=4,
        checkpoint_dir=tmp_path / "ck",
    )
    parser = argparse.ArgumentParser()
    add_influence_parser(parser.add_subparsers(dest="command"), str)
    base = [
        "influence",
        str(tmp_path / "train" / "up" / "3.avi"),
        "--train",
        str(tmp_path / "train"),
        "--checkpoints",
        str(tmp_path / "ck"),
        "--frames",
        "8",
        "--size",
        "16",
        "--k",
        "3",
    ]
    reports = {}
    for method in ("fast", "fast_rand_proj"):
        out = tmp_path / method
        extra = ["--self-influence"] if method == "fast_rand_proj" else []
        run_influence(parser.parse_args([*base, "--method", method, *extra, "--out", str(out)]))
        reports[method] = json.loads((out / "influence.json").read_text())
    fast, rand_proj = (reports[m]["videos"][0] for m in ("fast", "fast_rand_proj"))
    assert reports["fast_rand_proj"]["method"] == "TracIn (fast_rand_proj)"
    assert reports["fast_rand_proj"]["projection_dim"] is None
    for key in ("proponents", "opponents"):
        assert [r["index"] for r in rand_proj[key]] == [r["index"] for r in fast[key]]
        np.testing.assert_allclose(
            [r["score"] for r in rand_proj[key]], [r["score"] for r in fast[key]], rtol=1e-4
        )
    ranked = json.loads((tmp_path / "fast_rand_proj" / "self_influence.json").read_text())
    assert len(ranked) == 8 and ranked[0]["score"] >= ranked[-1]["score"]
    projected = tmp_path / "projected"
    argv = [*base, "--method", "fast_rand_proj", "--projection-dim", "4", "--out", str(projected)]
    run_influence(parser.parse_args(argv))
    report = json.loads((projected / "influence.json").read_text())
    assert report["projection_dim"] == 4 and len(report["videos"][0]["proponents"]) == 3
    with pytest.raises(ValueError, match="--projection-dim is for --method fast_rand_proj"):
        run_influence(parser.parse_args([*base, "--projection-dim", "4"]))
    with pytest.raises(SystemExit):  # argparse: must be >= 1
        parser.parse_args([*base, "--method", "fast_rand_proj", "--projection-dim", "0"])

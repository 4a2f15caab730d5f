"""The torch CAV classifier: held-out accuracy, Captum's weight convention, a sklearn oracle."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from captum_video.concept import TorchLinearClassifier


def _blobs(n: int = 30, dim: int = 50, shift: float = 1.5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(dim, generator=g)
    direction /= direction.norm()
    x0 = torch.randn(n, dim, generator=g)
    x1 = torch.randn(n, dim, generator=g) + shift * direction
    return torch.cat([x0, x1]), torch.tensor([3] * n + [7] * n), direction


def test_separates_two_concepts_and_points_the_cav_to_each_concept() -> None:
    x, y, direction = _blobs(shift=6.0)
    clf = TorchLinearClassifier(seed=1)
    stats = clf.train_and_eval([(x, y)])
    assert float(stats["accs"]) == 1.0 and stats["num_test"] == 20 and stats["num_train"] == 40
    w = clf.weights()
    assert clf.classes() == [3, 7] and w.shape == (2, 50)
    assert torch.equal(w[0], -w[1])  # Captum's [-w, w] for two concepts
    # The row of concept 7 points from concept 3 towards concept 7.
    assert F.cosine_similarity(w[1], direction, dim=0) > 0.5


def test_matches_sklearn_logistic_regression_direction() -> None:
    sk = pytest.importorskip("sklearn.linear_model")
    x, y, _ = _blobs(n=40, dim=20, shift=1.0, seed=3)
    clf = TorchLinearClassifier(test_split_ratio=0.0, alpha=0.01, steps=3000, tol=0)
    clf.train_and_eval([(x, y)])
    # Same objective: mean log-loss + alpha/2 ||w||^2 on the centred, scaled features.
    mean = x.mean(0)
    scale = (x - mean).pow(2).mean().sqrt()
    z = ((x - mean) / scale).double().numpy()
    ref = sk.LogisticRegression(C=1.0 / (0.01 * len(x)), tol=1e-10, max_iter=10000)
    ref.fit(z, (y == 7).numpy())
    w_ref = torch.from_numpy(ref.coef_[0]).float() / scale
    assert F.cosine_similarity(clf.weights()[1], w_ref, dim=0) > 0.999


def test_dual_solution_is_used_when_features_outnumber_examples() -> None:
    # F >> n: the weights must lie in the span of the (centred) training activations.
    x, y, _ = _blobs(n=6, dim=500, shift=3.0)
    clf = TorchLinearClassifier(test_split_ratio=0.0)
    clf.train_and_eval([(x, y)])
    centred = x - x.mean(0)
    w = clf.weights()[1]
    coef = torch.linalg.lstsq(centred.T.double(), w.double()[:, None]).solution
    assert torch.allclose((centred.T.double() @ coef)[:, 0], w.double(), atol=1e-5)


def test_balanced_stratified_split_is_seeded() -> None:
    x = torch.randn(50, 4)
    y = torch.tensor([0] * 35 + [1] * 15)
    a, b = TorchLinearClassifier(seed=5), TorchLinearClassifier(seed=5)
    sa, sb = a.train_and_eval([(x, y)]), b.train_and_eval([(x, y)])
    assert torch.equal(a.weights(), b.weights()) and sa["accs"] == sb["accs"]
    # 15 per class after balancing; 5 of each held out.
    assert sa["num_train"] == 20 and sa["num_test"] == 10


def test_more_than_two_concepts_gives_one_row_each() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(3) * 5
    x = torch.cat([torch.randn(20, 3, generator=g) + c for c in centres])
    y = torch.tensor([0] * 20 + [1] * 20 + [2] * 20)
    clf = TorchLinearClassifier()
    stats = clf.train_and_eval([(x[:30], y[:30]), (x[30:], y[30:])])  # several batches
    assert clf.weights().shape == (3, 3) and float(stats["accs"]) > 0.9
    assert torch.equal(clf.weights().argmax(1), torch.arange(3))


def test_errors() -> None:
    with pytest.raises(ValueError):
        TorchLinearClassifier(loss="perceptron")
    with pytest.raises(ValueError):
        TorchLinearClassifier(test_split_ratio=1.0)
    with pytest.raises(RuntimeError):
        TorchLinearClassifier().weights()
    with pytest.raises(ValueError, match="two concepts"):
        TorchLinearClassifier().train_and_eval([(torch.rand(4, 2), torch.zeros(4))])

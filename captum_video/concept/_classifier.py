"""A torch linear classifier for CAVs: runs where the activations are, needs no sklearn.

Captum's ``DefaultClassifier`` wraps sklearn's ``SGDClassifier``: it needs sklearn, copies
activations to the CPU and to numpy, and splits the data with the global ``random`` state.
Video activations are large, so this classifier trains on the activations' own device
(GPU when there is one), with a seeded, stratified hold-out split.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from captum.concept._utils.classifier import Classifier
from torch import Tensor
from torch.utils.data import DataLoader

__all__ = ["TorchLinearClassifier"]


class TorchLinearClassifier(Classifier):
    r"""L2-regularised linear classifier trained full-batch in torch (logistic or squared hinge).

    It keeps the TCAV recipe of tensorflow/tcav and Captum: balance the concept sets by
    truncating to the smallest, hold out ``test_split_ratio`` of each class (stratified), fit
    a linear model with penalty ``alpha`` and report the held-out accuracy as ``"accs"``. For
    two concepts the weights are ``[-w, w]`` (Captum's convention, so the CAV of the concept
    with the larger id points towards it); for more, one row per class (softmax regression).

    Features are centred and divided by one global scale before fitting (better conditioning
    at any activation magnitude); the returned weights are mapped back to the raw activation
    space, so their direction is the normal of the decision boundary there.

    Args:
        alpha (float, optional): L2 penalty (sklearn SGD's default). Default: 0.01
        loss (str, optional): ``"logistic"`` or ``"squared_hinge"``. Default: ``"logistic"``
        steps (int, optional): accelerated gradient steps (the direction settles within
            ~50). Default: 100
        test_split_ratio (float, optional): held-out share of each class. Default: 0.33
        balance (bool, optional): truncate every class to the smallest. Default: True
        seed (int, optional): seed of the split and the truncation. Default: 0
        tol (float, optional): stop early when a step changes the weights by less than
            this, relative to their size. Default: 1e-4

    Returns:
        A :class:`captum.concept._utils.classifier.Classifier`.

    Example::

        >>> clf = TorchLinearClassifier(seed=0)
        >>> x = torch.cat([torch.randn(20, 5) + 2, torch.randn(20, 5) - 2])
        >>> y = torch.tensor([0] * 20 + [1] * 20)
        >>> stats = clf.train_and_eval([(x, y)])
        >>> float(stats["accs"]) > 0.9, clf.weights().shape
        (True, torch.Size([2, 5]))
    """

    def __init__(
        self,
        alpha: float = 0.01,
        loss: str = "logistic",
        steps: int = 100,
        test_split_ratio: float = 0.33,
        balance: bool = True,
        seed: int = 0,
        tol: float = 1e-4,
    ) -> None:
        if loss not in ("logistic", "squared_hinge"):
            raise ValueError(f"loss must be 'logistic' or 'squared_hinge', got {loss!r}")
        if not 0.0 <= test_split_ratio < 1.0:
            raise ValueError(f"test_split_ratio must be in [0, 1), got {test_split_ratio}")
        if alpha < 0 or steps < 1:
            raise ValueError(f"alpha must be >= 0 and steps >= 1, got {alpha}, {steps}")
        self.alpha = alpha
        self.loss = loss
        self.steps = steps
        self.test_split_ratio = test_split_ratio
        self.balance = balance
        self.seed = seed
        self.tol = tol
        self._weights: Tensor | None = None
        self._classes: list[int] = []

    def train_and_eval(
        self, dataloader: DataLoader | Any, test_split_ratio: float | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        r"""Fit on ``(activations, labels)`` batches and return the held-out accuracy.

        Args:
            dataloader (iterable): yields ``(inputs (B, F), labels (B,))``.
            test_split_ratio (float, optional): overrides the constructor's ratio.
            **kwargs: ignored (Captum passes classifier kwargs through).

        Returns:
            dict: ``{"accs": held-out accuracy (0-d tensor), "train_accs": ...,
            "num_train": int, "num_test": int}``.
        """
        ratio = self.test_split_ratio if test_split_ratio is None else test_split_ratio
        xs, ys = zip(*[(x, y) for x, y in dataloader], strict=True)
        flat = [t.reshape(t.shape[0], -1) for t in xs]
        x = (flat[0] if len(flat) == 1 else torch.cat(flat)).float()  # no copy for one batch
        y = torch.cat(ys).to(x.device).long()
        classes = sorted(set(int(v) for v in y.tolist()))
        if len(classes) < 2:
            raise ValueError(f"a CAV needs examples of at least two concepts, got labels {classes}")
        gen = torch.Generator().manual_seed(self.seed)
        counts = [int((y == c).sum()) for c in classes]
        keep = min(counts) if self.balance else None
        train_idx, test_idx = [], []
        for c in classes:
            idx = torch.nonzero(y == c).flatten()
            idx = idx[torch.randperm(len(idx), generator=gen).to(idx.device)][:keep]
            n_test = int(round(ratio * len(idx)))
            n_test = min(n_test, len(idx) - 1)  # keep at least one training example
            test_idx.append(idx[:n_test])
            train_idx.append(idx[n_test:])
        tr, te = torch.cat(train_idx), torch.cat(test_idx)
        target = torch.searchsorted(torch.tensor(classes, device=y.device), y)

        with torch.no_grad():
            # Everything below touches the (n, F) activations only a few times: the training
            # mean, the centred copy, one Gram matrix and the final weights. The rest works on
            # n x n matrices (F is 10^4-10^6 for video layers, n a few dozen clips).
            select = torch.zeros(1, len(x), device=x.device, dtype=x.dtype)
            select[0, tr] = 1.0 / len(tr)
            centred = x - select @ x  # centred with the training mean
            gram_all = centred @ centred.T
            # One global scale (training RMS) for conditioning: z = centred / scale.
            scale2 = (gram_all.diagonal()[tr].sum() / (len(tr) * x.shape[1])).clamp_min(1e-24)
            gram = gram_all / scale2
            a, b = self._fit(gram[tr][:, tr], target[tr], 1 if len(classes) == 2 else len(classes))
            coef = torch.zeros(len(x), a.shape[1], device=x.device, dtype=x.dtype)
            coef[tr] = a
            # w_z = a^T z_tr; in raw activation units the normal is w_z / scale.
            weights = (coef.T @ centred) / scale2
            self._weights = torch.cat([-weights, weights]) if len(weights) == 1 else weights
            self._classes = classes
            stats: dict[str, Any] = {
                "accs": self._accuracy(gram[te][:, tr] @ a + b, target[te]),
                "train_accs": self._accuracy(gram[tr][:, tr] @ a + b, target[tr]),
                "num_train": len(tr),
                "num_test": len(te),
            }
        return stats

    @torch.no_grad()
    def _fit(self, gram: Tensor, target: Tensor, n_out: int) -> tuple[Tensor, Tensor]:
        """Accelerated gradient descent (FISTA) with analytic gradients, in the dual.

        Starting from zero, every gradient step keeps ``w`` in the span of the training
        activations, ``w = A^T Z``, so the iteration runs on the ``n x n`` Gram matrix
        ``K = Z Z^T`` instead of ``n x F`` activations: for video layers F is 10^4-10^6 and n a
        few dozen clips, which makes a CAV cost one Gram matrix. The loss is smooth, so the
        fixed step ``1 / L`` from the largest eigenvalue of ``K`` converges.
        """
        n = gram.shape[0]
        # Bias column folded into the curvature bound (+1 per entry).
        lam = float(torch.linalg.eigvalsh((gram + 1.0).double())[-1])
        curvature = {"logistic": 0.25 if n_out == 1 else 0.5, "squared_hinge": 2.0}[self.loss]
        step = 1.0 / (curvature * lam / n + self.alpha)
        onehot = F.one_hot(target, max(n_out, 2)).to(gram.dtype)
        sign = target.to(gram.dtype) * 2 - 1
        a = torch.zeros(n, n_out, device=gram.device, dtype=gram.dtype)  # w = a^T z
        b = torch.zeros(n_out, device=gram.device, dtype=gram.dtype)
        a_prev, b_prev, momentum = a, b, 1.0
        for it in range(self.steps):
            if it % 25 == 24 and float((a - a_prev).abs().max()) <= self.tol * float(
                a.abs().max().clamp_min(1e-30)
            ):
                break  # converged: the last step moved the dual weights by < tol
            next_momentum = (1 + (1 + 4 * momentum**2) ** 0.5) / 2
            beta = (momentum - 1) / next_momentum
            ay, by = a + beta * (a - a_prev), b + beta * (b - b_prev)  # Nesterov look-ahead
            logits = gram @ ay + by
            if n_out == 1:
                margin = logits[:, 0] * sign
                if self.loss == "logistic":
                    dlogit = (-sign * torch.sigmoid(-margin))[:, None]
                else:
                    dlogit = (-2 * sign * F.relu(1 - margin))[:, None]
            else:
                dlogit = torch.softmax(logits, 1) - onehot
            a_prev, b_prev, momentum = a, b, next_momentum
            a = ay - step * (dlogit / n + self.alpha * ay)
            b = by - step * dlogit.mean(0)
        return a, b

    @staticmethod
    def _accuracy(logits: Tensor, target: Tensor) -> Tensor:
        if len(target) == 0:
            return torch.tensor(float("nan"))
        pred = (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(1)
        return (pred == target).float().mean().cpu()

    def weights(self) -> Tensor:
        r"""The CAVs, ``(C, F)``: one row per class in the order of :meth:`classes`.

        Returns:
            Tensor: the weights, on the device the activations were on.
        """
        if self._weights is None:
            raise RuntimeError("the classifier is not trained; call train_and_eval first")
        return self._weights

    def classes(self) -> list[int]:
        r"""The concept ids the rows of :meth:`weights` belong to, sorted.

        Returns:
            list of int
        """
        return list(self._classes)

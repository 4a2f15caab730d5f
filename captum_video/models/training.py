"""Training the demo models on MovingShapes (``python -m captum_video.models --train``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from captum_video.datasets import MovingShapes
from captum_video.models.demo import (
    ARCHITECTURES,
    DEMO_FRAMES,
    DEMO_SIZE,
    TWO_STREAM_ARCHITECTURES,
    demo_checkpoint_path,
)
from captum_video.models.two_stream import two_stream_inputs

__all__ = [
    "CHECKPOINT_PATTERN",
    "TRAINING_DEFAULTS",
    "evaluate",
    "fit_classifier",
    "train_demo_model",
]

#: Per-architecture training defaults where they differ from the CNNs' (``epochs`` 12, Adam
#: at ``lr`` 3e-3 with weight decay 1e-4). The transformer learns with AdamW and a stronger
#: weight decay (Loshchilov and Hutter 2019), as vision transformers usually are trained.
TRAINING_DEFAULTS: dict[str, dict[str, Any]] = {
    "video_transformer_small": {"epochs": 4, "lr": 2e-3, "weight_decay": 0.05, "adamw": True},
}

#: Clips, or a tuple of model inputs (the two-stream model's ``(rgb, flow)``).
Inputs = Tensor | tuple[Tensor, ...]


def _take(inputs: Inputs, index: Tensor | slice) -> tuple[Tensor, ...]:
    """The examples ``index`` of every model input, as a tuple of forward arguments."""
    return tuple(t[index] for t in inputs) if isinstance(inputs, tuple) else (inputs[index],)


@torch.no_grad()
def evaluate(model: nn.Module, clips: Inputs, labels: Tensor, batch_size: int = 64) -> float:
    """Accuracy of ``model`` on ``clips`` ``(N, C, T, H, W)`` with integer ``labels``.

    Args:
        model (nn.Module): a classifier.
        clips (Tensor or tuple of Tensor): the clips, or a tuple of the model's inputs (the
            two-stream model's ``(rgb, flow)``), each with the examples in dimension 0.
        labels (Tensor): the true classes, ``(N,)``.
        batch_size (int, optional): clips per forward pass. Default: 64

    Returns:
        float: the share of clips classified correctly.

    Example::

        >>> from captum_video.datasets import MovingShapes
        >>> clips, labels, _ = MovingShapes(num_samples=16, seed=3).tensors()
        >>> 0.0 <= evaluate(load_demo_model(), clips, labels) <= 1.0
        True
    """
    was_training = model.training
    model.eval()
    correct = 0
    total = len(labels)
    for start in range(0, total, batch_size):
        logits = model(*_take(clips, slice(start, start + batch_size)))
        correct += int((logits.argmax(1) == labels[start : start + batch_size]).sum())
    model.train(was_training)
    return correct / max(total, 1)


#: File names of the per-epoch checkpoints :func:`fit_classifier` writes (1-based epoch,
#: zero-padded so that a name sort is the epoch order).
CHECKPOINT_PATTERN = "epoch_{epoch:03d}.pt"


def fit_classifier(
    model: nn.Module,
    clips: Inputs,
    labels: Tensor,
    epochs: int = 12,
    batch_size: int = 32,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    adamw: bool = False,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> list[Path]:
    """Train ``model`` on ``(clips, labels)`` with cross-entropy, Adam and a one-cycle schedule.

    With ``checkpoint_dir``, the weights after every epoch are saved there as
    :data:`CHECKPOINT_PATTERN` files holding ``{"state_dict", "learning_rate", "epoch"}``.
    ``learning_rate`` is the *mean* step size of the epoch's steps: TracIn (Pruthi et al.
    2020, "Estimating Training Data Influence by Tracing Gradient Descent") weighs each
    checkpoint by the step size of the interval it stands for, and under a one-cycle schedule
    the step size changes within an epoch.

    Args:
        model (nn.Module): the classifier, trained in place (left in train mode).
        clips (Tensor or tuple of Tensor): training clips ``(N, C, T, H, W)``, or a tuple of
            the model's inputs (the two-stream model's ``(rgb, flow)``).
        labels (Tensor): their classes ``(N,)``.
        epochs (int, optional): passes over the clips. Default: 12
        batch_size (int, optional): clips per step. Default: 32
        lr (float, optional): the one-cycle schedule's peak learning rate. Default: 3e-3
        weight_decay (float, optional): weight decay. Default: 1e-4
        adamw (bool, optional): AdamW (decoupled decay) instead of Adam. Default: False
        seed (int, optional): seed of the clip order. Default: 0
        checkpoint_dir (str or Path, optional): folder for per-epoch checkpoints (created).
            Default: None (none saved)
        on_epoch (callable, optional): called as ``on_epoch(epoch, mean_loss)`` after each
            epoch (0-based). Default: None

    Returns:
        list of Path: the checkpoints written, in epoch order (empty without
        ``checkpoint_dir``).

    Example::

        >>> from captum_video.datasets import MovingShapes
        >>> clips, labels, _ = MovingShapes(num_samples=32, num_frames=8, size=16,
        ...                                 speed=(1.0, 1.0)).tensors()
        >>> net = C3DSmall(widths=(4, 8, 8, 8))
        >>> paths = fit_classifier(net, clips, labels, epochs=2, checkpoint_dir="/tmp/ckpts")
        >>> [p.name for p in paths]
        ['epoch_001.pt', 'epoch_002.pt']
    """
    num_train = len(labels)
    optimizer = torch.optim.AdamW if adamw else torch.optim.Adam
    opt = optimizer(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * ((num_train + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(num_train, generator=gen)
        total = 0.0
        step_sizes: list[float] = []
        for start in range(0, num_train, batch_size):
            idx = order[start : start + batch_size]
            loss = nn.functional.cross_entropy(model(*_take(clips, idx)), labels[idx])
            opt.zero_grad()
            loss.backward()
            step_sizes.append(float(opt.param_groups[0]["lr"]))
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if folder is not None:
            path = folder / CHECKPOINT_PATTERN.format(epoch=epoch + 1)
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            rate = sum(step_sizes) / max(len(step_sizes), 1)
            torch.save({"state_dict": state, "learning_rate": rate, "epoch": epoch + 1}, path)
            written.append(path)
        if on_epoch is not None:
            on_epoch(epoch, total / max(num_train, 1))
    return written


def train_demo_model(
    variant: str = "motion",
    arch: str = "c3d_small",
    num_train: int = 2048,
    num_val: int = 512,
    epochs: int | None = None,
    batch_size: int = 32,
    lr: float | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    log: Callable[[str], None] = print,
    checkpoint_dir: str | Path | None = None,
) -> tuple[nn.Module, float]:
    """Train a demo model on ``MovingShapes(variant)`` and save it as a bundled checkpoint.

    Training and validation use disjoint data-set seeds (``seed`` and ``seed + 1``).

    Args:
        variant (str, optional): data-set variant. Default: ``"motion"``
        arch (str, optional): ``"c3d_small"``, ``"r2plus1d_small"``,
            ``"video_transformer_small"`` or ``"two_stream_small"`` (trained on the
            ``(rgb, flow)`` pairs of :func:`~captum_video.models.two_stream_inputs`).
            Default: ``"c3d_small"``
        num_train (int, optional): training clips. Default: 2048
        num_val (int, optional): held-out clips. Default: 512
        epochs (int, optional): passes over the training clips. Default: 12 (the
            transformer: 4, see :data:`TRAINING_DEFAULTS`)
        batch_size (int, optional): clips per step. Default: 32
        lr (float, optional): Adam learning rate (one-cycle schedule). Default: 3e-3 (the
            transformer: AdamW at 2e-3, weight decay 0.05)
        seed (int, optional): seed of data, initialisation and order. Default: 0
        out (str or Path, optional): where to save; default the bundled checkpoint path.
        log (callable, optional): where progress lines go. Default: ``print``
        checkpoint_dir (str or Path, optional): also save the weights after every epoch
            there (see :func:`fit_classifier`), the checkpoints TracIn reads
            (:mod:`captum_video.influence`). Default: None (only the final model is saved)

    Returns:
        tuple: ``(model, held_out_accuracy)``.

    Example::

        >>> model, acc = train_demo_model("motion", num_train=64, num_val=32, epochs=1,
        ...                               out="/tmp/tiny.pt", log=lambda s: None)
    """
    torch.manual_seed(seed)
    train = MovingShapes(
        variant, num_samples=num_train, seed=seed, size=DEMO_SIZE, num_frames=DEMO_FRAMES
    )
    val = MovingShapes(
        variant, num_samples=num_val, seed=seed + 1, size=DEMO_SIZE, num_frames=DEMO_FRAMES
    )
    clips_train, y_train, _ = train.tensors()
    clips_val, y_val, _ = val.tensors()
    x_train: Inputs = clips_train
    x_val: Inputs = clips_val
    if arch in TWO_STREAM_ARCHITECTURES:  # optical flow once, before training (no gradient)
        x_train, x_val = two_stream_inputs(clips_train), two_stream_inputs(clips_val)
    config: dict[str, Any] = {"num_classes": train.num_classes}
    if arch == "video_transformer_small":  # position embeddings fix the clip size
        config.update(frames=DEMO_FRAMES, size=DEMO_SIZE, dim=32, depth=2, heads=1)
    model = ARCHITECTURES[arch](**config)
    defaults = TRAINING_DEFAULTS.get(arch, {})
    epochs = int(epochs if epochs is not None else defaults.get("epochs", 12))
    lr = float(lr if lr is not None else defaults.get("lr", 3e-3))
    t0 = time.perf_counter()

    def report(epoch: int, loss: float) -> None:
        acc = evaluate(model, x_val, y_val)
        log(
            f"epoch {epoch + 1}/{epochs}  loss {loss:.4f}  held-out acc {acc:.3f}  "
            f"({time.perf_counter() - t0:.0f}s)"
        )

    fit_classifier(
        model,
        x_train,
        y_train,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=float(defaults.get("weight_decay", 1e-4)),
        adamw=bool(defaults.get("adamw", False)),
        seed=seed,
        checkpoint_dir=checkpoint_dir,
        on_epoch=report,
    )
    acc = evaluate(model, x_val, y_val)
    path = Path(out) if out is not None else demo_checkpoint_path(variant, arch)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "arch": arch,
            "config": config,
            "state_dict": {k: v.half() for k, v in model.state_dict().items()},
            "variant": variant,
            "classes": list(train.classes),
            "num_frames": DEMO_FRAMES,
            "size": DEMO_SIZE,
            "input_range": (0.0, 1.0),
            "val_accuracy": acc,
            "train_command": f"python -m captum_video.models --train --variant {variant} "
            f"--arch {arch} --seed {seed} --epochs {epochs} --num-train {num_train}",
        },
        path,
    )
    log(f"saved {path} ({path.stat().st_size / 1024:.0f} KiB), held-out accuracy {acc:.3f}")
    return model.eval(), acc

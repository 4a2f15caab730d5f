"""Training the demo models on MovingShapes (``python -m captum_video.models --train``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from captum_video.datasets import MovingShapes
from captum_video.models.demo import ARCHITECTURES, DEMO_FRAMES, DEMO_SIZE, demo_checkpoint_path

__all__ = ["TRAINING_DEFAULTS", "evaluate", "train_demo_model"]

#: Per-architecture training defaults where they differ from the CNNs' (``epochs`` 12, Adam
#: at ``lr`` 3e-3 with weight decay 1e-4). The transformer learns with AdamW and a stronger
#: weight decay (Loshchilov and Hutter 2019), as vision transformers usually are trained.
TRAINING_DEFAULTS: dict[str, dict[str, Any]] = {
    "video_transformer_small": {"epochs": 4, "lr": 2e-3, "weight_decay": 0.05, "adamw": True},
}


@torch.no_grad()
def evaluate(model: nn.Module, clips: Tensor, labels: Tensor, batch_size: int = 64) -> float:
    """Accuracy of ``model`` on ``clips`` ``(N, C, T, H, W)`` with integer ``labels``.

    Args:
        model (nn.Module): a classifier.
        clips (Tensor): the clips.
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
    for start in range(0, len(clips), batch_size):
        logits = model(clips[start : start + batch_size])
        correct += int((logits.argmax(1) == labels[start : start + batch_size]).sum())
    model.train(was_training)
    return correct / max(len(clips), 1)


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
) -> tuple[nn.Module, float]:
    """Train a demo model on ``MovingShapes(variant)`` and save it as a bundled checkpoint.

    Training and validation use disjoint data-set seeds (``seed`` and ``seed + 1``).

    Args:
        variant (str, optional): data-set variant. Default: ``"motion"``
        arch (str, optional): ``"c3d_small"``, ``"r2plus1d_small"`` or
            ``"video_transformer_small"``. Default: ``"c3d_small"``
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
    x_train, y_train, _ = train.tensors()
    x_val, y_val, _ = val.tensors()
    config: dict[str, Any] = {"num_classes": train.num_classes}
    if arch == "video_transformer_small":  # position embeddings fix the clip size
        config.update(frames=DEMO_FRAMES, size=DEMO_SIZE, dim=32, depth=2, heads=1)
    model = ARCHITECTURES[arch](**config)
    defaults = TRAINING_DEFAULTS.get(arch, {})
    epochs = int(epochs if epochs is not None else defaults.get("epochs", 12))
    lr = float(lr if lr is not None else defaults.get("lr", 3e-3))
    decay = float(defaults.get("weight_decay", 1e-4))
    optimizer = torch.optim.AdamW if defaults.get("adamw") else torch.optim.Adam
    opt = optimizer(model.parameters(), lr=lr, weight_decay=decay)
    steps = epochs * ((num_train + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(num_train, generator=gen)
        total = 0.0
        for start in range(0, num_train, batch_size):
            idx = order[start : start + batch_size]
            loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        acc = evaluate(model, x_val, y_val)
        log(
            f"epoch {epoch + 1}/{epochs}  loss {total / num_train:.4f}  held-out acc {acc:.3f}  "
            f"({time.perf_counter() - t0:.0f}s)"
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
            f"--arch {arch} --seed {seed}",
        },
        path,
    )
    log(f"saved {path} ({path.stat().st_size / 1024:.0f} KiB), held-out accuracy {acc:.3f}")
    return model.eval(), acc

"""Small reference 3-D CNNs, the bundled demo checkpoints, and loaders for torchvision models.

The demo models are tiny (tens of thousands of parameters), train in minutes on a CPU on
:class:`~captum_video.datasets.MovingShapes`, and ship inside the package, so examples, tests
and ``captum-video demo`` run with no download. Rebuild them with::

    python -m captum_video.models --train --variant motion
    python -m captum_video.models --train --variant appearance
    python -m captum_video.models --train --variant mixed
"""

from __future__ import annotations

import argparse
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "C3DSmall",
    "R2Plus1DSmall",
    "load_demo_model",
    "demo_model_info",
    "demo_checkpoint_path",
    "load_torchvision_model",
    "TORCHVISION_VIDEO_MODELS",
    "train_demo_model",
    "evaluate",
]

CHECKPOINT_DIR = Path(__file__).with_name("checkpoints")
DEMO_FRAMES = 16
DEMO_SIZE = 32


class C3DSmall(nn.Module):
    r"""A C3D-style 3-D CNN: 3x3x3 convolutions, max pooling, global average pool, linear head.

    Layout (for a ``3 x 16 x 32 x 32`` clip): ``stem`` 8 x 16 x 32 x 32, ``layer1``
    16 x 16 x 16 x 16, ``layer2`` 32 x 8 x 8 x 8, ``layer3`` 32 x 4 x 4 x 4, then ``avgpool``
    and ``fc``. The last conv block keeps a quarter of the input's frames, so CAM-type maps
    still resolve time. The head is global-average-pool + linear, so CAM identities hold.
    Inputs are clips in ``[0, 1]`` (no normalisation layer).

    Args:
        num_classes (int, optional): number of outputs. Default: 4
        in_channels (int, optional): input channels. Default: 3
        widths (tuple of int, optional): channels of stem, layer1, layer2, layer3.
            Default: ``(8, 16, 32, 32)``
        bias (bool, optional): give convolutions and the classifier a bias. Default: True

    Returns:
        ``forward(x)`` returns logits ``(N, num_classes)``.

    Example::

        >>> model = C3DSmall()
        >>> model(torch.rand(2, 3, 16, 32, 32)).shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        num_classes: int = 4,
        in_channels: int = 3,
        widths: tuple[int, int, int, int] = (8, 16, 32, 32),
        bias: bool = True,
    ) -> None:
        super().__init__()
        w0, w1, w2, w3 = widths
        self.stem = nn.Sequential(
            OrderedDict(conv=nn.Conv3d(in_channels, w0, 3, padding=1, bias=bias), relu=nn.ReLU())
        )
        self.layer1 = _c3d_block(w0, w1, (1, 2, 2), bias)
        self.layer2 = _c3d_block(w1, w2, (2, 2, 2), bias)
        self.layer3 = _c3d_block(w2, w3, (2, 2, 2), bias)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(w3, num_classes, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.flatten(self.avgpool(x)))


def _c3d_block(cin: int, cout: int, pool: tuple[int, int, int], bias: bool) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            pool=nn.MaxPool3d(pool, stride=pool),
            conv=nn.Conv3d(cin, cout, 3, padding=1, bias=bias),
            relu=nn.ReLU(),
        )
    )


class Conv2Plus1D(nn.Sequential):
    """A (2+1)-D convolution: a spatial ``1 x 3 x 3`` conv, BatchNorm, ReLU, then a temporal
    ``3 x 1 x 1`` conv, as in torchvision's ``Conv2Plus1D``."""

    def __init__(self, cin: int, cout: int, mid: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv3d(
                cin, mid, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False
            ),
            nn.BatchNorm3d(mid),
            nn.ReLU(),
            nn.Conv3d(mid, cout, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False),
        )


class BasicBlock(nn.Module):
    """A residual block with the attribute names of torchvision's video ``BasicBlock``
    (``conv1``, ``conv2``, ``downsample``, ``relu``), so canonizers written for torchvision's
    video ResNets apply to it unchanged."""

    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        mid = (cin * cout * 27) // (cin * 9 + 3 * cout)
        self.conv1 = nn.Sequential(
            Conv2Plus1D(cin, cout, mid, stride), nn.BatchNorm3d(cout), nn.ReLU()
        )
        mid2 = (cout * cout * 27) // (cout * 9 + 3 * cout)
        self.conv2 = nn.Sequential(Conv2Plus1D(cout, cout, mid2), nn.BatchNorm3d(cout))
        self.relu = nn.ReLU()
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv3d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm3d(cout)
            )
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.conv1(x))
        out = out + residual
        return self.relu(out)


class R2Plus1DSmall(nn.Module):
    r"""An R(2+1)D-style residual 3-D CNN with BatchNorm3d, shaped like torchvision's
    ``r2plus1d_18`` (``stem``, ``layer1..layer3``, ``avgpool``, ``fc``) but tiny.

    Args:
        num_classes (int, optional): number of outputs. Default: 4
        in_channels (int, optional): input channels. Default: 3
        widths (tuple of int, optional): channels of layer1, layer2, layer3.
            Default: ``(16, 32, 32)``

    Returns:
        ``forward(x)`` returns logits ``(N, num_classes)``.

    Example::

        >>> model = R2Plus1DSmall()
        >>> model(torch.rand(2, 3, 16, 32, 32)).shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        num_classes: int = 4,
        in_channels: int = 3,
        widths: tuple[int, int, int] = (16, 32, 32),
    ) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.stem = nn.Sequential(
            nn.Conv3d(in_channels, 24, (1, 3, 3), padding=(0, 1, 1), bias=False),
            nn.BatchNorm3d(24),
            nn.ReLU(),
            nn.Conv3d(24, w1, (3, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(w1),
            nn.ReLU(),
        )
        self.layer1 = BasicBlock(w1, w1)
        self.layer2 = BasicBlock(w1, w2, stride=2)
        self.layer3 = BasicBlock(w2, w3, stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(w3, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.avgpool(x).flatten(1))


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "c3d_small": C3DSmall,
    "r2plus1d_small": R2Plus1DSmall,
}


# -- demo checkpoints ------------------------------------------------------------------------


def demo_checkpoint_path(variant: str = "motion") -> Path:
    """Path of the bundled checkpoint trained on ``MovingShapes(variant)``.

    Args:
        variant (str, optional): ``"motion"``, ``"appearance"`` or ``"mixed"``.
            Default: ``"motion"``

    Returns:
        pathlib.Path: the ``.pt`` file inside the installed package.

    Example::

        >>> demo_checkpoint_path("motion").name
        'demo_c3d_motion.pt'
    """
    return CHECKPOINT_DIR / f"demo_c3d_{variant}.pt"


def load_demo_model(variant: str = "motion", device: str | torch.device | None = None) -> nn.Module:
    """Load a bundled demo model in eval mode, with no network access.

    The model is a :class:`C3DSmall` trained on ``MovingShapes(variant)`` clips of
    ``3 x 16 x 32 x 32`` in ``[0, 1]``; the checkpoint's metadata (classes, clip size,
    held-out accuracy, training command) is attached as ``model.demo_info``.

    Args:
        variant (str, optional): ``"motion"`` (label = direction of motion),
            ``"appearance"`` (label = colour) or ``"mixed"`` (colour x direction).
            Default: ``"motion"``
        device (str or torch.device, optional): where to put the model. Default: CPU

    Returns:
        torch.nn.Module: the model, in eval mode.

    Example::

        >>> from captum_video.datasets import MovingShapes
        >>> model = load_demo_model("motion")
        >>> clip, label, _ = MovingShapes("motion", num_samples=1, seed=5)[0]
        >>> int(model(clip[None]).argmax()) == label
        True
    """
    ckpt = _load_demo_checkpoint(variant)
    model = ARCHITECTURES[ckpt["arch"]](**ckpt["config"])
    model.load_state_dict({k: v.float() for k, v in ckpt["state_dict"].items()})
    model.demo_info = {k: v for k, v in ckpt.items() if k != "state_dict"}  # type: ignore[assignment]
    return model.eval().to(device or "cpu")


def demo_model_info(variant: str = "motion") -> dict[str, Any]:
    """Metadata of a bundled demo checkpoint: classes, clip size, held-out accuracy, command.

    Args:
        variant (str, optional): ``"motion"`` or ``"appearance"``. Default: ``"motion"``

    Returns:
        dict: everything in the checkpoint except the weights.

    Example::

        >>> demo_model_info("motion")["classes"]
        ['right', 'left', 'down', 'up']
    """
    ckpt = _load_demo_checkpoint(variant)
    return {k: v for k, v in ckpt.items() if k != "state_dict"}


def _load_demo_checkpoint(variant: str) -> dict[str, Any]:
    path = demo_checkpoint_path(variant)
    if not path.is_file():
        raise FileNotFoundError(
            f"no bundled demo checkpoint for variant {variant!r} at {path}; build it with "
            f"`python -m captum_video.models --train --variant {variant}`"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


# -- torchvision models ----------------------------------------------------------------------

#: torchvision video classifiers the CLI knows, with their normalisation preset.
TORCHVISION_VIDEO_MODELS: dict[str, str] = {
    "r3d_18": "kinetics",
    "mc3_18": "kinetics",
    "r2plus1d_18": "kinetics",
    "s3d": "kinetics",
    "mvit_v1_b": "mvit",
    "mvit_v2_s": "mvit",
    "swin3d_t": "swin3d",
    "swin3d_s": "swin3d",
    "swin3d_b": "swin3d",
}


def load_torchvision_model(
    name: str,
    weights: str | Path | None = None,
    num_classes: int | None = None,
    device: str | torch.device | None = None,
) -> nn.Module:
    """Build a torchvision video classifier and load weights from a local file.

    Pretrained weights are never downloaded: pass the path of a state dict (for instance one
    saved from ``torchvision.models.video.r3d_18(weights="DEFAULT").state_dict()`` on a
    machine with network access). Checkpoints that wrap the state dict under ``"state_dict"``
    or ``"model"`` and DataParallel ``module.`` prefixes are accepted.

    Args:
        name (str): one of :data:`TORCHVISION_VIDEO_MODELS`.
        weights (str or Path, optional): local state-dict file; ``None`` keeps random weights.
        num_classes (int, optional): outputs of the classifier; inferred from the weights
            when given, else 400 (Kinetics).
        device (str or torch.device, optional): where to put the model. Default: CPU

    Returns:
        torch.nn.Module: the model, in eval mode.

    Example::

        >>> model = load_torchvision_model("r3d_18", num_classes=4)
        >>> model(torch.rand(1, 3, 8, 64, 64)).shape
        torch.Size([1, 4])
    """
    import torchvision.models.video as tv_video

    if name not in TORCHVISION_VIDEO_MODELS:
        raise ValueError(
            f"unknown torchvision video model {name!r}; choose one of "
            f"{sorted(TORCHVISION_VIDEO_MODELS)}"
        )
    state: dict[str, Tensor] | None = None
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
        try:
            loaded: Any = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - re-raised with the file's name
            raise ValueError(f"cannot read weights file {path}: {err}") from err
        if isinstance(loaded, dict) and "state_dict" in loaded:
            loaded = loaded["state_dict"]
        elif isinstance(loaded, dict) and "model" in loaded:
            loaded = loaded["model"]
        if not isinstance(loaded, dict):
            raise ValueError(f"weights file {path} does not hold a state dict")
        state = {k.removeprefix("module."): v for k, v in loaded.items()}
        if num_classes is None:
            head = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
            num_classes = int(head[-1].shape[0]) if head else None
    model: nn.Module = getattr(tv_video, name)(weights=None, num_classes=num_classes or 400)
    if state is not None:
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"weights file {weights} does not match {name}: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}"
            )
    return model.eval().to(device or "cpu")


# -- training --------------------------------------------------------------------------------


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
    epochs: int = 12,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    out: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> tuple[nn.Module, float]:
    """Train a demo model on ``MovingShapes(variant)`` and save it as a bundled checkpoint.

    Training and validation use disjoint data-set seeds (``seed`` and ``seed + 1``).

    Args:
        variant (str, optional): data-set variant. Default: ``"motion"``
        arch (str, optional): ``"c3d_small"`` or ``"r2plus1d_small"``. Default: ``"c3d_small"``
        num_train (int, optional): training clips. Default: 2048
        num_val (int, optional): held-out clips. Default: 512
        epochs (int, optional): passes over the training clips. Default: 12
        batch_size (int, optional): clips per step. Default: 32
        lr (float, optional): Adam learning rate (cosine-annealed). Default: 3e-3
        seed (int, optional): seed of data, initialisation and order. Default: 0
        out (str or Path, optional): where to save; default the bundled checkpoint path.
        log (callable, optional): where progress lines go. Default: ``print``

    Returns:
        tuple: ``(model, held_out_accuracy)``.

    Example::

        >>> model, acc = train_demo_model("motion", num_train=64, num_val=32, epochs=1,
        ...                               out="/tmp/tiny.pt", log=lambda s: None)
    """
    from captum_video.datasets import MovingShapes

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
    model = ARCHITECTURES[arch](**config)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
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
    path = Path(out) if out is not None else demo_checkpoint_path(variant)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m captum_video.models", description="Rebuild the bundled demo checkpoints."
    )
    parser.add_argument("--train", action="store_true", help="train and save a demo model")
    parser.add_argument("--variant", default="motion", choices=["motion", "appearance", "mixed"])
    parser.add_argument("--arch", default="c3d_small", choices=sorted(ARCHITECTURES))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--num-train", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="output path (default: the bundled file)")
    args = parser.parse_args(argv)
    if not args.train:
        parser.print_help()
        return 0
    train_demo_model(
        args.variant,
        args.arch,
        num_train=args.num_train,
        epochs=args.epochs,
        seed=args.seed,
        out=args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

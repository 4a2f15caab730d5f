"""Build a registered model by name and load its weights from a local file (no download)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from captum_video.registry._family import families
from captum_video.registry._queries import model_names

__all__ = ["load_model", "read_state_dict"]


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a state dict from a local checkpoint file.

    Checkpoints that wrap the state dict under ``"state_dict"`` or ``"model"`` and
    ``DataParallel`` / ``DistributedDataParallel`` ``module.`` prefixes are accepted.

    Args:
        path (str or PathLike): the file.

    Returns:
        dict: parameter name -> tensor.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a (wrapped) state dict; the message names the file.

    Example::

        >>> torch.save(nn.Linear(2, 3).state_dict(), "/tmp/linear.pt")
        >>> sorted(read_state_dict("/tmp/linear.pt"))
        ['bias', 'weight']
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"weights file not found: {file}")
    try:
        loaded: Any = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file's name
        raise ValueError(f"cannot read weights file {file}: {err}") from err
    for key in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise ValueError(f"weights file {file} does not hold a state dict of tensors")
    return {str(k).removeprefix("module."): v for k, v in loaded.items()}


def _num_outputs(state: dict[str, Tensor]) -> int | None:
    """Outputs of the last weight matrix (or 1x1x1 convolution) in a state dict."""
    heads = [v for k, v in state.items() if k.endswith("weight") and v.dim() in (2, 5)]
    return int(heads[-1].shape[0]) if heads else None


def _mismatch(name: str, file: Path, model: nn.Module, state: dict[str, Tensor]) -> str | None:
    """One sentence naming how ``state`` differs from ``model``'s parameters, or None."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} expects {tuple(expected[k].shape)}, file has {tuple(state[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if not (missing or unexpected or wrong):
        return None
    parts = []
    if wrong:
        parts.append(f"{len(wrong)} shapes differ ({wrong[0]})")
    if missing:
        parts.append(f"{len(missing)} parameters missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    return (
        f"weights file {file} does not fit {name}: {'; '.join(parts)}; is it a checkpoint of "
        "another architecture?"
    )


def load_model(
    name: str,
    weights: str | os.PathLike | None = None,
    num_classes: int | None = None,
    device: str | torch.device | None = None,
) -> nn.Module:
    """Build the registered model ``name`` and load its weights from a local file.

    Pretrained weights are never downloaded: pass the path of a state dict (for instance one
    saved from ``torchvision.models.video.r3d_18(weights="DEFAULT").state_dict()`` on a
    machine with network access). Without ``weights`` torchvision models keep random weights;
    the demo names load their bundled checkpoints.

    Args:
        name (str): one of :func:`~captum_video.registry.model_names` (``"r3d_18"``,
            ``"mvit_v2_s"``, ``"demo-appearance"``, ...).
        weights (str or PathLike, optional): local state-dict file. Default: None
        num_classes (int, optional): outputs of the classifier; inferred from the weights when
            given, else the family's default (400 for torchvision's Kinetics models).
        device (str or torch.device, optional): where to put the model. Default: CPU

    Returns:
        torch.nn.Module: the model, in eval mode.

    Raises:
        ValueError: an unknown name, an unreadable file, or weights of another architecture
            (one sentence naming the first differing parameter and both shapes).

    Example::

        >>> model = load_model("r3d_18", num_classes=4)
        >>> model(torch.rand(1, 3, 8, 64, 64)).shape
        torch.Size([1, 4])
    """
    constructor = next((f.constructors[name] for f in families() if name in f.constructors), None)
    if constructor is None:
        raise ValueError(f"unknown model {name!r}; choose one of {model_names()}")
    state = None
    if weights is not None:
        state = read_state_dict(weights)
        if num_classes is None:
            num_classes = _num_outputs(state)
    model = constructor(num_classes=num_classes) if num_classes else constructor()
    if state is not None:
        problem = _mismatch(name, Path(weights), model, state)  # type: ignore[arg-type]
        if problem:
            raise ValueError(problem)
        model.load_state_dict(state)
    return model.eval().to(device or "cpu")

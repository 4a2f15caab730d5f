"""The checkpoints TracIn sums over: finding them and loading them into a copy of the model.

TracIn (Pruthi et al. 2020, "Estimating Training Data Influence by Tracing Gradient Descent")
replays training through weights saved along the way, each weighted by the step size of the
stretch of training it stands for. :func:`~captum_video.models.training.fit_classifier`
writes such checkpoints (``{"state_dict", "learning_rate", "epoch"}``); plain state dicts and
the wrapped forms of :func:`captum_video.registry.read_state_dict` load too (step size 1).

Captum loads every checkpoint once per training batch (TracInCPFast) or per test batch; the
loader keeps the state dicts in memory after the first read (``cache=True``), which for the
small models influence is usually run on costs less than reading the files again and again.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["CheckpointLoader", "find_checkpoints"]

#: Files taken as checkpoints in a folder.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")

_NO_CHECKPOINTS = (
    "TracIn needs weights saved during training (one file per epoch, say); train with "
    "captum_video.models.training.fit_classifier(..., checkpoint_dir=DIR) or save "
    "{'state_dict': model.state_dict(), 'learning_rate': lr} yourself after each epoch"
)


def _natural_key(path: Path) -> list[Any]:
    """Sort ``epoch_2`` before ``epoch_10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def find_checkpoints(checkpoints: Any, name: str = "checkpoints") -> list[str]:
    """The checkpoint files of a folder, or a list of files, checked and in training order.

    Args:
        checkpoints (str, PathLike or iterable of them): a folder (its ``.pt``, ``.pth``,
            ``.ckpt`` and ``.bin`` files, in natural name order, so ``epoch_2`` comes before
            ``epoch_10``) or checkpoint files (kept in the order given).
        name (str, optional): the argument's name in error messages.
            Default: ``"checkpoints"``

    Returns:
        list of str: the files.

    Raises:
        ValueError: nothing given, or a folder without checkpoint files.
        FileNotFoundError: a path that does not exist.

    Example::

        >>> find_checkpoints("runs/ckpts")
        ['runs/ckpts/epoch_001.pt', 'runs/ckpts/epoch_002.pt']
    """
    if checkpoints is None:
        raise ValueError(f"{name} is None; {_NO_CHECKPOINTS}")
    if isinstance(checkpoints, (str, os.PathLike)):
        root = Path(checkpoints)
        if root.is_dir():
            found = sorted(
                (p for p in root.iterdir() if p.suffix.lower() in CHECKPOINT_SUFFIXES),
                key=_natural_key,
            )
            if not found:
                raise ValueError(
                    f"{name} folder {root} holds no checkpoint files "
                    f"({', '.join(CHECKPOINT_SUFFIXES)}); {_NO_CHECKPOINTS}"
                )
            return [str(p) for p in found]
        paths = [root]
    elif isinstance(checkpoints, Iterable):
        paths = [Path(p) for p in checkpoints]
    else:
        raise TypeError(
            f"{name} must be a folder or a list of checkpoint files, got "
            f"{type(checkpoints).__name__}"
        )
    if not paths:
        raise ValueError(f"{name} is empty; {_NO_CHECKPOINTS}")
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{name}: no such checkpoint file or folder: {path}")
    return [str(p) for p in paths]


class CheckpointLoader:
    """Load a checkpoint file into a model and give its step size: Captum's
    ``checkpoints_load_func``.

    Args:
        cache (bool, optional): keep each file's state dict in memory after its first
            read. Default: True

    Returns:
        Calling ``loader(model, path)`` loads the weights into ``model`` (strictly) and
        returns the checkpoint's ``learning_rate`` (1.0 when it has none).

    Raises:
        ValueError: the file holds no state dict, the weights do not fit the model, or the
        step size is not a finite number > 0; the message names the file.

    Example::

        >>> loader = CheckpointLoader()
        >>> loader(model, "runs/ckpts/epoch_001.pt")
        0.0012
    """

    def __init__(self, cache: bool = True) -> None:
        self.cache = cache
        self._loaded: dict[str, tuple[dict[str, Tensor], float]] = {}

    def read(self, path: str) -> tuple[dict[str, Tensor], float]:
        """The state dict and step size stored in ``path``.

        Args:
            path (str): the checkpoint file.

        Returns:
            tuple: ``(state_dict, learning_rate)``.
        """
        if path in self._loaded:
            return self._loaded[path]
        try:
            loaded: Any = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - re-raised with the file's name
            raise ValueError(f"cannot read checkpoint {path}: {err}") from err
        rate: Any = 1.0
        if isinstance(loaded, dict):
            rate = loaded.get("learning_rate", 1.0)
            for key in ("state_dict", "model", "model_state"):
                if isinstance(loaded.get(key), dict):
                    loaded = loaded[key]
                    break
        if not isinstance(loaded, dict) or not all(isinstance(v, Tensor) for v in loaded.values()):
            raise ValueError(
                f"checkpoint {path} does not hold a state dict of tensors (or one under "
                "'state_dict')"
            )
        if isinstance(rate, Tensor):
            rate = rate.item()
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
            raise ValueError(f"checkpoint {path}: learning_rate must be > 0, got {rate!r}")
        if not math.isfinite(float(rate)):
            raise ValueError(f"checkpoint {path}: learning_rate must be finite, got {rate!r}")
        state = {str(k).removeprefix("module."): v for k, v in loaded.items()}
        result = (state, float(rate))
        if self.cache:
            self._loaded[path] = result
        return result

    def __call__(self, model: nn.Module, path: str) -> float:
        state, rate = self.read(path)
        state = _fit_prefix(state, list(model.state_dict()))
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ValueError(
                f"checkpoint {path} does not fit the model ({type(model).__name__}): {err}"
            ) from None
        return rate


def _fit_prefix(state: dict[str, Tensor], keys: list[str]) -> dict[str, Tensor]:
    """``state`` with the prefix that makes its names the model's (a model wrapped, e.g. behind
    its input normalisation, as ``wrapper.model``); unchanged when there is none."""
    if not state or set(state) == set(keys):
        return state
    first = next(iter(state))
    for key in keys:
        if key.endswith("." + first):
            prefix = key[: -len(first)]
            if {prefix + k for k in state} == set(keys):
                return {prefix + k: v for k, v in state.items()}
    return state

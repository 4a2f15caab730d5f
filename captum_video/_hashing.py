r"""Content hashes of tensors and models: what identifies weights and data across processes.

One home for hashing state dicts and tensors, used where a result must be tied to the exact
weights that made it (a run's key in the pipeline, the activation store of similarity
influence). Names, dtypes, shapes and bytes count; the device and the memory layout do not,
so a model moved to a GPU keeps its hash.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["model_sha256", "update_tensor"]


def update_tensor(digest: Any, name: str, tensor: Tensor | np.ndarray) -> None:
    """Feed a tensor's name, dtype, shape and bytes (not its device or strides) to ``digest``.

    Args:
        digest (hashlib hash): the running hash, e.g. ``hashlib.sha256()``.
        name (str): a name that goes in with the tensor (e.g. its state-dict key).
        tensor (Tensor or numpy.ndarray): the values; a meta tensor adds no bytes.

    Returns:
        None: ``digest`` is updated in place.

    Example::

        >>> digest = hashlib.sha256()
        >>> update_tensor(digest, "x", torch.zeros(2))
        >>> len(digest.hexdigest())
        64
    """
    digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
    if isinstance(tensor, np.ndarray):
        digest.update(np.ascontiguousarray(tensor).view(np.uint8).reshape(-1).data)
    elif not tensor.is_meta:
        # A byte view covers every dtype (bfloat16, bool, ...) that numpy cannot hold.
        data = tensor.detach().contiguous().reshape(-1).view(torch.uint8)
        digest.update(data.cpu().numpy().data)


def model_sha256(model: nn.Module) -> str:
    r"""The sha256 of a model's state dict: parameters and buffers, in key order.

    Names, dtypes, shapes and values count; the device does not (a model moved to a GPU
    keeps its key).

    Args:
        model (nn.Module): the model.

    Returns:
        str: the hex digest.

    Example::

        >>> from captum_video.models import load_demo_model
        >>> model_sha256(load_demo_model("motion")) != model_sha256(load_demo_model("appearance"))
        True
    """
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        update_tensor(digest, name, tensor)
    return digest.hexdigest()

r"""Memory budgets: how many clips, static clips, steps or perturbations fit in one call.

Attribution methods on videos are batched over *rows* (clips, a clip's motion-removed copies,
integration steps, occluded copies), and a row costs about as much as one clip's activations
(a video model's activations are tens to hundreds of times the clip). This module turns a
budget in bytes into a number of rows:

- :func:`parse_memory` reads a budget (``"2GiB"``, ``"512MB"``, an int of bytes);
- :func:`default_budget` is the budget when none is given (see there for why);
- :func:`activation_bytes` estimates one clip's activation memory for a model with one probe
  forward of one clip, cached per model and clip shape;
- :func:`chunk_size` divides a budget by the cost of a row.

:func:`captum_video.explainers.make_explainer` uses them to choose every chunk size of the
registered methods (``max_memory``).
"""

from __future__ import annotations

import math
import os
import re
import weakref
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "CPU_SHARE",
    "CPU_CAP",
    "CUDA_SHARE",
    "activation_bytes",
    "chunk_size",
    "default_budget",
    "format_bytes",
    "parse_memory",
]

#: Share of physical memory a CPU run may use by default, and the cap on it.
CPU_SHARE = 0.25
CPU_CAP = 2**30
#: Share of the free memory of a CUDA device a run may use by default.
CUDA_SHARE = 0.5

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]i?b|b)?\s*$", re.IGNORECASE)
_EXAMPLES = "'2GiB', '512MB', 1073741824 (bytes) or None (the device's default)"


def parse_memory(value: Any, name: str = "max_memory") -> int | None:
    """Bytes of a memory budget, or None when ``value`` is None (use :func:`default_budget`).

    Args:
        value (str, int, float or None): a size with a unit, ``"2GiB"``, ``"1.5 GB"``,
            ``"512MB"``, ``"64KiB"``, ``"100B"`` (units ``B, KB, MB, GB, TB`` are powers of
            1000, ``KiB, MiB, GiB, TiB`` powers of 1024, case-insensitive), a number of bytes
            (``2e9``; rounded down), or None.
        name (str, optional): the caller's name of the argument, for error messages.
            Default: ``"max_memory"``

    Returns:
        int or None: the budget in bytes (at least 1), or None.

    Raises:
        ValueError: an unreadable string, an unknown unit, or a size that is not a positive
            finite number of bytes.
        TypeError: neither a str, a number nor None (a bool or a list, for instance).

    Example::

        >>> parse_memory("2GiB"), parse_memory("512MB"), parse_memory(4096)
        (2147483648, 512000000, 4096)
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(
            f"{name} must be a memory size such as {_EXAMPLES}; "
            f"got {type(value).__name__} {value!r}"
        )
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(
                f"{name} must be a finite memory size such as {_EXAMPLES}; got {value!r}"
            )
        size = math.floor(value)
    else:
        match = _PATTERN.match(value)
        if match is None:
            raise ValueError(f"{name} must be a memory size such as {_EXAMPLES}; got {value!r}")
        size = math.floor(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])
    if size < 1:
        raise ValueError(
            f"{name} must be a positive memory size such as {_EXAMPLES}; got {value!r}"
        )
    return int(size)


def default_budget(device: torch.device | str | None = None) -> int:
    """The memory budget when the caller gives none, in bytes.

    - **CUDA**: ``CUDA_SHARE`` (half) of the memory free on the device now: what the driver
      reports free plus what PyTorch's caching allocator holds but does not use. Half, because
      the per-row costs are estimates (a factor measured on a few models) and the allocator
      needs slack for fragmentation; the other half also leaves room for whatever else runs
      on the GPU.
    - **CPU**: ``CPU_SHARE`` (a quarter) of physical memory, capped at ``CPU_CAP`` (1 GiB).
      Host memory is shared with the operating system, data-loader workers and other
      processes, and there is no reliable "free" figure to ask for. On a CPU larger chunks
      stop paying early: the cores are busy from a few clips on (the spatio-temporal split of
      the demo model at 64 frames, 2-core CPU: CPU seconds 13.7, 9.2, 8.3, 8.5, 7.6 with 4, 8,
      16, 32, 64 static clips per call), so 1 GiB costs little time and keeps a whole
      ``explain_dataset`` run on the demo model well under 1.5 GiB
      (``python -m benchmarks.memory``).

    Args:
        device (torch.device or str, optional): where the work runs. Default: the CPU

    Returns:
        int: bytes.

    Example::

        >>> default_budget("cpu") <= CPU_CAP
        True
    """
    device = torch.device(device if device is not None else "cpu")
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        free, _ = torch.cuda.mem_get_info(index)
        cached = torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index)
        return max(1, int(CUDA_SHARE * (free + cached)))
    return max(1, min(CPU_CAP, int(CPU_SHARE * _physical_memory())))


def _physical_memory() -> int:
    """Bytes of physical memory (8 GiB where the platform does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return 8 * 2**30


_ACTIVATIONS: weakref.WeakKeyDictionary[nn.Module, dict[tuple, int]] = weakref.WeakKeyDictionary()


def activation_bytes(model: nn.Module, clips: Tensor) -> int:
    """Estimated activation memory of one clip: the bytes of every leaf module's output.

    One probe forward of ``clips[:1]`` under ``torch.no_grad()`` with a forward hook on every
    leaf module (a module without children) sums the sizes of the tensors they return. That is
    what a backward pass keeps alive, about; a method's peak per clip is a small multiple of
    it (:attr:`~captum_video.explainers.MethodEntry.memory_factor`). Work done outside leaf
    modules (a functional attention product, say) is not seen. The result is cached per model
    (weakly: the cache does not keep a model alive) and per clip shape, dtype and device.
    The model is put in eval mode for the probe (so batch norm's running statistics do not
    move) and every module's mode is restored afterwards; the hooks are removed, also on error.

    Args:
        model (nn.Module): the classifier, called as ``model(clip)``.
        clips (Tensor): ``(N, C, T, H, W)``; only the first clip is used.

    Returns:
        int: bytes, at least the size of one clip.

    Example::

        >>> from captum_video.models import C3DSmall
        >>> activation_bytes(C3DSmall(), torch.rand(2, 3, 16, 32, 32)) > 3 * 16 * 32 * 32 * 4
        True
    """
    clip = clips[:1]
    key = (tuple(clip.shape[1:]), clip.dtype, str(clip.device))
    cache = _ACTIVATIONS.setdefault(model, {})
    if key in cache:
        return cache[key]
    total = 0

    def count(module: nn.Module, args: Any, output: Any) -> None:
        nonlocal total
        total += _tensor_bytes(output)

    modes = [(m, m.training) for m in model.modules()]
    handles = []
    try:
        for module in model.modules():
            if next(module.children(), None) is None:
                handles.append(module.register_forward_hook(count))
        model.eval()
        with torch.no_grad():
            model(clip)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training
    cache[key] = max(total, clip.nelement() * clip.element_size())
    return cache[key]


def _tensor_bytes(output: Any) -> int:
    if isinstance(output, Tensor):
        return output.nelement() * output.element_size()
    if isinstance(output, (tuple, list)):
        return sum(_tensor_bytes(o) for o in output)
    if isinstance(output, dict):
        return sum(_tensor_bytes(o) for o in output.values())
    return 0


def chunk_size(item_bytes: float, budget: int, total: int | None = None) -> int:
    """How many items of ``item_bytes`` fit in ``budget``: at least 1, at most ``total``.

    Args:
        item_bytes (float): estimated peak bytes of one item (a clip, a static clip, a step,
            a perturbation).
        budget (int): bytes.
        total (int, optional): the number of items there are. Default: no limit

    Returns:
        int: the chunk size; 1 when not even one item fits (it runs anyway).

    Example::

        >>> chunk_size(100, 1000), chunk_size(100, 10), chunk_size(100, 10**9, total=7)
        (10, 1, 7)
    """
    size = int(budget // item_bytes) if item_bytes > 0 else (total or 1)
    size = max(1, size)
    return min(size, total) if total is not None else size


def format_bytes(size: float) -> str:
    """``size`` bytes as a short string with a binary unit, for messages.

    Example::

        >>> format_bytes(3 * 2**30), format_bytes(1536)
        ('3.0 GiB', '1.5 KiB')
    """
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover

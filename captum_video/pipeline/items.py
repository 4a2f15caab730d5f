"""The items a data set may give the pipeline, and how they are batched by clip index.

An item whose loading raises (an unreadable or too short video) becomes a
:class:`~captum_video.pipeline.failures.LoadFailure` here, inside the DataLoader worker that
read it, so the batch goes on without it and the run records the failure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from captum_video.pipeline.failures import LoadFailure

__all__ = ["Indexed", "clip_name", "collate", "split_item"]


class Indexed(Dataset):
    """``(index, item)`` of selected indices of a data set; a failed read gives a LoadFailure.

    Args:
        dataset (Dataset): a map-style data set.
        indices (sequence of int): the indices to visit, in order.

    Returns:
        A data set of ``(index, item)`` pairs.

    Example::

        >>> Indexed(["a", "b", "c"], [2, 0])[0]
        (2, 'c')
        >>> Indexed(["a"], [5])[0]
        (5, LoadFailure(error='IndexError', message='list index out of range'))
    """

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, Any]:
        index = self.indices[i]
        try:
            return index, self.dataset[index]
        except Exception as err:  # one unreadable video must not stop the other clips
            return index, LoadFailure.of(err)


def split_item(item: Any, index: int) -> tuple[Tensor, int | None, Tensor | None]:
    """``(clip, label, mask)`` from the item formats explain_dataset accepts.

    Args:
        item: a clip ``(C, T, H, W)``, a tuple ``(clip, label[, mask])`` or a dict with keys
            ``"video"``/``"clip"``, ``"label"``, ``"mask"``.
        index (int): the item's index, for error messages.

    Returns:
        tuple: ``(clip, label or None, mask (T, H, W) or None)``.

    Example::

        >>> clip, label, mask = split_item((torch.rand(3, 4, 8, 8), 2), 0)
        >>> label, mask
        (2, None)
    """
    label = mask = None
    if isinstance(item, Tensor):
        clip = item
    elif isinstance(item, Mapping):
        clip = item.get("video", item.get("clip"))
        label, mask = item.get("label"), item.get("mask")
    elif isinstance(item, (tuple, list)) and item:
        clip = item[0]
        label = item[1] if len(item) > 1 else None
        mask = item[2] if len(item) > 2 else None
    else:
        clip = item
    if not isinstance(clip, Tensor) or clip.dim() != 4 or not clip.is_floating_point():
        raise ValueError(
            f"item {index} must hold a float clip (C, T, H, W); got "
            f"{tuple(clip.shape) if isinstance(clip, Tensor) else type(clip).__name__}"
        )
    if isinstance(label, Tensor):
        label = int(label.item())
    if isinstance(mask, Tensor) and mask.dim() == 4 and mask.shape[0] == 1:
        mask = mask[0]
    if mask is not None and (not isinstance(mask, Tensor) or mask.shape != clip.shape[1:]):
        raise ValueError(
            f"item {index}: the mask must be (T, H, W) = {tuple(clip.shape[1:])}, got "
            f"{tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__}"
        )
    return clip, (None if label is None else int(label)), mask


def collate(batch: list[tuple[int, Any]]) -> dict[str, Any]:
    """Stack ``(index, item)`` pairs into ``{"index", "clips", "labels", "masks", "failed"}``.

    Items that failed to load are left out of the stack and listed in ``"failed"`` as
    ``(index, LoadFailure)``; ``"clips"`` is None when every item failed.

    Args:
        batch (list of tuple): ``(index, item)`` pairs from :class:`Indexed`.

    Returns:
        dict: the batch.

    Example::

        >>> collate([(0, torch.rand(3, 4, 8, 8))])["clips"].shape
        torch.Size([1, 3, 4, 8, 8])
    """
    failed = [(index, item) for index, item in batch if isinstance(item, LoadFailure)]
    good = [(index, item) for index, item in batch if not isinstance(item, LoadFailure)]
    parts = [split_item(item, index) for index, item in good]
    labels = [p[1] for p in parts]
    masks = [p[2] for p in parts if p[2] is not None]
    return {
        "index": [index for index, _ in good],
        "clips": torch.stack([p[0] for p in parts]) if parts else None,
        "labels": None if not parts or any(v is None for v in labels) else torch.tensor(labels),
        "masks": torch.stack(masks).bool() if parts and len(masks) == len(parts) else None,
        "failed": failed,
    }


def clip_name(dataset: Dataset, index: int) -> str:
    """The data set's name of clip ``index`` (its ``clip_name`` method), else ``"clip i"``."""
    namer = getattr(dataset, "clip_name", None)
    return str(namer(index)) if callable(namer) else f"clip {index}"

"""Training clips as Captum's influence methods read them: ``(clip, label)`` items.

Captum's :mod:`captum.influence` takes a data set whose batches are ``(*model_inputs,
labels)``: every element but the last goes to the model. A video data set that yields more
(``MovingShapes`` yields ``(clip, label, mask)``) would silently hand the label to the model
as a second input and score the mask as the label, so :class:`ClipLabelDataset` keeps the
first two elements of each item and checks them: a ``(C, T, H, W)`` float clip of the same
shape as the first item's, and an integer label.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from captum_video._model_state import module_device
from captum_video._validation import validate_video

__all__ = ["ClipLabelDataset", "as_clip_label_dataset", "count_classes"]


class ClipLabelDataset(Dataset):
    r"""A video data set seen as ``(clip, label)`` items, each checked when it is read.

    Items of ``dataset`` must be tuples or lists whose first element is a clip
    ``(C, T, H, W)`` (a floating-point tensor, the layout of every captum-video clip) and
    whose second is an integer class (an ``int`` or a 0-d integer tensor); further elements
    (masks, paths) are dropped. Every clip must have the shape of the first one, so that
    batches can be stacked.

    Args:
        dataset (Dataset): the data set, e.g.
            :class:`~captum_video.datasets.MovingShapes` or a labelled
            :class:`~captum_video.video_folder.VideoFolder`.
        num_classes (int, optional): labels must lie in ``[0, num_classes)``. Default: None
            (not checked)
        name (str, optional): the argument's name in error messages.
            Default: ``"train_dataset"``

    Returns:
        Indexing gives ``(clip, label)``: the clip tensor and the label as a 0-d ``long``
        tensor.

    Raises:
        TypeError, ValueError: when an item is read that is not ``(clip, label, ...)``; the
        message names the item's index and what came.

    Example::

        >>> from captum_video.datasets import MovingShapes
        >>> data = ClipLabelDataset(MovingShapes(num_samples=4))
        >>> clip, label = data[0]
        >>> clip.shape, label.dtype
        (torch.Size([3, 16, 32, 32]), torch.int64)
    """

    def __init__(
        self, dataset: Dataset, num_classes: int | None = None, name: str = "train_dataset"
    ) -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(
                f"{name} must be a map-style torch Dataset (with __getitem__ and __len__) of "
                f"(clip, label) items, got {type(dataset).__name__}"
            )
        self.dataset = dataset
        self.num_classes = num_classes
        self.name = name
        if len(self) == 0:
            raise ValueError(f"{name} is empty: influence needs at least one training clip")
        self.clip_shape = tuple(self._check(0, dataset[0])[0].shape)
        self._labels: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        clip, label = self._check(index, self.dataset[index])
        if tuple(clip.shape) != getattr(self, "clip_shape", clip.shape):
            raise ValueError(
                f"{self.name}[{index}] holds a clip of shape {tuple(clip.shape)}, but item 0's "
                f"is {self.clip_shape}; all clips must share (C, T, H, W) to be batched "
                "(resample them, e.g. VideoFolder(num_frames=..., size=...))"
            )
        return clip, label

    def labels_of(self, indices: Tensor) -> Tensor:
        """The labels of the items at ``indices``, each item read once (its clip decoded
        once) however many queries name it.

        Args:
            indices (Tensor): long indices into the data set, any shape.

        Returns:
            Tensor: long labels, shaped like ``indices``.

        Example::

            >>> data = ClipLabelDataset(TensorDataset(torch.rand(4, 3, 8, 16, 16),
            ...                                       torch.tensor([2, 1, 3, 0])))
            >>> data.labels_of(torch.tensor([[0, 3]]))
            tensor([[2, 0]])
        """
        flat = [int(i) for i in indices.reshape(-1)]
        for i in flat:
            if i not in self._labels:
                self._labels[i] = int(self[i][1])
        return torch.tensor([self._labels[i] for i in flat], dtype=torch.long).view(indices.shape)

    def _check(self, index: int, item: Any) -> tuple[Tensor, Tensor]:
        where = f"{self.name}[{index}]"
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            got = f"a {type(item).__name__}" + (
                f" of length {len(item)}" if isinstance(item, (tuple, list)) else ""
            )
            raise TypeError(
                f"{where} must be a (clip, label) pair (further elements are ignored), got "
                f"{got}; an unlabelled data set (e.g. VideoFolder without labels_from_folders) "
                "cannot be used for influence: the training loss needs each clip's label"
            )
        clip, label = item[0], item[1]
        label_first = isinstance(clip, numbers.Integral) or (
            isinstance(clip, Tensor) and clip.numel() == 1
        )
        if label_first and isinstance(label, Tensor) and label.dim() >= 3:
            raise TypeError(
                f"{where} looks like (label, clip) (a number, then a {label.dim()}-D tensor); "
                "items must be (clip, label)"
            )
        validate_video(clip, name=f"{where}[0] (the clip)", batched=False, guess_layout=True)
        return clip, _label_tensor(label, f"{where}[1] (the label)", self.num_classes)


def _label_tensor(label: Any, where: str, num_classes: int | None) -> Tensor:
    """A class label as a 0-d ``long`` tensor, or a clear error."""
    if isinstance(label, Tensor):
        if label.numel() != 1 or label.is_floating_point() or label.is_complex():
            raise TypeError(
                f"{where} must be an integer class, got a {label.dtype} tensor of shape "
                f"{tuple(label.shape)}"
            )
        value = int(label.reshape(()))
    elif isinstance(label, numbers.Integral) and not isinstance(label, bool):
        value = int(label)
    else:
        raise TypeError(f"{where} must be an integer class, got {type(label).__name__} {label!r}")
    if value < 0 or (num_classes is not None and value >= num_classes):
        bound = f"[0, {num_classes})" if num_classes is not None else ">= 0"
        raise ValueError(f"{where} is {value}, outside the model's classes {bound}")
    return torch.tensor(value, dtype=torch.long)


def as_clip_label_dataset(
    data: Any, num_classes: int | None = None, name: str = "train_dataset"
) -> ClipLabelDataset:
    """``data`` as a :class:`ClipLabelDataset`: a data set, or a ``(clips, labels)`` pair.

    Args:
        data (Dataset or tuple of Tensor): a data set of ``(clip, label, ...)`` items, or
            clips ``(N, C, T, H, W)`` with labels ``(N,)``.
        num_classes (int, optional): check labels against it. Default: None
        name (str, optional): the argument's name in error messages.
            Default: ``"train_dataset"``

    Returns:
        ClipLabelDataset: ``data`` itself when it already is one.

    Example::

        >>> data = as_clip_label_dataset((torch.rand(4, 3, 8, 16, 16), torch.tensor([0, 1, 2, 3])))
        >>> len(data)
        4
    """
    if isinstance(data, ClipLabelDataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], Tensor):
        clips, labels = data
        validate_video(clips, name=f"{name}[0] (the clips)", guess_layout=True)
        if not isinstance(labels, Tensor) or labels.shape != (len(clips),):
            shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
            raise ValueError(
                f"{name}[1] (the labels) must be a tensor of {len(clips)} integer classes, one "
                f"per clip, got {shape}"
            )
        data = TensorDataset(clips, labels)
    return ClipLabelDataset(data, num_classes=num_classes, name=name)


def count_classes(
    model: nn.Module,
    data: ClipLabelDataset,
    why: str,
    forward: Callable[[Tensor], Any] | None = None,
) -> int:
    """The number of classes ``model`` scores, from its output on the data set's first clip.

    Also checks that clip against the model (layout, channels, frames) and that the model
    gives logits ``(N, K)``, naming ``why`` they are needed.

    Args:
        model (nn.Module): the classifier (its device is where the clip goes).
        data (ClipLabelDataset): the training clips.
        why (str): what needs the logits, for the error message.
        forward (callable, optional): what runs the clip instead of ``model`` (e.g. a
            wrapper that also records activations). Default: None

    Returns:
        int: ``K``.

    Example::

        >>> count_classes(load_demo_model("motion"), as_clip_label_dataset(train), "TracIn")
        4
    """
    clip, _ = data[0]
    validate_video(clip.unsqueeze(0), name="train_dataset[0][0] (the clip)", model=model)
    with torch.no_grad():
        out = (forward or model)(clip.unsqueeze(0).to(module_device(model)))
    if not isinstance(out, Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"model must return logits (N, K) for clips (N, C, T, H, W), got {shape}; {why}"
        )
    return int(out.shape[1])

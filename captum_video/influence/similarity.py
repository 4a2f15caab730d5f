r"""Explanation by example for video classifiers: the nearest training clips in the model's eyes.

Which training clips does the model see as most like a test clip? The nearest neighbours in a
layer's activations, by default the representation the classifier head reads (the pooled
features of a 3D CNN, the class token of a transformer):

.. math::

    \cos(z, z') = \frac{a(z) \cdot a(z')}{\lVert a(z) \rVert\,\lVert a(z') \rVert}
    \qquad\text{or}\qquad d(z, z') = \lVert a(z) - a(z') \rVert_2 .

This is *not* influence: nothing says that training on ``z`` changed the decision on ``z'``
(that is what :class:`~captum_video.influence.VideoTracIn` estimates). It is case-based
explanation (Caruana, Kangarloo, Dionisio, Sinha and Johnson 1999, "Case-based explanation of
non-case-based learning methods"): the training cases the model represents like the test
case, shown as clips. It needs no checkpoints and no gradients: one forward pass over the
training set, once, then one per test batch.

It wraps Captum's ``SimilarityInfluence``, which stores the layer's activations of the
training set on disk (Captum's ``AV`` store, one file per batch) and compares a test batch
against them batch by batch. Around it:

* **The layer.** Captum records a named module's *output*; the head's input has no module of
  its own in most video models (r3d_18 flattens in ``forward``, a ViT indexes its class
  token). A forward pre-hook on the head of a *copy* of the model routes that input through
  an ``nn.Identity`` named ``representation``, for every family whose head the registry
  knows (:func:`~captum_video.registry.classifier_of`).
* **The caller's model untouched.** The copy is made in eval mode (with a warning when the
  model was in train mode) and owns that hook.
* **A store no other model can read.** The activations live in a temporary folder owned by
  the object (removed by :meth:`~VideoSimilarityInfluence.close`, a ``with`` block's end or
  collection) unless the caller passes one, under a key of the weights' sha256, the layer,
  the batch size and a fingerprint of the data set.
* **Captum 0.9's query loop.** With one layer it hands the metric a list of one tensor (the
  metric unwraps it); it takes ``top_k`` from every training batch, which fails on a last
  batch shorter than ``k`` (the training set is padded to whole batches with copies of its
  last clip, asked for on top of ``k`` and dropped); the metric computes on the model's
  device and returns its ``(N, batch)`` scores on the CPU, where Captum gathers the top-k.
"""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from captum._utils.av import AV
from captum.influence import SimilarityInfluence
from captum.influence._core.similarity_influence import euclidean_distance
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from captum_video._hashing import model_sha256, update_tensor
from captum_video._model_state import evaluating, module_device
from captum_video._scalars import validate_positive_int
from captum_video._validation import validate_video
from captum_video.influence.data import ClipLabelDataset, as_clip_label_dataset, count_classes
from captum_video.influence.tracin import InfluentialClips
from captum_video.registry import classifier_of

__all__ = ["METRICS", "SimilarClips", "VideoSimilarityInfluence"]

#: ``metric`` values of :class:`VideoSimilarityInfluence`.
METRICS = ("cosine", "euclidean")

#: Name of the module whose output is the head's input (see the module docstring).
_REPRESENTATION = "representation"


@dataclass(frozen=True)
class SimilarClips(InfluentialClips):
    """The most (or least) similar training clips of each test clip.

    An :class:`InfluentialClips` (so :func:`~captum_video.influence.render_influence` shows
    it: most similar clips as the first row, least similar as the second), whose fields mean:

    Attributes:
        indices (Tensor): ``(N, k)`` long: indices into the training data set, nearest first
            (``most_similar``) or farthest first.
        scores (Tensor): ``(N, k)``: cosine similarities (``metric="cosine"``, in
            ``[-1, 1]``, higher is nearer) or Euclidean distances (``"euclidean"``, lower is
            nearer) of the layer's activations.
        targets (Tensor): ``(N,)`` long: the class the model predicts for each test clip.
        proponents (bool): True for the most similar clips, False for the least similar.
        train_labels (Tensor): ``(N, k)`` long: the training labels of ``indices``.
        metric (str): ``"cosine"`` or ``"euclidean"``.
    """

    metric: str = "cosine"

    @property
    def most_similar(self) -> bool:
        """Whether these are the nearest clips (``proponents``) or the farthest."""
        return self.proponents

    @property
    def predictions(self) -> Tensor:
        """The model's predicted class for each test clip (``targets``)."""
        return self.targets


class _Probe(nn.Module):
    """The copied model, with its head's input exposed as the output of ``representation``.

    Moves clips to the model's device (Captum reads the training clips on the CPU) and keeps
    the last logits, so a query knows the decisions without a second forward pass.
    """

    def __init__(self, model: nn.Module, head: nn.Module | None) -> None:
        super().__init__()
        self.model = model
        self.representation = nn.Identity()
        self.logits: Tensor | None = None
        if head is not None:
            head.register_forward_pre_hook(self._route)

    def _route(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (self.representation(args[0]), *args[1:])

    def forward(self, clips: Tensor) -> Any:
        out = self.model(clips.to(module_device(self.model)))
        self.logits = out.detach() if isinstance(out, Tensor) else None
        return out


class _PaddedClips(Dataset):
    """The training clips (without labels: Captum's store reads ``data[0]`` of tuples only),
    padded to ``length`` with copies of the last one."""

    def __init__(self, data: ClipLabelDataset, length: int) -> None:
        self.data, self.length = data, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Tensor:
        return self.data[min(index, len(self.data) - 1)][0]


def _first(activations: Any) -> Tensor:
    # Captum 0.9 wraps the test activations of a single layer in a list.
    while isinstance(activations, (list, tuple)):
        activations = activations[0]
    return activations.reshape(activations.shape[0], -1)


def _cosine(test: Any, train: Tensor) -> Tensor:
    # A zero activation vector (all ReLUs off) is normalised to zero: similarity 0 to all.
    a = nn.functional.normalize(_first(test).float(), dim=1)
    b = nn.functional.normalize(_first(train).float(), dim=1)
    return (a @ b.to(a.device).T).cpu()


def _euclidean(test: Any, train: Tensor) -> Tensor:
    a, b = _first(test).float(), _first(train).float()
    return euclidean_distance(a.contiguous(), b.to(a.device).contiguous()).cpu()


_METRIC_FNS: dict[str, Callable[[Any, Tensor], Tensor]] = {
    "cosine": _cosine,
    "euclidean": _euclidean,
}


def _store_key(model: nn.Module, layer: str, data: ClipLabelDataset, batch: int) -> str:
    """Captum's ``model_id``: weights, layer, batching and a fingerprint of the data set."""
    digest = hashlib.sha256(f"{model_sha256(model)}|{layer}|{batch}|{len(data)}|".encode())
    # Three clips stand for the data set (reading all would decode every video twice).
    for i in sorted({0, len(data) // 2, len(data) - 1}):
        clip, label = data[i]
        update_tensor(digest, f"clip{i}", clip)
        update_tensor(digest, f"label{i}", label)
    return digest.hexdigest()[:24]


class VideoSimilarityInfluence:
    r"""The training clips a video model represents most and least like a test clip.

    A nearest-neighbour explanation by example in the model's representation space (Captum's
    ``SimilarityInfluence``), not an influence estimate: see the module docstring.

    Args:
        model (nn.Module): the classifier, taking clips ``(N, C, T, H, W)`` and giving logits
            ``(N, K)``. It is copied (in eval mode) when the object is made: the answers are
            those of the weights it had then.
        train_dataset (Dataset or tuple of Tensor): the training clips: a data set whose
            items are ``(clip, label, ...)`` (extra elements such as ``MovingShapes``' masks
            are dropped), or a pair ``(clips, labels)`` of tensors.
        layer (nn.Module or str, optional): a module of ``model`` (or its dotted name) whose
            output is compared. Default: None (the input of the classifier head,
            :func:`~captum_video.registry.classifier_of`, else of the model's last
            ``nn.Linear``: the representation the decision is read from)
        metric (str, optional): ``"cosine"`` (similarity, highest first) or ``"euclidean"``
            (distance, lowest first: Captum's ``euclidean_distance`` with direction
            ``"min"``). Default: ``"cosine"``
        activation_dir (str or PathLike, optional): a folder to keep the training set's
            activations in, and find them again in a later run (under a key of the weights,
            layer and data set). Default: None (a temporary folder, removed by
            :meth:`close`)
        batch_size (int, optional): training clips per forward pass (and per stored file).
            Default: 32

    Example::

        >>> from captum_video.datasets import MovingShapes
        >>> from captum_video.models import load_demo_model
        >>> model = load_demo_model("motion")
        >>> train = MovingShapes("motion", num_samples=64, seed=0)
        >>> test, _, _ = MovingShapes("motion", num_samples=2, seed=1).tensors()
        >>> with VideoSimilarityInfluence(model, train) as similar:
        ...     nearest = similar.most_similar(test, k=3)
        >>> nearest.indices.shape, bool((nearest.train_labels == nearest.targets[:, None]).all())
        (torch.Size([2, 3]), True)
    """

    def __init__(
        self,
        model: nn.Module,
        train_dataset: Dataset | tuple[Tensor, Tensor],
        layer: nn.Module | str | None = None,
        metric: str = "cosine",
        activation_dir: str | os.PathLike | None = None,
        batch_size: int = 32,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if activation_dir is not None and not isinstance(activation_dir, (str, os.PathLike)):
            raise TypeError(
                f"activation_dir must be a folder path (str or PathLike) or None, got "
                f"{type(activation_dir).__name__}"
            )
        validate_positive_int(batch_size, "batch_size")
        self.metric = metric
        # Copied under evaluating(): the copy is in eval mode (BatchNorm reads its running
        # statistics, dropout is off) and the caller is warned once if theirs was training.
        with evaluating(model, "VideoSimilarityInfluence"):
            copied = copy.deepcopy(model)
        head, captum_layer, self.layer = self._resolve_layer(model, copied, layer)
        self._probe = _Probe(copied, head)
        self._layer = captum_layer
        self.train_dataset = as_clip_label_dataset(train_dataset)
        self.num_classes = count_classes(
            copied,
            self.train_dataset,
            "the explanation reports the model's decision on each test clip",
            forward=self._probe,
        )
        self.train_dataset.num_classes = self.num_classes
        self.train_dataset[0]  # now that the classes are known, check item 0's label too
        n = len(self.train_dataset)
        self.batch_size = min(batch_size, n)
        self._pad = -n % self.batch_size
        self._padded = _PaddedClips(self.train_dataset, n + self._pad)
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._closed = False
        if activation_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="captum-video-similarity-")
            activation_dir = self._tmp.name
        folder = Path(activation_dir).resolve()
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"activation_dir {folder} is a file; pass a folder (or None)")
        folder.mkdir(parents=True, exist_ok=True)
        self.activation_dir = str(folder)
        self.model_id = _store_key(copied, captum_layer, self.train_dataset, self.batch_size)
        self._captum = {
            direction: SimilarityInfluence(
                self._probe,
                captum_layer,
                self._padded,
                self.activation_dir,
                model_id=self.model_id,
                similarity_metric=_METRIC_FNS[metric],
                similarity_direction=direction,
                batch_size=self.batch_size,
            )
            for direction in ("max", "min")
        }
        self._store()

    # -- set-up helpers -----------------------------------------------------------------------

    def _resolve_layer(
        self, model: nn.Module, copied: nn.Module, layer: nn.Module | str | None
    ) -> tuple[nn.Module | None, str, str]:
        """(the copy's head to hook or None, Captum's layer name, a description)."""
        names = {id(m): n for n, m in model.named_modules()}
        if layer is None:
            try:
                head = classifier_of(copied)
            except ValueError:
                linears = [m for m in copied.modules() if isinstance(m, nn.Linear)]
                if not linears:
                    raise ValueError(
                        f"{type(model).__name__} has no classifier head the registry knows and "
                        "no nn.Linear; pass layer= (a module whose output is the representation)"
                    ) from None
                head = linears[-1]
            head_name = {id(m): n for n, m in copied.named_modules()}[id(head)]
            return head, _REPRESENTATION, f"input of {head_name or type(head).__name__}"
        if isinstance(layer, str):
            try:
                copied.get_submodule(layer)
            except AttributeError:
                raise ValueError(
                    f"layer {layer!r} is not a module of the model (use a name of "
                    "model.named_modules(), or None for the classifier head's input)"
                ) from None
            name = layer
        elif isinstance(layer, nn.Module):
            if id(layer) not in names:
                raise ValueError("layer must be a module of model (or its dotted name)")
            name = names[id(layer)]
        else:
            raise TypeError(f"layer must be an nn.Module, a dotted name or None, got {layer!r}")
        return None, f"model.{name}" if name else "model", name or "<model output>"

    def _store(self) -> None:
        """The training set's activations on disk, computed once (or found from a past run)."""
        loader = DataLoader(self._padded, self.batch_size, shuffle=False)
        batches = len(self._padded) // self.batch_size
        for load in (True, False):
            with torch.no_grad(), warnings.catch_warnings():
                # Captum warns when it overwrites: here only an incomplete store of our key.
                warnings.filterwarnings("ignore", message="Overwriting activations")
                AV.generate_dataset_activations(
                    self.activation_dir,
                    self._probe,
                    self.model_id,
                    self._layer,
                    loader,
                    identifier="src",
                    load_from_disk=load,
                )
            found = AV.AVDataset(self.activation_dir, self.model_id, "src", self._layer)
            if len(found) == batches:  # a run killed half-way leaves fewer files: redo it
                return
        raise OSError(
            f"activation_dir {self.activation_dir}: the store of {batches} batches under "
            f"{self.model_id} could not be written completely; pass another folder"
        )

    # -- public API -----------------------------------------------------------------------------

    def _nearest(self, clips: Tensor, k: int, most: bool) -> SimilarClips:
        if self._closed:
            raise ValueError(
                "this VideoSimilarityInfluence was closed (its activation store is removed); "
                "make a new one"
            )
        validate_video(clips, name="clips", model=self._probe.model)
        n = len(self.train_dataset)
        validate_positive_int(k, "k")
        if k > n:
            raise ValueError(f"k is {k} but the training set holds {n} clips")
        # Cosine: high is near; Euclidean distance: low is near.
        direction = "max" if most == (self.metric == "cosine") else "min"
        self._probe.logits = None
        with torch.no_grad():
            found = self._captum[direction].influence(clips, top_k=k + self._pad)
        indices, scores = found[self._layer]
        # Drop the padding (indices >= n; at most ``pad`` per row), keeping the order.
        order = torch.argsort((indices >= n).to(torch.int8), dim=1, stable=True)[:, :k]
        indices, scores = indices.gather(1, order), scores.gather(1, order)
        logits = self._probe.logits
        if logits is None or logits.shape[0] != clips.shape[0]:
            with torch.no_grad():
                logits = self._probe(clips)
        assert logits is not None
        return SimilarClips(
            indices,
            scores.detach(),
            logits.argmax(1).cpu(),
            most,
            self.train_dataset.labels_of(indices),
            self.metric,
        )

    def most_similar(self, clips: Tensor, k: int = 5) -> SimilarClips:
        """The ``k`` training clips nearest to each test clip in the layer's activations.

        Args:
            clips (Tensor): test clips ``(N, C, T, H, W)``, on any device.
            k (int, optional): clips per test clip. Default: 5

        Returns:
            SimilarClips: indices, scores (cosine: highest first; Euclidean: lowest first),
            the model's predictions and the training labels.

        Example::

            >>> similar.most_similar(clips[:1], k=3).train_labels
            tensor([[2, 2, 2]])
        """
        return self._nearest(clips, k, True)

    def least_similar(self, clips: Tensor, k: int = 5) -> SimilarClips:
        """The ``k`` training clips farthest from each test clip in the layer's activations.

        Args:
            clips (Tensor): test clips ``(N, C, T, H, W)``, on any device.
            k (int, optional): clips per test clip. Default: 5

        Returns:
            SimilarClips: indices, scores (cosine: lowest first; Euclidean: highest first),
            the model's predictions and the training labels.

        Example::

            >>> far = similar.least_similar(clips[:1], k=3)
            >>> far.most_similar
            False
        """
        return self._nearest(clips, k, False)

    def close(self) -> None:
        """Remove the temporary activation folder (a folder the caller passed is kept).

        Example::

            >>> similar.close()
        """
        self._closed = True
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> VideoSimilarityInfluence:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

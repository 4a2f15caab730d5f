r"""Explanation by example for video classifiers: TracIn over training clips.

Which training clips made the model decide what it decided on a test clip? TracIn (Pruthi et
al. 2020, "Estimating Training Data Influence by Tracing Gradient Descent") answers with the
loss gradients of the two clips, summed over checkpoints saved during training:

.. math::

    \mathrm{TracIn}(z, z') = \sum_{i=1}^{C} \eta_i\,
        \nabla_\theta \ell(\theta_i, z) \cdot \nabla_\theta \ell(\theta_i, z')

A positive score (a *proponent*) means a gradient step on the training clip ``z`` lowered the
test clip's loss; a negative one (an *opponent*) raised it. The *self-influence*
:math:`\mathrm{TracIn}(z, z)` is large for clips the model found hard to fit all along, such
as mislabelled ones. Hiley et al. 2019 ("Explainable Deep Learning for Video Recognition
Tasks: A Framework & Recommendations") single out explanation by example as the form most
naturally applicable to video: a clip is shown as evidence for a clip.

:class:`VideoTracIn` is a thin layer over Captum's ``TracInCPFast`` (``method="fast"``:
gradients of the last linear layer only, through the identity
:math:`\nabla_W \ell \cdot \nabla_W \ell' = (a \cdot a')(g \cdot g')` of its inputs ``a`` and
output gradients ``g``), ``TracInCP`` (``method="full"``: per-clip gradients of all, or of
chosen, layers) and ``TracInCPFastRandProj`` (``method="fast_rand_proj"``: the fast method's
per-clip gradients of the training set, optionally randomly projected, computed once and kept;
a query is an exact maximum-inner-product search over them, no pass over the training set).
It adds what video needs: data sets of ``(clip, label, ...)`` items checked and cut to
``(clip, label)``; the test clips' loss taken at the class the model predicts
(``target=None``), so the examples explain the decision; checkpoints loaded into a *copy* of
the model in eval mode, so the caller's model, its mode and its BatchNorm statistics are
never touched.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from captum_video._model_state import evaluating, module_device
from captum_video._scalars import validate_positive_int
from captum_video._targets import validate_target
from captum_video._validation import validate_video
from captum_video.influence._captum_tracin import (
    LAST_LAYER_METHODS,
    METHODS,
    build_tracin,
    query_kwargs,
)
from captum_video.influence.checkpoints import CheckpointLoader, find_checkpoints
from captum_video.influence.data import ClipLabelDataset, as_clip_label_dataset, count_classes
from captum_video.registry import classifier_of

__all__ = ["InfluentialClips", "METHODS", "VideoTracIn"]


@dataclass(frozen=True)
class InfluentialClips:
    """The most influential training clips of each test clip.

    Attributes:
        indices (Tensor): ``(N, k)`` long: indices into the training data set, most
            influential first.
        scores (Tensor): ``(N, k)``: their TracIn scores (proponents: highest first, all
            normally > 0; opponents: lowest first, normally < 0).
        targets (Tensor): ``(N,)`` long: the class whose loss was traced for each test clip.
        proponents (bool): whether these are proponents (True) or opponents.
        train_labels (Tensor): ``(N, k)`` long: the training labels of ``indices``.
    """

    indices: Tensor
    scores: Tensor
    targets: Tensor
    proponents: bool
    train_labels: Tensor


class VideoTracIn:
    r"""Proponents, opponents and self-influence of training clips (TracIn) for a video model.

    Args:
        model (nn.Module): the classifier, taking clips ``(N, C, T, H, W)`` and giving logits
            ``(N, K)``. It is copied (in eval mode): checkpoints load into the copy.
        train_dataset (Dataset or tuple of Tensor): the training clips: a data set whose
            items are ``(clip, label, ...)`` (clip ``(C, T, H, W)``, extra elements such as
            ``MovingShapes``' masks are dropped), or a pair ``(clips, labels)`` of tensors.
        checkpoints (str, PathLike or list): a folder of checkpoint files or the files, saved
            during training (e.g. by ``fit_classifier(..., checkpoint_dir=...)``); each holds
            a state dict and, ideally, the ``learning_rate`` of its stretch of training.
        method (str, optional): ``"fast"`` (Captum's TracInCPFast: the last linear layer),
            ``"full"`` (TracInCP: per-clip gradients of ``layers``) or ``"fast_rand_proj"``
            (TracInCPFastRandProj: the fast method's per-clip gradients of every training
            clip computed once, here, and kept; each query then costs the test clips'
            gradients and an exact maximum-inner-product search, no pass over the training
            set). Default: ``"fast"``
        final_fc_layer (nn.Module or str, optional): the last linear layer of ``method="fast"``
            or ``"fast_rand_proj"`` (a module of ``model`` or its dotted name). Default: the
            registry's classifier head (``classifier_of``), else the model's last ``nn.Linear``
        layers (list of str, optional): dotted names of the layers whose parameters
            ``method="full"`` differentiates. Default: None (all parameters)
        batch_size (int, optional): training clips per batch. Default: 32
        cache_checkpoints (bool, optional): keep checkpoints in memory after their first
            read (Captum re-loads every checkpoint for every training batch). Default: True
        projection_dim (int, optional): ``method="fast_rand_proj"`` only: None keeps the
            exact gradients, ``K x I`` numbers per clip and checkpoint (``K`` classes, ``I``
            inputs of the last layer: 4 bytes each, for every training clip, in memory); an int
            ``d`` projects them at random to at most ``d`` per checkpoint, where ``K x I > d``
            (as Pruthi et al. 2020 propose for large models; scores, and so the neighbours
            found, become approximate). Default: None
        seed (int, optional): the random projection's seed (with ``projection_dim``); the
            caller's random state is left as it was. Default: 0

    ``self_influence`` of ``method="fast_rand_proj"`` is TracInCPFast's (Captum's
    TracInCPFastRandProj has none): exact, equal to ``method="fast"``'s.

    Example::

        >>> from captum_video.models import C3DSmall
        >>> from captum_video.models.training import fit_classifier
        >>> clips, labels, _ = MovingShapes(num_samples=96, num_frames=8, size=16,
        ...                                 speed=(1.0, 1.0)).tensors()
        >>> net = C3DSmall(widths=(4, 8, 8, 8))
        >>> fit_classifier(net, clips, labels, epochs=4, checkpoint_dir="ckpts")
        >>> tracin = VideoTracIn(net.eval(), (clips, labels), "ckpts")
        >>> best = tracin.proponents(clips[:2], k=3)     # the clips that made the decision
        >>> best.indices.shape
        torch.Size([2, 3])
        >>> suspicious = tracin.self_influence().argsort(descending=True)[:10]
    """

    def __init__(
        self,
        model: nn.Module,
        train_dataset: Dataset | tuple[Tensor, Tensor],
        checkpoints: Any,
        method: str = "fast",
        final_fc_layer: nn.Module | str | None = None,
        layers: list[str] | None = None,
        batch_size: int = 32,
        cache_checkpoints: bool = True,
        projection_dim: int | None = None,
        seed: int = 0,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if layers is not None and method != "full":
            raise ValueError("layers= chooses the parameters of method='full'; pass it with that")
        if final_fc_layer is not None and method not in LAST_LAYER_METHODS:
            raise ValueError(
                "final_fc_layer= is the layer of method='fast' or 'fast_rand_proj'; pass it "
                "with one of those"
            )
        if projection_dim is not None:
            if method != "fast_rand_proj":
                raise ValueError(
                    "projection_dim= projects the gradients of method='fast_rand_proj'; pass "
                    "it with that"
                )
            validate_positive_int(projection_dim, "projection_dim")
        validate_positive_int(seed, "seed", minimum=0)
        self.batch_size = validate_positive_int(batch_size, "batch_size")
        self.method = method
        self.checkpoints = find_checkpoints(checkpoints)
        self._loader = CheckpointLoader(cache=cache_checkpoints)
        # Captum loads checkpoints into the model it is given: that must be a copy. Copied
        # under evaluating() so the copy is in eval mode (and the caller warned once if their
        # model was in train mode, where BatchNorm would update its statistics).
        with evaluating(model, "VideoTracIn"):
            self.model = copy.deepcopy(model)
        self._final_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.train_dataset = as_clip_label_dataset(train_dataset)
        self.num_classes = count_classes(
            self.model, self.train_dataset, "influence traces the cross-entropy of a classifier"
        )
        self.train_dataset.num_classes = self.num_classes
        self.train_dataset[0]  # now that the classes are known, check item 0's label too
        device = module_device(self.model)
        dataset: Dataset = (
            self.train_dataset if device.type == "cpu" else _OnDevice(self.train_dataset, device)
        )
        self._loader(self.model, self.checkpoints[0])  # a bad checkpoint fails here, named
        layer, names = None, None
        if method in LAST_LAYER_METHODS:
            layer = self._copied_layer(model, final_fc_layer)
        else:
            names = self._layer_names(layers)
            for param in self._parameters_of(names):
                param.requires_grad_(True)
        try:
            self._captum, self._captum_self = build_tracin(
                method,
                self.model,
                dataset,
                list(self.checkpoints),
                self._loader,
                self.batch_size,
                layer=layer,
                layer_names=names,
                projection_dim=projection_dim,
                seed=seed,
            )
        finally:
            self.model.load_state_dict(self._final_state)

    # -- set-up helpers -----------------------------------------------------------------------

    def _copied_layer(self, model: nn.Module, layer: nn.Module | str | None) -> nn.Module:
        """The copy's module that is ``layer`` (a module or name of the caller's model)."""
        if layer is None:
            try:
                layer = classifier_of(self.model)
            except ValueError:
                linears = [m for m in self.model.modules() if isinstance(m, nn.Linear)]
                if not linears:
                    raise ValueError(
                        f"method={self.method!r} needs the model's last linear layer and "
                        f"{type(model).__name__} has none; pass final_fc_layer= or use "
                        "method='full'"
                    ) from None
                layer = linears[-1]
            if isinstance(layer, nn.Sequential):
                linears = [m for m in layer.modules() if isinstance(m, nn.Linear)]
                layer = linears[-1] if linears else layer
            found: nn.Module = layer
        elif isinstance(layer, str):
            try:
                found = self.model.get_submodule(layer)
            except AttributeError:
                raise ValueError(f"final_fc_layer {layer!r} is not a module of the model") from None
        else:
            names = {id(m): n for n, m in model.named_modules()}
            if id(layer) not in names:
                raise ValueError("final_fc_layer must be a module of model (or its dotted name)")
            found = self.model.get_submodule(names[id(layer)])
        if not isinstance(found, nn.Linear):
            raise ValueError(
                f"final_fc_layer must be an nn.Linear (TracInCPFast's identity holds for a "
                f"linear layer on pooled features), got {type(found).__name__}; pass the "
                "model's last linear layer or use method='full'"
            )
        return found

    def _layer_names(self, layers: list[str] | None) -> list[str]:
        if layers is None:
            return [
                n for n, m in self.model.named_children() if next(m.parameters(), None) is not None
            ]
        if isinstance(layers, str) or not all(isinstance(n, str) for n in layers) or not layers:
            raise TypeError(f"layers must be a non-empty list of dotted module names, got {layers}")
        for name in layers:
            try:
                self.model.get_submodule(name)
            except AttributeError:
                raise ValueError(f"layers: {name!r} is not a module of the model") from None
        return list(layers)

    def _parameters_of(self, names: list[str]) -> list[nn.Parameter]:
        return [p for n in names for p in self.model.get_submodule(n).parameters()]

    # -- the test clips -----------------------------------------------------------------------

    def _test_batch(self, clips: Tensor, target: Any) -> tuple[Tensor, Tensor]:
        validate_video(clips, name="clips", model=self.model)
        clips = clips.to(module_device(self.model))
        n = clips.shape[0]
        if target is None:
            self.model.load_state_dict(self._final_state)
            with torch.no_grad():
                targets = self.model(clips).argmax(1)
        else:
            validate_target(target, self.num_classes, n)
            if isinstance(target, Tensor):
                targets = target.reshape(-1).long()
            elif isinstance(target, int):
                targets = torch.full((n,), target, dtype=torch.long)
            else:
                targets = torch.as_tensor(list(target), dtype=torch.long)
            targets = targets.expand(n) if targets.numel() == 1 else targets
            if targets.shape != (n,):
                raise ValueError(f"target must give one class per clip ({n}), got {len(targets)}")
        return clips, targets.to(clips.device)

    # -- public API -----------------------------------------------------------------------------

    def influence(self, clips: Tensor, target: Any = None, show_progress: bool = False) -> Tensor:
        """TracIn scores of every training clip on every test clip.

        Args:
            clips (Tensor): test clips ``(N, C, T, H, W)``.
            target (int, sequence or Tensor, optional): the class whose loss is traced, per
                clip or for all. Default: None (each clip's predicted class: the decision)
            show_progress (bool, optional): Captum's progress bar (``fast_rand_proj`` reads
                no training clip and has none). Default: False

        Returns:
            Tensor: ``(N, len(train_dataset))`` (with a ``projection_dim``: of the projected
            gradients, approximate).

        Example::

            >>> tracin.influence(clips[:2]).shape
            torch.Size([2, 96])
        """
        batch = self._test_batch(clips, target)
        try:
            # k=None: all scores (TracInCPFastRandProj's k defaults to 5 neighbours).
            kwargs = query_kwargs(self._captum, show_progress)
            return self._captum.influence(batch, k=None, **kwargs).detach()
        finally:
            self.model.load_state_dict(self._final_state)

    def _most_influential(
        self, clips: Tensor, target: Any, k: int, proponents: bool, show_progress: bool
    ) -> InfluentialClips:
        batch = self._test_batch(clips, target)
        validate_positive_int(k, "k")
        if k > len(self.train_dataset):
            raise ValueError(f"k is {k} but the training set holds {len(self.train_dataset)} clips")
        try:
            found = self._captum.influence(
                batch, k=k, proponents=proponents, **query_kwargs(self._captum, show_progress)
            )
        finally:
            self.model.load_state_dict(self._final_state)
        indices, scores = found.indices, found.influence_scores.detach()
        return InfluentialClips(
            indices, scores, batch[1].cpu(), proponents, self.train_dataset.labels_of(indices)
        )

    def proponents(
        self, clips: Tensor, target: Any = None, k: int = 5, show_progress: bool = False
    ) -> InfluentialClips:
        """The ``k`` training clips whose gradient steps lowered each test clip's loss most.

        Args:
            clips (Tensor): test clips ``(N, C, T, H, W)``.
            target (optional): the traced class; default each clip's prediction.
            k (int, optional): clips per test clip. Default: 5
            show_progress (bool, optional): Captum's progress bar. Default: False

        Returns:
            InfluentialClips: indices, scores (highest first), targets and training labels.

        Example::

            >>> tracin.proponents(clips[:1], k=3).train_labels
            tensor([[2, 2, 2]])
        """
        return self._most_influential(clips, target, k, True, show_progress)

    def opponents(
        self, clips: Tensor, target: Any = None, k: int = 5, show_progress: bool = False
    ) -> InfluentialClips:
        """The ``k`` training clips whose gradient steps raised each test clip's loss most.

        Args:
            clips (Tensor): test clips ``(N, C, T, H, W)``.
            target (optional): the traced class; default each clip's prediction.
            k (int, optional): clips per test clip. Default: 5
            show_progress (bool, optional): Captum's progress bar. Default: False

        Returns:
            InfluentialClips: indices, scores (lowest first), targets and training labels.

        Example::

            >>> tracin.opponents(clips[:1], k=3).scores < 0
            tensor([[True, True, True]])
        """
        return self._most_influential(clips, target, k, False, show_progress)

    def self_influence(self, show_progress: bool = False) -> Tensor:
        """TracIn of every training clip on itself: high for clips hard to fit (mislabelled).

        Args:
            show_progress (bool, optional): Captum's progress bar. Default: False

        Returns:
            Tensor: ``(len(train_dataset),)``, all >= 0.

        Example::

            >>> suspects = tracin.self_influence().argsort(descending=True)[:10]
        """
        loader = self._captum_self.train_dataloader
        try:
            scores = self._captum_self.self_influence(
                loader, show_progress=show_progress, outer_loop_by_checkpoints=True
            )
        finally:
            self.model.load_state_dict(self._final_state)
        return scores.detach()


class _OnDevice(Dataset):
    """Items moved to the model's device: Captum runs training batches as they come."""

    def __init__(self, data: ClipLabelDataset, device: torch.device) -> None:
        self.data, self.device = data, device

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        clip, label = self.data[index]
        return clip.to(self.device), label.to(self.device)

"""Where VideoTCAV keeps concept activations and CAVs: in memory, or on disk once per concept
and layer (Captum's ``TCAV`` writes every batch), and how it trains a CAV."""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Sequence

import torch
from captum._utils.av import AV
from captum._utils.common import _get_module_from_name
from captum.attr import LayerActivation
from captum.concept import TCAV, Concept
from captum.concept._core.cav import CAV
from captum.concept._utils.common import concepts_to_str
from torch import Tensor

from captum_video._model_state import in_eval_mode, module_device
from captum_video._validation import format_video_inputs
from captum_video.concept._pooling import pool_activations

__all__ = ["CAVStore"]


class CAVStore(TCAV):
    """The activation and CAV half of :class:`~captum_video.concept.VideoTCAV`.

    It reads the attributes ``VideoTCAV.__init__`` sets (``model``, ``layers``, ``act_pool``,
    ``cache``, ``save_path``, ``model_id``, ``classifier``, ``cavs``, ``_activations`` ...)
    and overrides Captum's ``TCAV`` methods of the same names.

    Returns:
        Not built on its own; see :class:`~captum_video.concept.VideoTCAV`.
    """

    # -- activations ------------------------------------------------------------------------

    def _store_key(self, layer: str) -> str:
        # Pooled activations must never mix with Captum's flattened ones on disk.
        return f"{layer}@{self.act_pool}"

    @in_eval_mode
    def generate_activation(self, layers: str | list[str], concept: Concept) -> None:
        r"""Compute (and cache) pooled activations of ``concept`` for ``layers``.

        One forward pass per batch of concept clips serves all layers; batches are
        concatenated in memory and, with ``cache="disk"``, written once per layer.

        Args:
            layers (str or list of str): layer names.
            concept (Concept): a concept whose ``data_iter`` yields clip batches.

        Returns:
            None
        """
        layers = [layers] if isinstance(layers, str) else list(layers)
        if concept.data_iter is None:
            raise ValueError(f"concept {concept!r} has no data_iter: it cannot give examples")
        modules = [_get_module_from_name(self.model, layer) for layer in layers]
        layer_act = LayerActivation(self.model, modules)
        device = module_device(self.model)
        chunks: list[list[Tensor]] = [[] for _ in layers]
        for _i, batch in enumerate(concept.data_iter):
            if isinstance(batch, (list, tuple)) and len(batch) == 1:
                batch = batch[0]
            _, formatted = format_video_inputs(batch, model=self.model)
            batch = tuple(t.to(device) for t in formatted)
            with torch.no_grad():
                acts = layer_act.attribute.__wrapped__(  # type: ignore[attr-defined]
                    layer_act, batch, attribute_to_layer_input=self.attribute_to_layer_input
                )
            for j, (act, layer) in enumerate(zip(acts, layers, strict=True)):
                act = act[0] if isinstance(act, tuple) else act
                chunks[j].append(pool_activations(act.detach(), self.act_pool, layer))
        if not chunks[0]:
            raise ValueError(f"concept {concept!r} gave no examples")
        for layer, parts in zip(layers, chunks, strict=True):
            acts = torch.cat(parts)
            if self.cache == "disk":
                AV.save(
                    self.save_path,
                    self.model_id,
                    concept.identifier,
                    self._store_key(layer),
                    acts,
                    "all",
                )
            else:
                self._activations[(concept.identifier, layer)] = acts

    def _load_activations(self, concept: Concept, layer: str) -> Tensor | None:
        if self.cache == "memory":
            return self._activations.get((concept.identifier, layer))
        key = self._store_key(layer)
        if not AV.exists(self.save_path, self.model_id, concept.identifier, key):
            return None
        data = AV.load(self.save_path, self.model_id, concept.identifier, key)
        assert data is not None
        return torch.cat([data[i] for i in range(len(data))])  # type: ignore[misc]

    def clear_cache(self) -> None:
        r"""Forget activations and CAVs held in memory (files on disk are kept).

        Returns:
            None
        """
        self._activations.clear()
        self.cavs.clear()

    # -- CAVs -------------------------------------------------------------------------------

    def load_cavs(self, concepts: list[Concept]) -> tuple[list[str], dict[Concept, list[str]]]:
        r"""Which layers still need a CAV for ``concepts`` and which activations are missing.

        Args:
            concepts (list of Concept): one experimental set.

        Returns:
            tuple: ``(layers, {concept: layers without cached activations})``.
        """
        key = concepts_to_str(concepts)
        layers: list[str] = []
        missing: dict[Concept, list[str]] = defaultdict(list)
        for layer in self.layers:
            if self.cache == "disk" and layer not in self.cavs.get(key, {}):
                with warnings.catch_warnings():
                    # Captum's CAV.load names numpy.core, deprecated in numpy 2.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    cav = CAV.load(self.save_path, self.model_id, concepts, self._store_key(layer))
                if cav is not None:
                    self.cavs[key][layer] = cav
            if layer in self.cavs.get(key, {}):
                continue
            layers.append(layer)
            for concept in concepts:
                if self._load_activations(concept, layer) is None:
                    missing[concept].append(layer)
        return layers, missing

    def compute_cavs(
        self,
        experimental_sets: list[list[Concept]],
        force_train: bool = False,
        processes: int | None = None,
    ) -> dict[str, dict[str, CAV]]:
        r"""Train (or reuse) one CAV per experimental set and layer.

        Args:
            experimental_sets (list of list of Concept): e.g. ``[[concept, random_i], ...]``.
            force_train (bool, optional): retrain even if a CAV is cached. Default: False
            processes (int, optional): accepted for Captum compatibility and ignored:
                training runs in-process on the activations' device.

        Returns:
            dict: ``{set_key: {layer: CAV}}``; each CAV's ``stats`` holds ``"weights"``,
            ``"classes"``, ``"accs"`` (held-out accuracy) and ``"act_pool"``.
        """
        if not experimental_sets or not all(
            isinstance(s, (list, tuple)) and len(s) >= 2 for s in experimental_sets
        ):
            raise ValueError("experimental_sets must be a non-empty list of lists of >= 2 concepts")
        for concepts in experimental_sets:
            if not all(isinstance(c, Concept) for c in concepts):
                raise TypeError("experimental sets must hold captum.concept.Concept objects")
            self.concepts.update(concepts)
        by_id: dict[int, Concept] = {}
        for concept in self.concepts:
            if by_id.setdefault(concept.id, concept) is not concept:
                raise ValueError(
                    f"two different concepts share the id {concept.id}; reuse one instance"
                )
        if force_train:
            for concepts in experimental_sets:
                self.cavs.pop(concepts_to_str(concepts), None)
        for concepts in experimental_sets:
            layers, missing = self.load_cavs(list(concepts))
            for concept, concept_layers in missing.items():
                self.generate_activation(concept_layers, concept)
            for layer in layers:
                self.cavs[concepts_to_str(concepts)][layer] = self._train_cav(concepts, layer)
        return self.cavs

    def _train_cav(self, concepts: Sequence[Concept], layer: str) -> CAV:
        acts = [self._load_activations(c, layer) for c in concepts]
        assert all(a is not None for a in acts)
        labels = [
            torch.full((len(a),), c.id, dtype=torch.long, device=a.device)  # type: ignore
            for a, c in zip(acts, concepts, strict=True)
        ]
        loader = [(torch.cat(acts), torch.cat(labels))]  # type: ignore[arg-type]
        stats = self.classifier.train_and_eval(loader, **self.classifier_kwargs) or {}  # type: ignore[arg-type]
        weights = self.classifier.weights()
        classes = self.classifier.classes()
        classes = classes.tolist() if isinstance(classes, Tensor) else list(classes)
        stats = {
            "weights": weights.detach(),
            "classes": classes,
            **stats,
            "act_pool": self.act_pool,
        }
        cav = CAV(
            list(concepts),
            self._store_key(layer) if self.cache == "disk" else layer,
            stats,
            self.save_path,
            self.model_id,
        )
        if self.cache == "disk":
            CAV.create_cav_dir_if_missing(self.save_path, self.model_id)
            cav.save()
        return cav

"""VideoTCAV: TCAV for video models, with activation pooling and no per-batch disk writes.

Captum's ``TCAV`` flattens ``(N, C, T', H', W')`` activations, writes every batch of them to
disk under ``save_path``, trains the CAV with sklearn on the CPU, and differentiates whatever
the model returns. This subclass keeps its interface and output format but

* holds activations in memory (or on disk, once per concept and layer, when asked),
* trains CAVs with a torch classifier where the activations are (GPU when there is one),
* can pool activations over space, time or both before the CAV (``act_pool``), and pools
  the sensitivities the same way,
* computes all layers' sensitivities in one forward/backward pass per batch of inputs,
* differentiates the logit or the log-softmax (``output``), and
* reports each CAV's held-out accuracy next to the scores.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from captum._utils.av import AV
from captum._utils.common import _format_additional_forward_args, _get_module_from_name
from captum._utils.gradient import compute_layer_gradients_and_eval
from captum._utils.typing import TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr import LayerActivation, LayerAttribution, LayerGradientXActivation
from captum.concept import TCAV, Concept
from captum.concept._core.cav import CAV
from captum.concept._core.concept import ConceptInterpreter
from captum.concept._utils.classifier import Classifier
from captum.concept._utils.common import concepts_to_str
from captum.log import log_usage
from torch import Tensor, nn

from captum_video._validation import (
    format_video_inputs,
    model_num_outputs,
    module_device,
    preserve_grad_requirements,
    target_or_prediction,
    validate_target,
)
from captum_video.concept._classifier import TorchLinearClassifier
from captum_video.concept._significance import SignificanceResult, significance

__all__ = ["VideoTCAV", "TCAVScores", "pool_activations", "ACT_POOLS"]

ActPool = Literal["none", "spatial", "temporal", "both"]
ACT_POOLS: tuple[str, ...] = ("none", "spatial", "temporal", "both")
# Axes of an (N, C, T, H, W) activation that each pooling mode averages away.
_POOL_DIMS: dict[str, tuple[int, ...]] = {
    "none": (),
    "spatial": (3, 4),
    "temporal": (2,),
    "both": (2, 3, 4),
}


def pool_activations(act: Tensor, act_pool: str = "none", layer: str = "layer") -> Tensor:
    r"""Average a layer's activations (or gradients) over space and/or time and flatten.

    ``"spatial"`` averages over ``H', W'`` (keeps channels x time: a CAV about *when*),
    ``"temporal"`` over ``T'`` (keeps channels x space: a CAV about *where*, order-free),
    ``"both"`` over ``T', H', W'`` (one value per channel), ``"none"`` only flattens.
    Gradients pooled with the same mean are the derivative along the CAV broadcast back to
    the full activation space (up to a positive factor), so TCAV signs are exact.

    Args:
        act (Tensor): ``(N, C, T', H', W')`` (any shape for ``"none"``).
        act_pool (str, optional): ``"none"``, ``"spatial"``, ``"temporal"`` or ``"both"``.
            Default: ``"none"``
        layer (str, optional): layer name for error messages.

    Returns:
        Tensor: ``(N, F)``.

    Example::

        >>> pool_activations(torch.rand(2, 8, 4, 6, 6), "spatial").shape
        torch.Size([2, 32])
    """
    if act_pool not in _POOL_DIMS:
        raise ValueError(f"act_pool must be one of {ACT_POOLS}, got {act_pool!r}")
    dims = _POOL_DIMS[act_pool]
    if dims:
        if act.dim() != 5:
            raise ValueError(
                f"act_pool={act_pool!r} needs a layer output (N, C, T, H, W) with a time axis, "
                f"but {layer!r} gives shape {tuple(act.shape)}; use act_pool='none' for it"
            )
        act = act.mean(dim=dims)
    return act.reshape(act.shape[0], -1)


class TCAVScores(dict):
    r"""The dict ``{experimental_set_key: {layer: {...}}}`` returned by
    :meth:`VideoTCAV.interpret`, in Captum's format, that also remembers the concepts (by id),
    so :func:`significance` can tell random sets from concepts and print names.

    Args:
        *args: as for ``dict``.
        concepts (dict, optional): ``{id: Concept}``.

    Returns:
        A ``dict``.

    Example::

        >>> scores = TCAVScores({"0-1": {}}, concepts={})
        >>> list(scores)
        ['0-1']
    """

    def __init__(self, *args: Any, concepts: dict[int, Concept] | None = None) -> None:
        super().__init__(*args)
        self.concepts: dict[int, Concept] = dict(concepts or {})


def _layer_names(model: nn.Module, layers: Any) -> list[str]:
    items = [layers] if isinstance(layers, (str, nn.Module)) else list(layers)
    if not items:
        raise ValueError("layers is empty; give at least one layer name or module")
    names_of = {id(module): name for name, module in model.named_modules() if name}
    names = []
    for item in items:
        if isinstance(item, str):
            try:
                _get_module_from_name(model, item)
            except AttributeError:
                known = [n for n, _ in model.named_modules() if n][:20]
                raise ValueError(f"model has no layer {item!r}; some layers: {known}") from None
            names.append(item)
        elif isinstance(item, nn.Module):
            if id(item) not in names_of:
                raise ValueError(f"layer module {type(item).__name__} is not a submodule of model")
            names.append(names_of[id(item)])
        else:
            raise TypeError(f"layers must be names or modules, got {type(item).__name__}")
    if len(set(names)) != len(names):
        raise ValueError(f"layers has duplicates: {names}")
    return names


class VideoTCAV(TCAV):
    r"""Testing with Concept Activation Vectors for video models (Video-TCAV).

    A :class:`captum.concept.TCAV` whose concept sets are clips ``(N, C, T, H, W)``; see the
    module docstring for what changes. The TCAV score of concept C for class k at layer l is
    the share of inputs x with ``S = grad_a h_k(a(x)) . v_C > 0`` (``"sign_count"``);
    Captum's ``"magnitude"`` (mean S) and tensorflow/tcav's magnitude
    (``sum max(S, 0) / sum |S|``, ``"positive_magnitude"``) are reported too, with
    ``"cav_accuracy"`` (held-out), ``"act_pool"`` and ``"output"`` marking each result.

    Args:
        model (nn.Module): the video classifier, returning ``(N, K)``.
        layers (str, Module, or list of them): layers to test, by name (``"layer3"``,
            ``"backbone.layers.2"``) or as submodules of ``model``.
        model_id (str, optional): name used in ``save_path`` when ``cache="disk"``.
        classifier (Classifier, optional): trains the CAVs; default
            :class:`TorchLinearClassifier` (torch, on the activations' device).
        layer_attr_method (LayerAttribution, optional): a Captum layer method for the
            sensitivities, called through ``attribute.__wrapped__`` as Captum's TCAV does;
            default: exact gradients of all layers in one backward pass.
        attribute_to_layer_input (bool, optional): use the layers' inputs instead of their
            outputs. Default: False
        save_path (str, optional): folder for ``cache="disk"``; default ``"./cav/"``.
        act_pool (str, optional): ``"none"``, ``"spatial"`` (mean over H', W'), ``"temporal"``
            (mean over T') or ``"both"``. Default: ``"none"``
        output (str, optional): differentiate the ``"logit"`` (the paper's equation) or the
            ``"log_softmax"`` (tensorflow/tcav's choice). Default: ``"logit"``
        cache (str, optional): ``"memory"`` keeps activations and CAVs in this object and
            writes nothing; ``"disk"`` stores one file per concept and layer (and the CAVs) under
            ``save_path`` and reuses them across runs. Default: ``"memory"``
        batch_size (int, optional): inputs per forward/backward pass in :meth:`interpret`.
            Default: 32
        **classifier_kwargs: passed to ``classifier.train_and_eval``.

    Returns:
        A concept interpreter.

    Example::

        >>> from captum_video.models import load_demo_model
        >>> model = load_demo_model("motion")
        >>> moving = VideoConcept(0, "moving", clips=torch.rand(12, 3, 16, 32, 32))
        >>> rand = [VideoConcept(10 + i, f"random{i}", clips=torch.rand(12, 3, 16, 32, 32),
        ...                      kind="random") for i in range(3)]
        >>> tcav = VideoTCAV(model, ["layer2", "layer3"], act_pool="spatial")
        >>> sets = tcav.experimental_sets([moving], rand)
        >>> scores = tcav.interpret(torch.rand(8, 3, 16, 32, 32), sets, target=0)
        >>> print(tcav.significance(scores).table())
    """

    def __init__(
        self,
        model: nn.Module,
        layers: str | nn.Module | Sequence[str | nn.Module],
        model_id: str = "default_model_id",
        classifier: Classifier | None = None,
        layer_attr_method: LayerAttribution | None = None,
        attribute_to_layer_input: bool = False,
        save_path: str | None = None,
        act_pool: ActPool = "none",
        output: Literal["logit", "log_softmax"] = "logit",
        cache: Literal["memory", "disk"] = "memory",
        batch_size: int = 32,
        **classifier_kwargs: Any,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if act_pool not in ACT_POOLS:
            raise ValueError(f"act_pool must be one of {ACT_POOLS}, got {act_pool!r}")
        if output not in ("logit", "log_softmax"):
            raise ValueError(f"output must be 'logit' or 'log_softmax', got {output!r}")
        if cache not in ("memory", "disk"):
            raise ValueError(f"cache must be 'memory' or 'disk', got {cache!r}")
        if output != "logit" and layer_attr_method is not None:
            raise ValueError(
                "output='log_softmax' applies to the built-in gradients; a custom "
                "layer_attr_method differentiates its own forward function"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not model_id:
            raise ValueError("model_id cannot be empty")
        # TCAV.__init__ is not called on purpose: it creates save_path on disk and builds the
        # sklearn DefaultClassifier. The attributes it sets are set here instead.
        ConceptInterpreter.__init__(self, model)
        self.layers: list[str] = _layer_names(model, layers)
        self.model_id = model_id
        self.concepts: set[Concept] = set()
        self.classifier: Classifier = classifier or TorchLinearClassifier()
        self.classifier_kwargs: Any = classifier_kwargs
        self.cavs: dict[str, dict[str, CAV]] = defaultdict(dict)
        self._custom_attr = layer_attr_method is not None
        self.layer_attr_method: LayerAttribution = layer_attr_method or LayerGradientXActivation(
            model,
            None,
            multiply_by_inputs=False,  # type: ignore[arg-type]
        )
        self.attribute_to_layer_input = attribute_to_layer_input
        self.save_path = "./cav/" if save_path is None else save_path
        self.act_pool: str = act_pool
        self.output: str = output
        self.cache: str = cache
        self.batch_size = batch_size
        # (concept identifier, layer) -> pooled activations (N, F), when cache="memory".
        self._activations: dict[tuple[str, str], Tensor] = {}

    # -- activations ------------------------------------------------------------------------

    def _store_key(self, layer: str) -> str:
        # Pooled activations must never mix with Captum's flattened ones on disk.
        return f"{layer}@{self.act_pool}"

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
            _, formatted = format_video_inputs(batch)
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

    # -- scores -----------------------------------------------------------------------------

    def _forward_fn(self) -> Callable[..., Tensor]:
        if self.output == "logit":
            return self.model
        model = self.model

        def log_softmax_forward(*args: Any) -> Tensor:
            return F.log_softmax(model(*args), dim=1)

        return log_softmax_forward

    def _sensitivities(
        self, inputs: tuple[Tensor, ...], target: TargetType, extra: Any, **kwargs: Any
    ) -> dict[str, Tensor]:
        modules = [_get_module_from_name(self.model, layer) for layer in self.layers]
        n = inputs[0].shape[0]
        parts: dict[str, list[Tensor]] = {layer: [] for layer in self.layers}
        for start in range(0, n, self.batch_size):
            sl = slice(start, start + self.batch_size)
            chunk = tuple(t[sl] for t in inputs)
            chunk_target = (
                target[sl] if isinstance(target, (Tensor, list)) and len(target) == n else target
            )
            chunk_extra = (
                tuple(
                    a[sl] if isinstance(a, Tensor) and a.dim() > 0 and len(a) == n else a
                    for a in extra
                )
                if extra is not None
                else None
            )
            if self._custom_attr:
                grads = []
                for module in modules:
                    self.layer_attr_method.layer = module
                    attr = self.layer_attr_method.attribute.__wrapped__(  # type: ignore
                        self.layer_attr_method,
                        chunk,
                        target=chunk_target,
                        additional_forward_args=chunk_extra,
                        attribute_to_layer_input=self.attribute_to_layer_input,
                        **kwargs,
                    )
                    grads.append(attr[0] if isinstance(attr, tuple) else attr)
            else:
                with preserve_grad_requirements(chunk):
                    layer_grads, _ = compute_layer_gradients_and_eval(
                        self._forward_fn(),
                        modules,
                        chunk,
                        chunk_target,
                        chunk_extra,
                        attribute_to_layer_input=self.attribute_to_layer_input,
                    )
                grads = [g[0] for g in layer_grads]
            for layer, grad in zip(self.layers, grads, strict=True):
                parts[layer].append(pool_activations(grad.detach(), self.act_pool, layer))
        return {layer: torch.cat(p) for layer, p in parts.items()}

    @log_usage(part_of_slo=True)
    def interpret(  # type: ignore[override]
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        experimental_sets: list[list[Concept]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        processes: int | None = None,
        **kwargs: Any,
    ) -> TCAVScores:
        r"""TCAV scores of every experimental set at every layer, for ``inputs`` and ``target``.

        Args:
            inputs (Tensor or tuple of Tensor): clips ``(N, C, T, H, W)`` of the class under
                test, pre-processed like the concept clips.
            experimental_sets (list of list of Concept): e.g. from :meth:`experimental_sets`.
            target (int, list or Tensor, optional): the class k; ``None`` takes each clip's
                predicted class (the argmax of the model's output).
            additional_forward_args (Any, optional): extra arguments of the model.
            processes (int, optional): ignored (Captum compatibility).
            **kwargs: passed to a custom ``layer_attr_method``.

        Returns:
            TCAVScores: ``{set_key: {layer: {"sign_count": (n_concepts,), "magnitude":
            (n_concepts,), "positive_magnitude": (n_concepts,), "cav_accuracy": 0-d tensor,
            "act_pool": str, "output": str}}}``; score order follows the concepts of each set.
        """
        if "attribute_to_layer_input" in kwargs:
            raise ValueError("set attribute_to_layer_input in the VideoTCAV constructor")
        _, formatted = format_video_inputs(inputs)
        device = module_device(self.model)
        formatted = tuple(t.to(device) for t in formatted)
        extra = _format_additional_forward_args(additional_forward_args)
        if target is None:
            target = target_or_prediction(self.model, formatted, extra, None)
        else:
            with torch.no_grad():
                probe = self.model(*(t[:1] for t in formatted), *(extra or ()))
            validate_target(target, model_num_outputs(probe), formatted[0].shape[0])
        self.compute_cavs(experimental_sets, processes=processes)
        sens = self._sensitivities(formatted, target, extra, **kwargs)
        scores = TCAVScores(concepts={c.id: c for c in self.concepts})
        for concepts in experimental_sets:
            key = concepts_to_str(concepts)
            scores.setdefault(key, {})
            for layer in self.layers:
                cav = self.cavs[key][layer]
                stats: dict[str, Any] = cav.stats or {}
                weights = stats["weights"].to(sens[layer].device, sens[layer].dtype)
                order = [list(stats["classes"]).index(c.id) for c in concepts]
                s = sens[layer] @ weights[order].T  # (N, n_concepts)
                pos = s.clamp_min(0).sum(0)
                scores[key][layer] = {
                    "sign_count": (s > 0).float().mean(0),
                    "magnitude": s.mean(0),
                    "positive_magnitude": pos / s.abs().sum(0).clamp_min(1e-30),
                    "cav_accuracy": torch.as_tensor(stats.get("accs", float("nan"))).float(),
                    "act_pool": self.act_pool,
                    "output": self.output,
                }
        return scores

    # -- experiments ------------------------------------------------------------------------

    @staticmethod
    def experimental_sets(
        concepts: Sequence[Concept], random_concepts: Sequence[Concept]
    ) -> list[list[Concept]]:
        r"""The sets for a significance test: each concept against every random set, plus
        random vs random (``random_i`` against ``random_{i+1 mod M}``).

        Args:
            concepts (sequence of Concept): concepts to test.
            random_concepts (sequence of Concept): M >= 2 random sets.

        Returns:
            list of list of Concept

        Example::

            >>> sets = VideoTCAV.experimental_sets([c], [r0, r1])   # doctest: +SKIP
            >>> [[x.id for x in s] for s in sets]                   # doctest: +SKIP
            [[0, 10], [0, 11], [10, 11], [11, 10]]
        """
        randoms = list(random_concepts)
        if len(randoms) < 2:
            raise ValueError(f"a significance test needs >= 2 random sets, got {len(randoms)}")
        sets = [[c, r] for c in concepts for r in randoms]
        sets += [[r, randoms[(i + 1) % len(randoms)]] for i, r in enumerate(randoms)]
        return sets

    def significance(
        self,
        scores: dict[str, Any],
        alpha: float = 0.05,
        correction: str | None = "bonferroni",
        **kwargs: Any,
    ) -> SignificanceResult:
        r"""Shortcut for :func:`captum_video.concept.significance`.

        Args:
            scores (dict): the output of :meth:`interpret`.
            alpha (float, optional): family-wise level. Default: 0.05
            correction (str, optional): ``"bonferroni"`` or None. Default: ``"bonferroni"``
            **kwargs: passed on (``random_concepts``, ``metric``, ``layers``).

        Returns:
            SignificanceResult
        """
        return significance(scores, alpha=alpha, correction=correction, **kwargs)

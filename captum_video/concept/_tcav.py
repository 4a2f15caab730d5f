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

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from captum._utils.common import _format_additional_forward_args, _get_module_from_name
from captum._utils.gradient import compute_layer_gradients_and_eval
from captum._utils.typing import TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr import LayerAttribution, LayerGradientXActivation
from captum.concept import Concept
from captum.concept._core.cav import CAV
from captum.concept._core.concept import ConceptInterpreter
from captum.concept._utils.classifier import Classifier
from captum.concept._utils.common import concepts_to_str
from captum.log import log_usage
from torch import Tensor, nn

from captum_video._model_state import in_eval_mode, module_device, preserve_grad_requirements
from captum_video._targets import model_num_outputs, target_or_prediction, validate_target
from captum_video._validation import format_video_inputs
from captum_video.concept._cav_store import CAVStore
from captum_video.concept._classifier import TorchLinearClassifier
from captum_video.concept._pooling import (
    ACT_POOLS,
    ActPool,
    TCAVScores,
    _layer_names,
    pool_activations,
)
from captum_video.concept._significance import SignificanceResult, significance

__all__ = ["VideoTCAV"]


class VideoTCAV(CAVStore):
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
    @in_eval_mode
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

        A model in train mode runs in eval mode for the call (with a warning; each module's
        mode is restored afterwards), so its BatchNorm statistics never change.

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
        _, formatted = format_video_inputs(inputs, model=self.model)
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

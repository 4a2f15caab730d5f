r"""How much does a model rely on time? The drop of the class probability under temporal
perturbations (cf. the OS/FS/RS scores of Mänttäri et al., ACCV 2020, "Interpreting video
features: a comparison of 3D convolutional networks and convolutional LSTM networks").

``Δ_op(x) = p_c(x) - p_c(op(x))`` for ``op`` in freeze, shuffle, reverse, ... A model that
decides from motion loses most of its confidence when the clip is frozen or shuffled; a model
with a strong static (appearance) bias loses almost nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from captum._utils.common import _format_additional_forward_args, _run_forward, _select_targets
from captum._utils.typing import TargetType
from torch import Tensor

from captum_video._model_state import eval_mode_for
from captum_video._targets import validate_target
from captum_video._validation import validate_video
from captum_video.baselines import get_perturbation

__all__ = ["temporal_sensitivity"]

#: Arguments used for named operators that need one.
_DEFAULT_KWARGS: dict[str, dict[str, Any]] = {
    "jumble": {"segment": 4},
    "subsample": {"rate": 4},
    "temporal_blur": {"sigma": 2.0},
}

OpSpec = str | Callable[[Tensor], Tensor]


@torch.no_grad()
@eval_mode_for("model")
def temporal_sensitivity(
    model: Callable[..., Tensor],
    x: Tensor,
    target: TargetType = None,
    ops: Iterable[OpSpec] | Mapping[str, Callable[[Tensor], Tensor]] = (
        "freeze",
        "shuffle",
        "reverse",
    ),
    additional_forward_args: Any = None,
    generator: torch.Generator | None = None,
    softmax: bool = True,
) -> dict[str, Tensor]:
    r"""The drop of the target probability under each temporal perturbation.

    A model in train mode runs in eval mode for the call (with a warning; each module's mode
    is restored afterwards), so its BatchNorm statistics never change.

    Args:
        model (Callable): the video model (or any forward function) returning ``(N, K)``
            logits (probabilities with ``softmax=False``).
        x (Tensor): clips ``(N, C, T, H, W)``.
        target (int, Tensor or list, optional): class per clip; None uses the class the model
            predicts on the clean clip. Default: None
        ops (iterable or mapping, optional): operator names from
            :data:`captum_video.baselines.PERTURBATIONS` (``"freeze"``, ``"shuffle"``,
            ``"reverse"``, ``"mean"``, ``"jumble"`` (segment 4), ``"subsample"`` (rate 4),
            ``"temporal_blur"`` (sigma 2)), callables ``x -> x'`` (keyed by their
            ``__name__``), or a mapping ``name -> callable``.
            Default: ``("freeze", "shuffle", "reverse")``
        additional_forward_args (Any, optional): extra arguments of ``model``. Default: None
        generator (torch.Generator, optional): passed to random operators (shuffle, jumble)
            so results repeat. Default: None
        softmax (bool, optional): apply a softmax over dim 1 to the output. Default: True

    Returns:
        dict: ``name -> (N,)`` tensor of ``p_c(x) - p_c(op(x))`` on ``x``'s device; larger
        means the model relies more on what the operator destroys. Average over a data set
        to compare models.

    Example::

        >>> model = load_demo_model("motion")
        >>> clips, labels, _ = MovingShapes("motion", num_samples=8).tensors()
        >>> drops = temporal_sensitivity(model, clips, labels)
        >>> drops["freeze"].mean() > 0.5     # a motion model loses its confidence
        tensor(True)
    """
    validate_video(x, name="x", model=model)
    validate_target(target)
    named = _resolve_ops(ops)
    afa = _format_additional_forward_args(additional_forward_args)

    def probabilities(clips: Tensor) -> Tensor:
        out = _run_forward(model, clips, None, afa)
        assert isinstance(out, Tensor)
        if out.dim() != 2:
            raise ValueError(f"model must return (N, K) scores, got shape {tuple(out.shape)}")
        return out.softmax(1) if softmax else out

    clean = probabilities(x)
    if target is None:
        target = clean.argmax(1)
    elif isinstance(target, tuple):
        raise TypeError("temporal_sensitivity needs one class per clip, not a tuple target")
    validate_target(target, int(clean.shape[1]), x.shape[0])
    p_clean = _select_targets(clean, target)
    drops = {}
    for name, (op, kwargs) in named.items():
        if "generator" in inspect.signature(op).parameters:
            kwargs["generator"] = generator
        perturbed = op(x, **kwargs)
        if not isinstance(perturbed, Tensor) or perturbed.shape != x.shape:
            raise ValueError(
                f"operator {name!r} must return a tensor shaped like x {tuple(x.shape)}"
            )
        drops[name] = p_clean - _select_targets(probabilities(perturbed), target)
    return drops


def _resolve_ops(
    ops: Iterable[OpSpec] | Mapping[str, Callable[[Tensor], Tensor]],
) -> dict[str, tuple[Callable[..., Tensor], dict[str, Any]]]:
    """``name -> (operator, keyword arguments)``; named operators get their defaults."""
    if isinstance(ops, Mapping):
        return {str(k): (get_perturbation(v), {}) for k, v in ops.items()}
    if isinstance(ops, str) or callable(ops):
        ops = (ops,)
    named: dict[str, tuple[Callable[..., Tensor], dict[str, Any]]] = {}
    for op in ops:
        if isinstance(op, str):
            named[op] = (get_perturbation(op), dict(_DEFAULT_KWARGS.get(op, {})))
        else:
            named[getattr(op, "__name__", repr(op))] = (get_perturbation(op), {})
    if not named:
        raise ValueError("ops is empty; give at least one perturbation")
    return named

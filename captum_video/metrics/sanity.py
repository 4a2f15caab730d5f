r"""Model-randomisation sanity check for explanations (Adebayo et al., NeurIPS 2018).

An explanation that explains the *model* must change when the model's weights are destroyed.
:func:`randomization_sanity` re-initialises the model's layers from the output downwards
(cascading randomisation), recomputes the explanation after each step and reports the
Spearman rank correlation with the explanation of the trained model. A correlation that stays
high means the map mostly reflects the input (edges, the moving object) rather than what the
model learnt. An explanation that does not depend on the model at all (e.g. a fixed random
map) keeps a correlation of 1 and fails.

The model is randomised in place (the explanation method keeps references to its layers) and
restored exactly afterwards, also when the explanation raises.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from captum_video._model_state import eval_mode_for
from captum_video._targets import validate_target
from captum_video._validation import validate_finite, validate_video

__all__ = ["SanityResult", "randomization_sanity", "spearman_correlation"]


class SanityResult(NamedTuple):
    """Result of :func:`randomization_sanity`.

    Attributes:
        layers (list of str): the names of the layers, in the order they were randomised
            (output first).
        correlation (Tensor): ``(L, N)`` Spearman correlation between the explanation after
            randomising ``layers[: l + 1]`` (cascading) or only ``layers[l]`` (independent)
            and the original explanation, per clip.
    """

    layers: list[str]
    correlation: Tensor


@eval_mode_for("model")
def randomization_sanity(
    explain: Callable[[Tensor, Any], Tensor],
    model: nn.Module,
    inputs: Tensor,
    target: Any = None,
    *,
    layers: Sequence[str] | None = None,
    cascading: bool = True,
    absolute: bool = True,
    seed: int = 0,
) -> SanityResult:
    r"""Spearman correlation of an explanation before vs after randomising model weights.

    A model in train mode runs in eval mode for the call (with a warning; each module's mode
    is restored afterwards), so its BatchNorm statistics never change.
    The explanations run in eval mode too (BatchNorm buffers are never changed).

    ``explain(inputs, target)`` must compute the explanation with ``model`` (an attribution
    object built on ``model`` keeps references to its layers, so
    ``lambda x, t: GradCAMTube(model, model.layer3).attribute(x, target=t)`` works). For each
    layer, from the output downwards, every parameter of the layer is replaced by Gaussian
    noise with the parameter's own mean and standard deviation (a re-initialisation that
    keeps the scale; drawn from a generator seeded with ``seed``), the explanation is
    recomputed, and its per-clip rank correlation with the original is recorded. Buffers
    (BatchNorm statistics) are kept. The model's parameters are restored in place at the
    end, also on error, so identities, ``requires_grad`` and hooks are unchanged.

    Args:
        explain (Callable): ``explain(inputs, target) -> (N, ...)`` attributions.
        model (nn.Module): the model ``explain`` uses.
        inputs (Tensor): clips ``(N, C, T, H, W)``.
        target (Any, optional): passed to ``explain`` unchanged; fix it (e.g. the labels)
            so the randomised model's prediction does not change the class explained
            (``None`` leaves the choice to ``explain``: captum-video methods then explain the
            predicted class of whichever model they see). Default: None
        layers (sequence of str, optional): names of modules to randomise, output first;
            default every module that owns parameters directly, in reverse order of
            registration (for a sequential network: output to input).
        cascading (bool, optional): randomise layers cumulatively (Adebayo's cascading
            test) or one at a time (independent test). Default: True
        absolute (bool, optional): compare magnitudes ``|a|`` (Adebayo et al. report both).
            Default: True
        seed (int, optional): seed of the random weights. Default: 0

    Returns:
        SanityResult: ``(layers, correlation)``; a sound explanation shows correlations
        that fall towards 0 as more layers are randomised. A randomised map that became
        constant (e.g. all zero) counts as 0, a map that did not change at all as 1, and a
        constant original map gives NaN (it has no ranking to compare).

    Example::

        >>> model = load_demo_model("motion")
        >>> explain = lambda x, t: Saliency(model).attribute(x, target=t)
        >>> result = randomization_sanity(explain, model, clips, target=labels)
        >>> result.layers[0], result.correlation.shape
        ('fc', torch.Size([5, 4]))
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not callable(explain):
        raise TypeError(
            f"explain must be a callable explain(inputs, target), got {type(explain).__name__}"
        )
    validate_video(inputs, model=model)
    validate_target(target)
    names = list(layers) if layers is not None else _parametrised_layers(model)
    modules = dict(model.named_modules())
    missing = [name for name in names if name not in modules]
    if missing:
        raise ValueError(
            f"layers {missing} are not modules of the model; known: "
            f"{[n for n in modules if n][:20]}"
        )
    if not names:
        raise ValueError("the model has no layers with parameters to randomise")
    saved = {
        name: [p.detach().clone() for p in modules[name].parameters(recurse=False)]
        for name in names
    }
    generator = torch.Generator().manual_seed(seed)
    correlations = []
    try:
        with torch.no_grad():
            reference = _flat(explain(inputs, target), absolute)
        for name in names:
            if not cascading:
                _restore(modules, saved)
            with torch.no_grad():
                for param in modules[name].parameters(recurse=False):
                    param.copy_(_random_like(param, generator))
            randomised = _flat(explain(inputs, target), absolute)
            correlations.append(_sanity_correlation(reference, randomised))
    finally:
        _restore(modules, saved)
    return SanityResult(names, torch.stack(correlations))


def spearman_correlation(a: Tensor, b: Tensor) -> Tensor:
    r"""Spearman rank correlation per row of two ``(N, M)`` tensors, with average ranks on ties.

    Tied values get the mean of their ranks (as ``scipy.stats.spearmanr``), which matters for
    maps with many equal values (zeros after a ReLU). A constant row has no ranking: NaN.

    Args:
        a (Tensor): ``(N, M)``.
        b (Tensor): ``(N, M)``.

    Returns:
        Tensor: ``(N,)`` correlations in ``[-1, 1]``.

    Example::

        >>> spearman_correlation(torch.tensor([[1., 2., 3.]]), torch.tensor([[1., 5., 9.]]))
        tensor([1.])
    """
    validate_finite(a, "a")
    validate_finite(b, "b")
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(
            f"a and b must be two (N, M) tensors of one shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )
    ra, rb = _average_ranks(a), _average_ranks(b)
    ra = ra - ra.mean(1, keepdim=True)
    rb = rb - rb.mean(1, keepdim=True)
    denom = (ra.square().sum(1) * rb.square().sum(1)).sqrt()
    return (ra * rb).sum(1) / denom  # 0/0 -> NaN for a constant row


def _sanity_correlation(reference: Tensor, randomised: Tensor) -> Tensor:
    """Spearman correlation, with the cases where one map is constant made explicit.

    A randomised map that turned constant (e.g. all zero after Grad-CAM's ReLU) has changed
    completely: 0. A map that stayed identical: 1. A constant reference has no ranking: NaN.
    """
    rho = spearman_correlation(reference, randomised)
    ref_constant = (reference == reference[:, :1]).all(1)
    rand_constant = (randomised == randomised[:, :1]).all(1)
    same = (reference == randomised).all(1)
    rho = torch.where(rand_constant & ~ref_constant, torch.zeros_like(rho), rho)
    return torch.where(same, torch.ones_like(rho), rho)


def _average_ranks(x: Tensor) -> Tensor:
    """Ranks 0..M-1 per row, ties sharing the mean of their ranks; batched, no loops."""
    n, m = x.shape
    values, order = x.double().sort(dim=1, stable=True)
    new_group = torch.ones_like(values, dtype=torch.bool)
    new_group[:, 1:] = values[:, 1:] != values[:, :-1]
    group = new_group.long().cumsum(1) - 1 + torch.arange(n, device=x.device).view(n, 1) * m
    positions = torch.arange(m, device=x.device, dtype=torch.float64).expand(n, m)
    mean_pos = torch.zeros(n * m, device=x.device, dtype=torch.float64).scatter_reduce(
        0, group.flatten(), positions.flatten(), reduce="mean", include_self=False
    )
    sorted_ranks = mean_pos[group]
    return torch.empty_like(sorted_ranks).scatter_(1, order, sorted_ranks).to(x.dtype)


def _flat(attributions: Tensor | tuple[Tensor, ...], absolute: bool) -> Tensor:
    if isinstance(attributions, tuple):
        attributions = torch.cat([a.flatten(1) for a in attributions], 1)
    if not isinstance(attributions, Tensor):
        raise TypeError(f"explain must return a Tensor, got {type(attributions).__name__}")
    flat = validate_finite(attributions.detach(), "explain(inputs, target)").flatten(1).float()
    return flat.abs() if absolute else flat


def _parametrised_layers(model: nn.Module) -> list[str]:
    names = [
        name
        for name, module in model.named_modules()
        if any(True for _ in module.parameters(recurse=False))
    ]
    return names[::-1]


def _random_like(param: Tensor, generator: torch.Generator) -> Tensor:
    flat = param.detach().float()
    std = float(flat.std()) if flat.numel() > 1 else 0.0
    if not std > 0:  # a constant parameter (e.g. zero biases): use its magnitude or a small scale
        std = float(flat.abs().mean()) or 1e-2
    noise = torch.randn(param.shape, generator=generator)
    return (float(flat.mean()) + std * noise).to(device=param.device, dtype=param.dtype)


def _restore(modules: dict[str, nn.Module], saved: dict[str, list[Tensor]]) -> None:
    with torch.no_grad():
        for name, values in saved.items():
            for param, value in zip(modules[name].parameters(recurse=False), values, strict=True):
                param.copy_(value)

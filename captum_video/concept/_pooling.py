"""Pooling of video activations for concept vectors, the TCAV result type and layer names."""

from __future__ import annotations

from typing import Any, Literal

from captum._utils.common import _get_module_from_name
from captum.concept import Concept
from torch import Tensor, nn

__all__ = ["ACT_POOLS", "ActPool", "TCAVScores", "pool_activations"]

ActPool = Literal["none", "spatial", "temporal", "both"]
#: Activation poolings of VideoTCAV's ``act_pool``: ``"none"`` (flatten ``(K, T', H', W')``),
#: ``"spatial"`` (mean over H', W'), ``"temporal"`` (mean over T') or ``"both"``.
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

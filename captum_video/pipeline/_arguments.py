"""The arguments of :func:`~captum_video.pipeline.explain_dataset`, checked and resolved:
the data set and its batching, the methods (and what identifies each, for the run key), the
explained layer's name, and the preprocessing."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from captum_video.explainers import EXPLAINERS, make_explainer
from captum_video.io import video_preprocessor
from captum_video.pipeline.identity import layer_name, method_identity
from captum_video.pipeline.run import Explain
from captum_video.registry import default_layer

__all__ = ["layer_identity", "resolve_methods", "resolve_preprocess", "unpack_data"]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def unpack_data(
    data: Dataset | DataLoader, batch_size: int | None, num_workers: int | None
) -> tuple[Dataset, int, int]:
    """The map-style data set, batch size and worker count (a DataLoader gives defaults)."""
    if isinstance(data, DataLoader):
        batch_size = batch_size if batch_size is not None else data.batch_size
        num_workers = num_workers if num_workers is not None else data.num_workers
        data = data.dataset
    if isinstance(data, IterableDataset) or not hasattr(data, "__getitem__"):
        raise TypeError(
            "explain_dataset needs a map-style data set (with __len__ and __getitem__) so it "
            f"can shard and resume by clip index, got {type(data).__name__}"
        )
    if not hasattr(data, "__len__"):
        raise TypeError(f"the data set must have a length, got {type(data).__name__}")
    batch_size = 8 if batch_size is None else int(batch_size)
    num_workers = 0 if num_workers is None else int(num_workers)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    return data, batch_size, num_workers


def resolve_methods(
    methods: str | Sequence[str] | Mapping[str, Explain | Mapping[str, Any]],
    model: nn.Module,
    layer: nn.Module | None,
    max_memory: int | str | None,
) -> tuple[dict[str, Explain], dict[str, dict[str, Any]]]:
    """The explain functions by name, and what identifies each (its part of the run key)."""
    if isinstance(methods, str):
        methods = [methods]
    if isinstance(methods, Mapping):
        specs = list(methods.items())
    else:
        specs = []
        for name in methods:
            if not isinstance(name, str):
                raise TypeError(
                    f"methods must be names or a mapping name -> callable, got {name!r}"
                )
            specs.append((name, {}))
    if not specs:
        raise ValueError("methods is empty; give at least one method")
    explainers: dict[str, Explain] = {}
    identities: dict[str, dict[str, Any]] = {}
    for name, spec in specs:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"method names must match [A-Za-z0-9_-]+, got {name!r}")
        if isinstance(spec, Mapping):  # a registry method, with attribute keywords
            explainers[name] = make_explainer(name, model, layer, max_memory=max_memory, **spec)
            # Neither max_memory nor the chunk keyword changes results (they only split the
            # work into passes), so neither is part of the run's key.
            entry = EXPLAINERS[name]
            options = {**entry.kwargs, **spec}
            options.pop(getattr(entry, "chunk_keyword", None) or "", None)
            identities[name] = method_identity(name, name, options)
        elif callable(spec):
            explainers[name] = spec
            identities[name] = method_identity(name, spec)
        else:
            raise TypeError(f"method {name!r} must be callable, got {type(spec).__name__}")
    return explainers, identities


def layer_identity(
    model: nn.Module, layer: nn.Module | None, identities: Mapping[str, Mapping[str, Any]]
) -> str | None:
    """The explained layer's name in the model (the registry's default when none is given)."""
    if layer is not None:
        return layer_name(model, layer)
    registry = [m["registry"] for m in identities.values() if "registry" in m]
    if any(EXPLAINERS[name].layer_method for name in registry):
        return default_layer(model)[0]  # make_explainer found it already: no new error here
    return None


def resolve_preprocess(
    preprocess: str | Callable[[Tensor], Tensor] | None,
) -> Callable[[Tensor], Tensor]:
    """The pipeline's ``preprocess``: a preset name, None or a callable (no ``"auto"``: the
    run records the name it was given)."""
    if isinstance(preprocess, str) and preprocess == "auto":
        raise ValueError("pass the normalisation preset by name (e.g. 'kinetics') or None")
    return video_preprocessor(preprocess)

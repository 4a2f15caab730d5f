"""Captum's TracIn object behind each ``method`` of :class:`~captum_video.influence.VideoTracIn`.

One place knows how each method is built and what it accepts: ``"fast"`` is
``TracInCPFast``, ``"full"`` is ``TracInCP`` and ``"fast_rand_proj"`` is
``TracInCPFastRandProj`` with exact neighbours (:class:`ExactNearestNeighbors`: Captum's
default needs the ``annoy`` package and is approximate). ``TracInCPFastRandProj`` has no
self-influence (Captum raises ``NotImplementedError`` and points to ``TracInCPFast``, whose
self-influence needs no stored embeddings), so that method gets a ``TracInCPFast`` over the
same copy, layer, clips and checkpoints for :meth:`VideoTracIn.self_influence`: exact, never
projected.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, TypeAlias

import torch
from captum.influence import TracInCP, TracInCPFast, TracInCPFastRandProj
from torch import nn
from torch.utils.data import Dataset

from captum_video.influence.neighbors import ExactNearestNeighbors

__all__ = ["METHODS", "CaptumTracIn", "build_tracin", "query_kwargs"]

#: ``method`` values of :class:`VideoTracIn`: Captum's TracInCPFast, TracInCP and
#: TracInCPFastRandProj (with exact neighbours).
METHODS = ("fast", "full", "fast_rand_proj")

#: The methods that trace the gradient of the last linear layer (``final_fc_layer``).
LAST_LAYER_METHODS = ("fast", "fast_rand_proj")

CaptumTracIn: TypeAlias = TracInCPFast | TracInCP


def build_tracin(
    method: str,
    model: nn.Module,
    dataset: Dataset,
    checkpoints: list[str],
    load: Callable[[nn.Module, Any], float],
    batch_size: int,
    layer: nn.Module | None = None,
    layer_names: list[str] | None = None,
    projection_dim: int | None = None,
    seed: int = 0,
) -> tuple[CaptumTracIn, CaptumTracIn]:
    """Captum's object for ``method`` and the one that computes its self-influence.

    Args:
        method (str): one of :data:`METHODS`.
        model (nn.Module): the copy checkpoints load into.
        dataset (Dataset): ``(clip, label)`` items on the model's device.
        checkpoints (list of str): checkpoint files.
        load (callable): ``load(model, checkpoint) -> learning_rate``.
        batch_size (int): training clips per batch.
        layer (nn.Module, optional): the last linear layer (``fast``, ``fast_rand_proj``).
        layer_names (list of str, optional): the layers of ``full``.
        projection_dim (int, optional): ``fast_rand_proj``: Captum's ``projection_dim``.
        seed (int, optional): ``fast_rand_proj``: the seed of the random projection.

    Returns:
        tuple: ``(tracin, self_influence_tracin)``, the same object except for
        ``fast_rand_proj``.

    Example::

        >>> tracin, for_self = build_tracin("fast", model, data, paths, load, 32, layer=model.fc)
    """
    if method == "full":
        full = TracInCP(
            model,
            dataset,
            checkpoints,
            checkpoints_load_func=load,
            layers=layer_names,
            loss_fn=nn.CrossEntropyLoss(reduction="none"),
            batch_size=batch_size,
            sample_wise_grads_per_batch=False,
        )
        return full, full
    assert layer is not None
    # Summed, not averaged: TracIn's scores are of single clips, and Captum's fast methods
    # read the reduction to undo it.
    common: dict[str, Any] = {
        "checkpoints_load_func": load,
        "loss_fn": nn.CrossEntropyLoss(reduction="sum"),
        "batch_size": batch_size,
    }
    fast = TracInCPFast(model, layer, dataset, checkpoints, **common)
    if method == "fast":
        return fast, fast
    # Captum seeds the global generator (torch.manual_seed) before drawing the projection: a
    # forked generator keeps the caller's random state as it was.
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if cuda else []):
        with warnings.catch_warnings():
            # Its warning that the embeddings of all training clips stay in memory is the
            # point of the method (VideoTracIn's docstring gives their size).
            warnings.filterwarnings("ignore", message=r"WARNING: Using this implementation")
            rand_proj = TracInCPFastRandProj(
                model,
                layer,
                dataset,
                checkpoints,
                nearest_neighbors=ExactNearestNeighbors(),
                projection_dim=projection_dim,
                seed=seed,
                **common,
            )
    return rand_proj, fast


def query_kwargs(tracin: CaptumTracIn, show_progress: bool) -> dict[str, Any]:
    """Keyword arguments of ``tracin.influence``: RandProj's has no progress bar (a query
    reads no training clip).

    Args:
        tracin: a Captum TracIn object.
        show_progress (bool): whether to show Captum's progress bar.

    Returns:
        dict: ``{"show_progress": show_progress}``, or ``{}`` for TracInCPFastRandProj.

    Example::

        >>> tracin.influence(batch, k=5, **query_kwargs(tracin, False))
    """
    return {} if isinstance(tracin, TracInCPFastRandProj) else {"show_progress": show_progress}

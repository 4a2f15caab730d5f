"""Chunking a batch so that one pass of an attribution method fits a memory budget.

Memory is bounded by a budget (``make_explainer(..., max_memory="2GiB")``; by default a share
of the device's memory, :func:`captum_video._memory.default_budget`): every method works on
*rows* (clips, motion-removed clips, integration steps, occluded copies), a row costs about
``memory_factor`` activation volumes of one clip (:func:`captum_video._memory.activation_bytes`,
a probe forward cached per model and clip shape), and the explainer chooses how many clips go
into one call of the method and how many rows into one pass (``internal_batch_size``,
``perturbations_per_eval``) so that a pass fits the budget. Chunking never changes a clip's
relevance beyond floating-point rounding: the methods that are split treat clips
independently, and those that do not (``temporal_mask``) are not split.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from captum_video._memory import activation_bytes, chunk_size, format_bytes
from captum_video._scalars import validate_positive_int
from captum_video._validation import validate_video

if TYPE_CHECKING:
    from captum_video.explainers import MethodEntry

__all__ = ["plan_chunks", "rows_of"]


def plan_chunks(
    entry: MethodEntry,
    model: nn.Module,
    clips: Tensor,
    budget: int,
    options: Mapping[str, Any],
    explicit: Mapping[str, Any] = MappingProxyType({}),
) -> tuple[int, dict[str, Any], str]:
    """Clips per call and ``attribute`` keywords that keep one pass of ``entry`` in ``budget``.

    A row costs ``entry.memory_factor`` times one clip's activation memory plus the clip;
    ``rows = (budget - entry.parameter_copies x parameter bytes) // row`` (at least 1) rows
    fit in a pass. Then: clips per call ``min(N, rows)``; ``internal_batch_size = rows``
    (clips per call at most that, since Captum's IntegratedGradients evaluates at least one
    step of every clip at once); ``perturbations_per_eval = rows // clips per call``. A value
    of the chunk keyword in ``explicit`` (the caller's) is kept, and the clips per call fit
    around it; the entry's own value caps the budget's. Methods that are not
    :attr:`~MethodEntry.per_clip` get the whole batch.

    Args:
        entry (MethodEntry): the method.
        model (nn.Module): its model, for :func:`~captum_video._memory.activation_bytes`.
        clips (Tensor): the batch ``(N, C, T, H, W)``.
        budget (int): bytes.
        options (mapping): ``attribute`` keywords (the entry's, updated by the caller's).
        explicit (mapping, optional): the caller's keywords. Default: none

    Returns:
        tuple: ``(clips per call, keywords, note)``; ``note`` is ``""`` or says why the budget
        cannot be kept.

    Example::

        >>> from captum_video.explainers import EXPLAINERS
        >>> from captum_video.models import load_demo_model
        >>> entry = EXPLAINERS["integrated_gradients"]
        >>> clips = torch.rand(4, 3, 16, 32, 32)
        >>> plan_chunks(entry, load_demo_model(), clips, 1, entry.kwargs)[:2]
        (1, {'n_steps': 16, 'internal_batch_size': 1})
    """
    validate_video(clips, name="clips", model=model)
    validate_positive_int(budget, "budget", minimum=0)
    n = clips.shape[0]
    clip_bytes = clips[:1].nelement() * clips.element_size()
    row = entry.memory_factor * (activation_bytes(model, clips) + clip_bytes)
    fixed = entry.parameter_copies * sum(
        p.nelement() * p.element_size() for p in model.parameters()
    )
    rows = chunk_size(row, max(budget - int(fixed), 0))
    opts = dict(options)
    key = entry.chunk_keyword
    per_call = min(n, rows)
    if key is not None and key in explicit:
        value = explicit[key]
        if key == "perturbations_per_eval" and isinstance(value, int) and value > 0:
            per_call = max(1, min(n, rows // value))
    elif key is not None:
        cap = entry.kwargs.get(key)
        if key == "perturbations_per_eval":
            opts[key] = max(1, rows // per_call)
        else:
            opts[key] = rows
            per_call = min(per_call, cap) if cap is not None else per_call
        if cap is not None:
            opts[key] = min(opts[key], cap)
    note = ""
    if not entry.per_clip:
        if n * row + fixed > budget:
            note = (
                f"its clips are explained together (a clip's result depends on the others "
                f"of its batch), needing about {format_bytes(n * row + fixed)} for {n} clips, "
                f"more than the memory budget of {format_bytes(budget)}; pass fewer clips"
            )
        per_call = n
    elif row + fixed > budget:
        note = (
            f"one clip needs about {format_bytes(row + fixed)}, more than the memory budget of "
            f"{format_bytes(budget)}; running one clip (and one step or perturbation) at a time"
        )
    return per_call, opts, note


def rows_of(target: Any, part: slice, n: int) -> Any:
    """The targets of the clips ``part`` of a batch of ``n`` (a shared target stays as it is).

    Args:
        target (Any): a Captum target: an int, a tuple, a list or a tensor, per clip or shared.
        part (slice): the clips of one call.
        n (int): the clips in the batch.

    Returns:
        Any: the targets of ``part`` (``target`` itself when it is shared by all clips).

    Example::

        >>> rows_of(torch.tensor([3, 1, 2]), slice(0, 2), 3)
        tensor([3, 1])
    """
    if isinstance(target, Tensor) and target.dim() > 0 and target.shape[0] == n:
        return target[part]
    if isinstance(target, list) and len(target) == n:
        return target[part]
    return target

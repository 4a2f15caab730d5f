r"""How much of a decision each input stream carries (two-stream and other multi-input models).

A two-stream network (Simonyan and Zisserman 2014, "Two-Stream Convolutional Networks for
Action Recognition in Videos") reads an RGB clip and its optical flow; whether a decision rests
on appearance or on motion is then a question about the streams. Two measures answer it:

* :func:`stream_relevance_shares`: the share of an explanation's relevance mass that falls on
  each input of a tuple, :math:`s_i = \|R_i\| / \sum_j \|R_j\|` (absolute or positive mass;
  any method that returns one attribution per input: Captum's Saliency, IntegratedGradients,
  DeepLift, :class:`~captum_video.attr.DeepTaylor3D`, one class activation tube per stream
  layer, :class:`~captum_video.attr.SelectiveRelevance` ...);
* :func:`stream_ablation`: what the score loses when a stream is replaced by a reference
  (zeros: black frames and no motion; or the stream's mean): the leave-one-out *drop* of each
  stream and the exact *Shapley value* of each stream as a player of the coalition game
  :math:`v(S) = f(x_S, b_{\bar S})` (Shapley 1953, "A Value for n-Person Games"; one forward
  pass per coalition, :math:`2^S` in all), which splits :math:`f(x) - f(b)` between the
  streams exactly.

The first describes an explanation, the second the model's behaviour; they agree when the
explanation is faithful to the streams.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import torch
from captum._utils.common import _format_additional_forward_args, _run_forward, _select_targets
from torch import Tensor

from captum_video._model_state import eval_mode_for
from captum_video._targets import one_score_per_example, resolve_target
from captum_video._validation import validate_finite

__all__ = ["StreamAblation", "stream_ablation", "stream_relevance_shares"]

#: The most streams :func:`stream_ablation` takes (``2**S`` forward passes).
MAX_STREAMS = 8

_MODES = ("absolute", "positive")
_REDUCTIONS = ("sum", "mean")
_REPLACEMENTS = ("zero", "mean")


def _stream_tuple(value: Any, name: str) -> tuple[Tensor, ...]:
    """``value`` as a tuple of at least two batch-first tensors with one batch size."""
    if not isinstance(value, (tuple, list)) or len(value) < 2:
        got = f"a {type(value).__name__}" if not isinstance(value, (tuple, list)) else len(value)
        raise TypeError(
            f"{name} must be a tuple with one tensor per stream (at least two, e.g. the "
            f"(rgb, flow) attributions of a two-stream model), got {got}"
        )
    for i, tensor in enumerate(value):
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{name}[{i}] must be a Tensor, got {type(tensor).__name__}")
        if tensor.dim() < 1 or tensor.numel() == 0:
            raise ValueError(f"{name}[{i}] must be batch-first (N, ...), got {tuple(tensor.shape)}")
        if not tensor.is_floating_point():
            raise TypeError(f"{name}[{i}] must be floating-point, got dtype {tensor.dtype}")
        if tensor.shape[0] != value[0].shape[0]:
            raise ValueError(
                f"{name}[{i}] holds {tensor.shape[0]} examples but {name}[0] holds "
                f"{value[0].shape[0]}; pass the attributions of one batch"
            )
    return tuple(value)


def stream_relevance_shares(
    attributions: tuple[Tensor, ...],
    mode: Literal["absolute", "positive"] = "absolute",
    reduction: Literal["sum", "mean"] = "sum",
) -> Tensor:
    r"""Share of each stream in an explanation's relevance mass, per example.

    For example ``n`` and stream ``i`` with attribution :math:`R_i`:

    .. math::

        m_i = \sum_v |R_{i,v}| \ (\text{absolute}) \quad\text{or}\quad
        m_i = \sum_v \max(R_{i,v}, 0) \ (\text{positive}), \qquad
        s_i = m_i \Big/ \sum_j m_j

    ``reduction="mean"`` divides each :math:`m_i` by the number of values of :math:`R_i`
    first: for maps whose *mean* is the stream's contribution (the raw layer maps of
    :class:`~captum_video.attr.SaliencyTube`, where :math:`\mathrm{mean}(M_c) + b_c = y_c`).
    Input-space attributions (Saliency, IntegratedGradients, DeepTaylor3D) and Grad-CAM layer
    maps (their sum is the stream's contribution for a pooled linear head) take ``"sum"``.
    Streams of different shapes (RGB ``(N, 3, T, H, W)`` and flow ``(N, 2, T, H, W)``, or
    layer maps of different resolutions) are fine: only masses are compared.

    Args:
        attributions (tuple of Tensor): one attribution per stream, each ``(N, ...)``.
        mode (str, optional): ``"absolute"`` or ``"positive"`` mass. Default: ``"absolute"``
        reduction (str, optional): ``"sum"`` or ``"mean"`` of each stream's mass.
            Default: ``"sum"``

    Returns:
        Tensor: ``(N, S)`` shares, each row summing to 1, in the first attribution's dtype and
        device; a row is NaN (with a warning) for an example with no relevance in any stream.

    Raises:
        TypeError: not a tuple of at least two floating-point tensors.
        ValueError: batch sizes differ, NaN / inf values, or unknown ``mode`` / ``reduction``.

    Example::

        >>> rgb, flow = torch.ones(2, 3, 4, 8, 8), 3 * torch.ones(2, 2, 4, 8, 8)
        >>> stream_relevance_shares((rgb, flow))
        tensor([[0.3333, 0.6667],
                [0.3333, 0.6667]])
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    streams = _stream_tuple(attributions, "attributions")
    masses = []
    for i, attr in enumerate(streams):
        validate_finite(attr, f"attributions[{i}]")
        values = attr.detach().flatten(1).to(streams[0].dtype).to(streams[0].device)
        values = values.abs() if mode == "absolute" else values.clamp(min=0)
        masses.append(values.sum(1) if reduction == "sum" else values.mean(1))
    mass = torch.stack(masses, dim=1)  # (N, S)
    total = mass.sum(1, keepdim=True)
    empty = total[:, 0] <= 0
    if bool(empty.any()):
        warnings.warn(
            f"{int(empty.sum())} example(s) have no {mode} relevance in any stream; their "
            "shares are NaN",
            UserWarning,
            stacklevel=2,
        )
    return torch.where(total > 0, mass / total.clamp_min(torch.finfo(mass.dtype).tiny), math.nan)


class StreamAblation(NamedTuple):
    r"""What :func:`stream_ablation` measured, per example ``(N, ...)``.

    * ``score``: the target score of the real inputs ``f(x)``, ``(N,)``;
    * ``reference_score``: the score with every stream replaced, ``f(b)``, ``(N,)``;
    * ``drop``: ``f(x) - f(x with stream i replaced)``, ``(N, S)``;
    * ``drop_share``: the positive drops normalised to sum to 1, ``(N, S)`` (NaN where no
      stream's removal lowers the score);
    * ``shapley``: each stream's exact Shapley value, ``(N, S)``; a row sums to
      ``score - reference_score``;
    * ``shapley_share``: the positive Shapley values normalised to sum to 1, ``(N, S)`` (NaN
      where none is positive).
    """

    score: Tensor
    reference_score: Tensor
    drop: Tensor
    drop_share: Tensor
    shapley: Tensor
    shapley_share: Tensor


def _references(
    inputs: tuple[Tensor, ...], replace: str | tuple[Tensor | float, ...]
) -> tuple[Tensor, ...]:
    """The reference each stream is replaced by, broadcast to its shape."""
    if isinstance(replace, str):
        if replace not in _REPLACEMENTS:
            raise ValueError(
                f"replace must be one of {_REPLACEMENTS} or a tuple with one reference per "
                f"stream, got {replace!r}"
            )
        if replace == "zero":
            return tuple(torch.zeros_like(x) for x in inputs)
        # Each example's per-channel mean over all other axes: a flat clip of its mean colour,
        # a uniform flow field of its mean motion ((N, F) features: the mean feature).
        refs = []
        for i, x in enumerate(inputs):
            if x.dim() < 2:
                raise ValueError(
                    f"replace='mean' needs inputs[{i}] with axes to average over, got shape "
                    f"{tuple(x.shape)}; pass replace='zero' or a tuple of references"
                )
            dims = tuple(range(2, x.dim())) if x.dim() > 2 else (1,)
            refs.append(x.mean(dim=dims, keepdim=True).expand_as(x))
        return tuple(refs)
    if not isinstance(replace, (tuple, list)) or len(replace) != len(inputs):
        raise ValueError(
            f"replace must be 'zero', 'mean' or a tuple of {len(inputs)} references (one per "
            f"stream), got {type(replace).__name__}"
        )
    refs = []
    for i, (ref, x) in enumerate(zip(replace, inputs, strict=True)):
        ref_t = torch.as_tensor(ref, dtype=x.dtype, device=x.device)
        try:
            refs.append(ref_t.expand_as(x))
        except RuntimeError:
            raise ValueError(
                f"replace[{i}] of shape {tuple(ref_t.shape)} does not broadcast to inputs[{i}] "
                f"of shape {tuple(x.shape)}"
            ) from None
        validate_finite(refs[-1], f"replace[{i}]")
    return tuple(refs)


def _positive_share(values: Tensor) -> Tensor:
    positive = values.clamp(min=0)
    total = positive.sum(1, keepdim=True)
    return torch.where(
        total > 0, positive / total.clamp_min(torch.finfo(values.dtype).tiny), math.nan
    )


@eval_mode_for("forward_func")
@torch.no_grad()
def stream_ablation(
    forward_func: Callable[..., Tensor],
    inputs: tuple[Tensor, ...],
    target: Any = None,
    additional_forward_args: Any = None,
    replace: Literal["zero", "mean"] | tuple[Tensor | float, ...] = "zero",
) -> StreamAblation:
    r"""Each stream's share of the target score, by replacing streams with a reference.

    With :math:`f` the target score, :math:`x = (x_1, \dots, x_S)` the streams and
    :math:`b` their references, :math:`v(C) = f(x_C, b_{\bar C})` is the score with only the
    streams in coalition :math:`C` present. Then

    .. math::

        \mathrm{drop}_i = v(\{1..S\}) - v(\{1..S\} \setminus \{i\}), \qquad
        \phi_i = \sum_{C \not\ni i} \frac{|C|!\,(S-|C|-1)!}{S!}\,
                 \big(v(C \cup \{i\}) - v(C)\big)

    (Shapley 1953); :math:`\sum_i \phi_i = f(x) - f(b)`. For two streams,
    :math:`\phi_\text{rgb} = \tfrac12[(f(x) - f(b_\text{rgb}, x_\text{flow})) +
    (f(x_\text{rgb}, b_\text{flow}) - f(b))]`. A late-fusion model that adds its streams'
    logits gives :math:`\phi_i = \mathrm{drop}_i` = stream ``i``'s logit minus its logit on
    the reference. Cost: :math:`2^S` forward passes of the batch, no backward.

    ``target=None`` explains each example's predicted class on the real inputs. A model in
    train mode runs in eval mode (with a warning) and gets its mode back; the caller's tensors
    are not changed.

    Args:
        forward_func (nn.Module or callable): the model, ``forward_func(*inputs)`` gives
            ``(N, classes)`` scores.
        inputs (tuple of Tensor): one tensor per stream (at least two, at most
            ``MAX_STREAMS`` (8)), batch-first, e.g. ``(rgb, flow)``.
        target (int, list or Tensor, optional): class per example, as in Captum; ``None``:
            the predicted class. Default: None
        additional_forward_args (Any, optional): extra model arguments. Default: None
        replace (str or tuple, optional): the reference of a removed stream: ``"zero"``
            (black frames, no motion), ``"mean"`` (each example's per-channel mean over the
            stream's other axes: a flat clip of the mean colour, a uniform flow) or a tuple
            with one tensor or number per stream that broadcasts to it. Default: ``"zero"``

    Returns:
        StreamAblation: ``score``, ``reference_score``, ``drop``, ``drop_share``,
        ``shapley`` and ``shapley_share``, on the inputs' device.

    Raises:
        TypeError: ``inputs`` is not a tuple of floating-point tensors, or a bad ``target``
            type.
        ValueError: more than ``MAX_STREAMS`` (8) streams, batch sizes differ, NaN / inf
            inputs, a ``target`` out of range, or a bad ``replace``.

    Example::

        >>> from captum_video.models import load_demo_model, two_stream_inputs
        >>> from captum_video.datasets import MovingShapes
        >>> model = load_demo_model("two_stream_motion")
        >>> clips, _, _ = MovingShapes("motion", num_samples=2, seed=9).tensors()
        >>> result = stream_ablation(model, two_stream_inputs(clips))
        >>> result.shapley.shape
        torch.Size([2, 2])
    """
    streams = _stream_tuple(inputs, "inputs")
    if len(streams) > MAX_STREAMS:
        raise ValueError(
            f"inputs has {len(streams)} streams; stream_ablation runs 2**S forward passes and "
            f"takes at most {MAX_STREAMS}"
        )
    for i, x in enumerate(streams):
        validate_finite(x, f"inputs[{i}]")
    refs = _references(streams, replace)
    extra = _format_additional_forward_args(additional_forward_args)
    n, s = int(streams[0].shape[0]), len(streams)

    output = _run_forward(forward_func, streams, None, extra)
    if not isinstance(output, Tensor):
        raise TypeError(f"the model must return a tensor of scores, got {type(output).__name__}")
    target = resolve_target(output, target)

    def score(present: tuple[int, ...]) -> Tensor:
        mixed = tuple(
            x if i in present else r for i, (x, r) in enumerate(zip(streams, refs, strict=True))
        )
        out = _run_forward(forward_func, mixed, None, extra)
        return one_score_per_example(_select_targets(out, target), n)

    values = {
        present: score(present)
        for size in range(s + 1)
        for present in itertools.combinations(range(s), size)
    }
    everything = tuple(range(s))
    full = values[everything]
    drop = torch.stack(
        [full - values[tuple(j for j in everything if j != i)] for i in everything], dim=1
    )
    shapley = torch.zeros(n, s, dtype=full.dtype, device=full.device)
    for i in everything:
        others = [j for j in everything if j != i]
        for size in range(s):
            weight = math.factorial(size) * math.factorial(s - size - 1) / math.factorial(s)
            for coalition in itertools.combinations(others, size):
                with_i = tuple(sorted((*coalition, i)))
                shapley[:, i] += weight * (values[with_i] - values[coalition])
    return StreamAblation(
        score=full,
        reference_score=values[()],
        drop=drop,
        drop_share=_positive_share(drop),
        shapley=shapley,
        shapley_share=_positive_share(shapley),
    )

r"""Spatial vs temporal relevance of any attribution method (Hiley et al., 2019).

The relevance of a clip (``joint``) is compared with the relevance of *motion-removed*
versions of it: for every frame ``t`` the clip made of frame ``t`` repeated ``T`` times
(``static="repeat_frame"``), or the first frame repeated (``"repeat_first"``). What the frame's
content earns without any motion is its ``spatial`` relevance; what motion adds on top is its
``temporal`` relevance (``joint - spatial``). After L. Hiley, A. Preece, Y. Hicks, D. Marshall,
H. Taylor, "Discriminating Spatial and Temporal Relevance in Deep Taylor Decompositions for
Explainable Activity Recognition" (IJCAI 2019 XAI workshop, arXiv 1908.01536). The paper does
not say exactly how motion is removed or how the parts are combined, so those choices are
exposed as arguments (see the documentation's *Deep Taylor decomposition* page).

By default every map is first divided by its own total relevance (``normalize="total"``), as
the authors' torchexplain package does by starting every pass from relevance 1 at the target.
Without it the split measures mostly how far the target's score falls once motion
is removed: for a motion classifier the frozen clip's logit is small or negative, so
``joint - spatial`` is large wherever *anything* is relevant. With it the split says where
motion moves the relevance to (positive temporal part) and where from (negative part).
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import torch
from captum._utils.common import (
    ExpansionTypes,
    _expand_additional_forward_args,
    _expand_target,
    _format_additional_forward_args,
    _format_output,
)
from captum._utils.typing import TargetType
from captum.attr._utils.attribution import Attribution
from captum.log import log_usage
from torch import Tensor, nn

from captum_video._memory import activation_bytes, chunk_size, default_budget
from captum_video._model_state import in_eval_mode
from captum_video._targets import target_or_prediction
from captum_video._validation import format_video_inputs

__all__ = ["SpatioTemporalSplit", "SpatioTemporalRelevance"]

_STATIC = ("repeat_frame", "repeat_first")
_COMBINE = ("difference", "positive_difference")
_REDUCE = ("same_index", "temporal_mean")
_NORMALIZE = ("total", None)


class SpatioTemporalRelevance(NamedTuple):
    """Relevance split into ``spatial`` and ``temporal`` parts; ``joint`` is the plain
    relevance of the clip. Each field is input-shaped (a tuple for tuple inputs)."""

    spatial: Any
    temporal: Any
    joint: Any


class SpatioTemporalSplit(Attribution):
    r"""Split the relevance of any Captum attribution method into spatial and temporal parts.

    ``joint = A(x)``. For each motion-removed clip ``x_k`` (all frames equal) the method is run
    again, in chunks of ``internal_batch_size`` motion-removed clips, and
    ``spatial[:, :, t]`` is read from the static clip of frame ``t`` (its frame ``t`` for
    ``reduce="same_index"``, its mean over frames for ``"temporal_mean"``) as soon as its
    chunk is computed.
    ``temporal = joint - spatial`` (``"positive_difference"`` keeps only what motion adds).
    A motion-removed clip that equals the input (a clip with no motion at all) is not
    recomputed: its relevance *is* ``joint``, so the temporal part of a static clip is exactly
    zero.

    With ``normalize="total"`` (the default) each motion-removed clip's relevance is rescaled
    to the joint's total before the two are compared,
    ``spatial = static * sum(joint) / sum(static)`` (sums over the whole clip, and over all
    inputs for tuple inputs), so ``spatial + temporal = joint`` and, for methods whose maps
    have one sign, ``temporal`` sums to about zero: its positive part is the relevance motion
    brings to a place, its negative part the relevance motion takes from a place. For deep
    Taylor this is the authors' split (every pass of their torchexplain code starts from
    relevance 1 at the target) times the clip's total relevance.
    ``normalize=None`` subtracts the raw maps (their January 2019 prototype, which starts
    every pass from the target's logit). A map's total is summed in float64, so it does not
    depend on the chunk it was computed in.

    **Cost.** ``T + 1`` passes of the wrapped method per clip (``"repeat_first"``: 2), so the
    time grows as ``T**2`` frames. Memory does not: only one chunk of motion-removed clips
    and its relevance are held at a time, plus the joint, spatial and temporal maps; no
    ``(N, T, C, T, H, W)`` tensor is ever built. With ``internal_batch_size <= N`` the peak
    is **1.17 x one pass of the wrapped method on the N clips**, at any ``T`` (``DeepTaylor3D``
    on the demo model, 32 x 32 frames, split / one pass: 3.9 / 3.4 MiB at T = 16, 15.8 / 13.5
    at 64, 63 / 54 at 256 for one clip; the same 1.17 for two). A larger
    ``internal_batch_size`` adds about one pass per ``N`` more clips; the default chooses it
    from a memory budget (see :meth:`attribute`).

    Args:
        attribution_method (Attribution): any Captum attribution object (``DeepTaylor3D``,
            ``Saliency``, ``IntegratedGradients``, ...) whose output is input-shaped.
        static (str, optional): ``"repeat_frame"`` (T static clips, one per frame) or
            ``"repeat_first"`` (one clip of the first frame). Default: ``"repeat_frame"``
        combine (str, optional): ``"difference"`` or ``"positive_difference"``.
            Default: ``"difference"``
        reduce (str, optional): ``"same_index"`` or ``"temporal_mean"``.
            Default: ``"same_index"``
        normalize (str or None, optional): ``"total"`` or ``None`` (see above). ``"total"``
            suits maps of one sign whose total is the evidence for the target:
            ``DeepTaylor3D`` and other LRP rules with z+/z^B, ``Saliency``, CAMs. For signed
            methods (``IntegratedGradients``, ``InputXGradient``, ``Occlusion``) a total can be
            near zero; use ``None`` there (a warning says when a map's total is less than
            half its absolute mass). Default: ``"total"``

    Returns:
        An attribution object whose :meth:`attribute` returns a
        :class:`SpatioTemporalRelevance` ``(spatial, temporal, joint)``.

    Example::

        >>> from captum_video.attr import DeepTaylor3D
        >>> from captum_video.models import load_demo_model
        >>> split = SpatioTemporalSplit(DeepTaylor3D(load_demo_model("motion")))
        >>> parts = split.attribute(torch.rand(1, 3, 16, 32, 32), target=0)
        >>> parts.temporal.shape
        torch.Size([1, 3, 16, 32, 32])
    """

    def __init__(
        self,
        attribution_method: Attribution,
        static: str = "repeat_frame",
        combine: str = "difference",
        reduce: str = "same_index",
        normalize: str | None = "total",
    ) -> None:
        if not isinstance(attribution_method, Attribution):
            raise TypeError(
                "attribution_method must be a Captum Attribution object, got "
                f"{type(attribution_method).__name__}"
            )
        for arg, value, allowed in (
            ("static", static, _STATIC),
            ("combine", combine, _COMBINE),
            ("reduce", reduce, _REDUCE),
            ("normalize", normalize, _NORMALIZE),
        ):
            if value not in allowed:
                raise ValueError(f"{arg} must be one of {allowed}, got {value!r}")
        super().__init__(attribution_method.forward_func)
        self.attribution_method = attribution_method
        self.static = static
        self.combine = combine
        self.reduce = reduce
        self.normalize = normalize

    @property
    def multiplies_by_inputs(self) -> bool:
        return self.attribution_method.multiplies_by_inputs

    def has_convergence_delta(self) -> bool:
        return False

    @log_usage(part_of_slo=True)
    @in_eval_mode
    def attribute(  # type: ignore[override]
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: TargetType = None,
        additional_forward_args: Any = None,
        internal_batch_size: int | None = None,
        **kwargs: Any,
    ) -> SpatioTemporalRelevance:
        r"""Relevance of the clip and of its motion-removed versions, split in two.

        A model in train mode runs in eval mode for the call (with a warning; each module's
        mode is restored afterwards), so its BatchNorm statistics never change.

        Args:
            inputs (Tensor or tuple of Tensor): clips ``(N, C, T, H, W)``; with a tuple, every
                tensor must be a clip with the same ``T`` (e.g. RGB and flow streams).
            target (int, tuple, Tensor or list, optional): as in Captum; ``None`` explains
                each clip's predicted class (on the real clip, for every pass). Default: None
            additional_forward_args (Any, optional): extra model arguments. Default: None
            internal_batch_size (int, optional): most motion-removed clips per call of the
                wrapped method. Memory grows with it (``python -m benchmarks.lrp --full
                --split`` on a 2-core CPU, r3d_18 at 16x112x112: 4.3 GiB for all 16 at once
                vs 0.55 GiB one at a time, same speed; at 8x56x56 all at once is 2.5x
                faster; the demo model at 64 frames takes 1.6x the CPU time with 4 per call
                as with 16 or more). None: as many as fit in
                :func:`~captum_video._memory.default_budget` of the input's device, at an
                assumed 4 activation volumes each
                (:func:`~captum_video._memory.activation_bytes` of the wrapped method's model,
                when it is an ``nn.Module`` called with one clip), and never fewer than the
                ``N`` clips of the joint pass (exactly ``N`` for other forward functions).
                The demo model at 256 frames: 8 per call, peak 462 MiB. Default: None
            **kwargs: passed on to the wrapped method's ``attribute`` (a ``baselines`` tensor
                with one row per example is expanded to the static clips).

        Returns:
            SpatioTemporalRelevance: ``(spatial, temporal, joint)``, each shaped like
            ``inputs`` (tuples for tuple inputs).

        Example::

            >>> from captum.attr import Saliency
            >>> split = SpatioTemporalSplit(Saliency(model), static="repeat_first")
            >>> spatial, temporal, joint = split.attribute(clips, target=labels)
        """
        if kwargs.get("return_convergence_delta"):
            raise ValueError("SpatioTemporalSplit does not return convergence deltas")
        if internal_batch_size is not None and (
            not isinstance(internal_batch_size, int) or internal_batch_size < 1
        ):
            raise ValueError(
                f"internal_batch_size must be a positive int, got {internal_batch_size!r}"
            )
        is_tuple, clips = format_video_inputs(inputs, all_videos=True, model=self.forward_func)
        additional = _format_additional_forward_args(additional_forward_args)
        # Every pass explains the class of the real clip, not that of a motion-removed one.
        target = target_or_prediction(self.forward_func, clips, additional, target)
        joint = self._run(clips, is_tuple, target, additional, kwargs)
        n, t = clips[0].shape[0], clips[0].shape[2]
        k = 1 if self.static == "repeat_first" else t  # motion-removed clips per clip
        # A motion-removed clip equals the input exactly when all the input's frames are
        # equal (then all of its static clips do): its relevance *is* the joint relevance.
        still = torch.ones(n, dtype=torch.bool, device=clips[0].device)
        for clip in clips:
            still &= (clip == clip[:, :, :1]).flatten(1).all(1).to(still.device)
        reduction = _SpatialReduction(joint, still, k, self.reduce, self.normalize)
        # Row n * k + j is static clip j of clip n; each chunk of rows is built, explained
        # and reduced before the next, so no (N, K, C, T, H, W) tensor ever exists.
        rows = (~still).repeat_interleave(k).nonzero().flatten()
        chunk = internal_batch_size or _default_chunk(self.forward_func, clips, additional, n)
        for start in range(0, len(rows), chunk):
            sel = rows[start : start + chunk]
            batch = tuple(_static_rows(clip, sel, k) for clip in clips)
            sub_kwargs = self._select_rows(kwargs, n, k, sel)
            sub_target = _select_target_rows(target, n, k, sel)
            sub_args = _select_arg_rows(additional, n, k, sel)
            out = self._run(batch, True, sub_target, sub_args, sub_kwargs)
            del batch  # the chunk's clips go before its relevance is reduced
            reduction.add(sel, out)
            del out
        spatial = reduction.result()
        temporal = tuple(j - s for j, s in zip(joint, spatial, strict=True))
        if self.combine == "positive_difference":
            temporal = tuple(t.clamp(min=0) for t in temporal)
        return SpatioTemporalRelevance(
            _format_output(is_tuple, spatial),
            _format_output(is_tuple, temporal),
            _format_output(is_tuple, joint),
        )

    def _run(
        self, clips: tuple[Tensor, ...], as_tuple: bool, target: TargetType, args: Any, kwargs: dict
    ) -> tuple[Tensor, ...]:
        inputs = clips if as_tuple else clips[0]
        out = self.attribution_method.attribute(
            inputs, target=target, additional_forward_args=args, **kwargs
        )
        out = out if isinstance(out, tuple) else (out,)
        for rel, clip in zip(out, clips, strict=False):
            if not isinstance(rel, Tensor) or rel.shape != clip.shape:
                raise ValueError(
                    f"{type(self.attribution_method).__name__} must return input-shaped "
                    f"attributions for SpatioTemporalSplit, got "
                    f"{getattr(rel, 'shape', type(rel).__name__)} for input {tuple(clip.shape)}"
                )
        return tuple(out[: len(clips)])

    @staticmethod
    def _select_rows(kwargs: dict, n: int, k: int, sel: Tensor) -> dict:
        baselines = kwargs.get("baselines")
        if baselines is None:
            return kwargs

        def expand(b: Any) -> Any:
            if isinstance(b, Tensor) and b.dim() > 0 and b.shape[0] == n and n > 1:
                return b[torch.div(sel, k, rounding_mode="floor").to(b.device)]
            return b

        new = dict(kwargs)
        new["baselines"] = (
            tuple(map(expand, baselines)) if isinstance(baselines, tuple) else expand(baselines)
        )
        return new


#: Assumed peak of one motion-removed clip's pass, in activation volumes of the model (one
#: clip's leaf-module outputs plus the clip): DeepTaylor3D measured 1.0-1.7, Saliency 0.7
#: (``python -m benchmarks.memory --factors``); 4 leaves room for other wrapped methods.
_ROW_FACTOR = 4.0


def _default_chunk(forward_func: Any, clips: tuple[Tensor, ...], additional: Any, n: int) -> int:
    """Motion-removed clips per call when the caller gives no ``internal_batch_size``: as
    many as fit in :func:`~captum_video._memory.default_budget` by
    :func:`~captum_video._memory.activation_bytes` (for a model called with one clip), and
    at least ``n``, the clips of the joint pass, so a call is never smaller than that."""
    if not isinstance(forward_func, nn.Module) or len(clips) > 1 or additional is not None:
        return n
    clip = clips[0]
    volume = activation_bytes(forward_func, clip) + clip[:1].nelement() * clip.element_size()
    return max(n, chunk_size(_ROW_FACTOR * volume, default_budget(clip.device)))


def _static_rows(clip: Tensor, sel: Tensor, k: int) -> Tensor:
    """Motion-removed clips of rows ``sel``: row ``n * k + j`` is frame ``j`` of clip ``n``
    repeated ``T`` times (``k == 1``: frame 0), ``(len(sel), C, T, H, W)``."""
    sel = sel.to(clip.device)
    frames = clip[torch.div(sel, k, rounding_mode="floor"), :, sel % k]  # (B, C, H, W)
    return frames[:, :, None].expand(-1, -1, clip.shape[2], -1, -1).contiguous()


def _totals(maps: Any) -> tuple[Tensor, Tensor]:
    """Per map ``(B, ...)``: its total and its absolute mass, summed over a tuple's inputs.

    Summed in float64 (float32 where there is none), so a map's total does not depend on
    the other maps of its chunk (a float32 sum's rounding can depend on how the reduction is
    split over threads, which depends on the number of maps).
    """
    acc = torch.float32 if maps[0].device.type == "mps" else torch.float64
    total = sum(m.flatten(1).sum(1, dtype=acc) for m in maps)
    mass = sum(m.abs().flatten(1).sum(1, dtype=acc) for m in maps)
    return total, mass  # type: ignore[return-value]


def _check_totals(total: Tensor) -> None:
    if not bool(torch.isfinite(total).all()) or bool((total == 0).any()):
        raise ValueError(
            "normalize='total' needs every relevance map to have a finite non-zero total; "
            "a map of the clip or of a motion-removed clip sums to zero (or is not finite). "
            "Use normalize=None for this method or input."
        )


class _SpatialReduction:
    """The spatial part, built chunk by chunk from the motion-removed clips' relevance.

    A chunk of static maps ``(B, C, T, H, W)`` is rescaled (``normalize="total"``: a map's
    total is known as soon as the map is) and reduced at once to what the spatial part keeps
    of it: frame ``j`` of static clip ``j`` (``"same_index"``; the whole map for
    ``"repeat_first"``) or its mean over frames (``"temporal_mean"``). Only one chunk of maps
    is held at a time, never all ``N x K`` of them. Clips without motion (``still``) keep the
    joint relevance, reduced the same way (its rescaling factor is exactly 1).
    """

    def __init__(
        self,
        joint: tuple[Tensor, ...],
        still: Tensor,
        k: int,
        reduce: str,
        normalize: str | None,
    ) -> None:
        self.k, self.reduce, self.normalize = k, reduce, normalize
        if reduce == "temporal_mean":
            self.spatial = [j.mean(dim=2, keepdim=True).expand_as(j).clone() for j in joint]
        else:
            self.spatial = [j.clone() for j in joint]
        self.ill_conditioned = False
        if normalize == "total":
            self.joint_total, mass = _totals(joint)  # (N,)
            _check_totals(self.joint_total)
            self.ill_conditioned = bool((self.joint_total.abs() < 0.5 * mass).any())

    def add(self, sel: Tensor, out: tuple[Tensor, ...]) -> None:
        """Fold the relevance ``out`` of rows ``sel`` (``(B, C, T, H, W)`` each) in."""
        clip = torch.div(sel, self.k, rounding_mode="floor")
        frame = sel % self.k
        parts = [o.to(s.dtype) for o, s in zip(out, self.spatial, strict=True)]
        factor = None
        if self.normalize == "total":
            total, mass = _totals(parts)  # (B,)
            _check_totals(total)
            self.ill_conditioned |= bool((total.abs() < 0.5 * mass).any())
            factor = self.joint_total[clip.to(total.device)] / total
        for spatial, part in zip(self.spatial, parts, strict=True):
            rows, frames = clip.to(part.device), frame.to(part.device)
            scale = None if factor is None else factor.to(part.device, part.dtype)
            if self.reduce == "temporal_mean":
                if scale is not None:
                    part = part * scale.view(-1, 1, 1, 1, 1)
                kept = part.mean(dim=2)  # (B, C, H, W)
                if self.k == 1:  # repeat_first: the one static clip serves every frame
                    spatial[rows] = kept[:, :, None].expand(-1, -1, spatial.shape[2], -1, -1)
                else:
                    spatial[rows, :, frames] = kept
            elif self.k == 1:
                spatial[rows] = part if scale is None else part * scale.view(-1, 1, 1, 1, 1)
            else:
                kept = part[torch.arange(len(rows), device=part.device), :, frames]
                spatial[rows, :, frames] = kept if scale is None else kept * scale.view(-1, 1, 1, 1)

    def result(self) -> tuple[Tensor, ...]:
        if self.ill_conditioned:
            warnings.warn(
                "normalize='total': a relevance map's total is less than half its absolute "
                "mass (positive and negative relevance cancel), so rescaling by it is "
                "ill-conditioned; consider normalize=None for signed methods",
                stacklevel=3,
            )
        return tuple(self.spatial)


def _select_target_rows(target: TargetType, n: int, k: int, sel: Tensor) -> TargetType:
    expanded = _expand_target(target, k, expansion_type=ExpansionTypes.repeat_interleave)
    if isinstance(expanded, list) and len(expanded) == n * k:
        return [expanded[i] for i in sel.tolist()]
    if isinstance(expanded, Tensor) and expanded.numel() == n * k and n * k > 1:
        return expanded.reshape(n * k)[sel.to(expanded.device)]
    return expanded


def _select_arg_rows(args: Any, n: int, k: int, sel: Tensor) -> Any:
    """Additional forward arguments of rows ``sel``: tensors with a row per clip give the row
    of each static clip's clip (as repeating them ``k`` times and selecting would, without
    the ``N * K`` copy); other arguments are expanded as Captum expands them."""
    if args is None:
        return None
    clip = torch.div(sel, k, rounding_mode="floor")
    return tuple(
        a[clip.to(a.device)]
        if isinstance(a, Tensor) and a.dim() > 0 and a.shape[0] == n
        else _expand_additional_forward_args((a,), k, ExpansionTypes.repeat_interleave)[0]
        for a in args
    )

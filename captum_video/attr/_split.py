r"""Spatial vs temporal relevance of any attribution method (Hiley et al., 2019).

The relevance of a clip (``joint``) is compared with the relevance of *motion-removed*
versions of it: for every frame ``t`` the clip made of frame ``t`` repeated ``T`` times
(``static="repeat_frame"``), or the first frame repeated (``"repeat_first"``). What the frame's
content earns without any motion is its ``spatial`` relevance; what motion adds on top is its
``temporal`` relevance (``joint - spatial``). See ``shared/docs/methods.md`` section 4.3, whose
choices are exposed as arguments.

By default every map is first divided by its own total relevance (``normalize="total"``), as
the authors' torchexplain package does by starting every pass from relevance 1 at the target
(spec 4.2). Without it the split measures mostly how far the target's score falls once motion
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
from torch import Tensor

from captum_video._validation import format_video_inputs, target_or_prediction

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
    again, all of them in one batched call (or chunks of ``internal_batch_size`` clips), and
    ``spatial[:, :, t]`` is read from the static clip of frame ``t`` (its frame ``t`` for
    ``reduce="same_index"``, its mean over frames for ``"temporal_mean"``).
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
    Taylor this is the authors' split (every pass of their code starts from relevance 1 at the
    target, ``shared/docs/methods.md`` 4.2) times the clip's total relevance.
    ``normalize=None`` subtracts the raw maps (their January 2019 prototype, which starts
    every pass from the target's logit).

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

    def _static_clips(self, clip: Tensor) -> Tensor:
        """``(N, K, C, T, H, W)``: clip k is frame k (or frame 0) repeated T times."""
        frames = clip.transpose(1, 2)  # (N, T, C, H, W)
        if self.static == "repeat_first":
            frames = frames[:, :1]
        n, k, c, h, w = frames.shape[0], frames.shape[1], frames.shape[2], *frames.shape[3:]
        return frames[:, :, :, None].expand(n, k, c, clip.shape[2], h, w)

    @log_usage(part_of_slo=True)
    def attribute(  # type: ignore[override]
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: TargetType = None,
        additional_forward_args: Any = None,
        internal_batch_size: int | None = None,
        **kwargs: Any,
    ) -> SpatioTemporalRelevance:
        r"""Relevance of the clip and of its motion-removed versions, split in two.

        Args:
            inputs (Tensor or tuple of Tensor): clips ``(N, C, T, H, W)``; with a tuple, every
                tensor must be a clip with the same ``T`` (e.g. RGB and flow streams).
            target (int, tuple, Tensor or list, optional): as in Captum; ``None`` explains
                each clip's predicted class (on the real clip, for every pass). Default: None
            additional_forward_args (Any, optional): extra model arguments. Default: None
            internal_batch_size (int, optional): most motion-removed clips per call of the
                wrapped method; None runs all of them in one call. Memory grows with it
                (``python -m benchmarks.lrp --full --split`` on a 2-core CPU, r3d_18 at
                16x112x112: 4.3 GiB for all 16 at once vs 0.55 GiB one at a time, same
                speed; at 8x56x56 all at once is 2.5x faster). Default: None
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
        is_tuple, clips = format_video_inputs(inputs, all_videos=True)
        additional = _format_additional_forward_args(additional_forward_args)
        # Every pass explains the class of the real clip, not that of a motion-removed one.
        target = target_or_prediction(self.forward_func, clips, additional, target)
        joint = self._run(clips, is_tuple, target, additional, kwargs)
        n = clips[0].shape[0]
        statics = tuple(self._static_clips(clip) for clip in clips)
        k = statics[0].shape[1]
        # Motion-removed clips equal to the input (no motion at all) take the joint relevance.
        same = torch.ones(n, k, dtype=torch.bool, device=clips[0].device)
        for clip, static in zip(clips, statics, strict=True):
            same &= (static == clip[:, None]).flatten(2).all(2)
        static_rel = [j[:, None].expand(-1, k, *j.shape[1:]).clone() for j in joint]
        rows = (~same).flatten().nonzero().flatten()
        chunk = internal_batch_size or max(len(rows), 1)
        for start in range(0, len(rows), chunk):
            sel = rows[start : start + chunk]
            batch = tuple(s.flatten(0, 1)[sel] for s in statics)
            sub_kwargs = self._select_rows(kwargs, n, k, sel)
            sub_target = _select_target_rows(target, n, k, sel)
            sub_args = _select_arg_rows(additional, n, k, sel)
            out = self._run(batch, True, sub_target, sub_args, sub_kwargs)
            for rel, part in zip(static_rel, out, strict=True):
                rel.view(n * k, *rel.shape[2:])[sel] = part.to(rel.dtype)
        if self.normalize == "total":
            static_rel = _rescale_to_joint_total(static_rel, joint, same)
        spatial = tuple(self._reduce(rel) for rel in static_rel)
        temporal = tuple(j - s for j, s in zip(joint, spatial, strict=True))
        if self.combine == "positive_difference":
            temporal = tuple(t.clamp(min=0) for t in temporal)
        return SpatioTemporalRelevance(
            _format_output(is_tuple, spatial),
            _format_output(is_tuple, temporal),
            _format_output(is_tuple, joint),
        )

    def _reduce(self, rel: Tensor) -> Tensor:
        """``(N, K, C, T, H, W)`` static relevance -> ``(N, C, T, H, W)`` spatial relevance."""
        if self.reduce == "temporal_mean":
            per_clip = rel.mean(dim=3)  # (N, K, C, H, W)
        else:
            index = torch.arange(rel.shape[3], device=rel.device)
            if rel.shape[1] == 1:  # repeat_first: the one static clip serves every frame
                return rel[:, 0]
            per_clip = rel[:, index, :, index]  # (T, N, C, H, W): clip t, frame t
            return per_clip.permute(1, 2, 0, 3, 4)
        if per_clip.shape[1] == 1:
            per_clip = per_clip.expand(-1, rel.shape[3], -1, -1, -1)
        return per_clip.transpose(1, 2)

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
                return b.repeat_interleave(k, dim=0)[sel.to(b.device)]
            return b

        new = dict(kwargs)
        new["baselines"] = (
            tuple(map(expand, baselines)) if isinstance(baselines, tuple) else expand(baselines)
        )
        return new


def _rescale_to_joint_total(
    static_rel: list[Tensor], joint: tuple[Tensor, ...], same: Tensor
) -> list[Tensor]:
    """Scale each motion-removed clip's relevance ``(N, K, ...)`` to the joint's total.

    Clips equal to the input keep their relevance exactly (it *is* the joint relevance).
    """
    n, k = same.shape

    def total(maps: Any, dims: int, absolute: bool = False) -> Tensor:
        """Sum over everything but the first ``dims`` dims, and over the tuple's inputs."""
        parts = [(m.abs() if absolute else m).flatten(dims) for m in maps]
        dtype = torch.promote_types(parts[0].dtype, torch.float32)
        return torch.stack([p.sum(dims, dtype=dtype) for p in parts]).sum(0)

    joint_total, joint_mass = total(joint, 1), total(joint, 1, absolute=True)  # (N,)
    static_total = total(static_rel, 2)  # (N, K)
    static_mass = total(static_rel, 2, absolute=True)
    totals = torch.cat([joint_total, static_total.flatten()])
    if not bool(torch.isfinite(totals).all()) or bool((totals == 0).any()):
        raise ValueError(
            "normalize='total' needs every relevance map to have a finite non-zero total; "
            "a map of the clip or of a motion-removed clip sums to zero (or is not finite). "
            "Use normalize=None for this method or input."
        )
    masses = torch.cat([joint_mass, static_mass.flatten()])
    if bool((totals.abs() < 0.5 * masses).any()):
        warnings.warn(
            "normalize='total': a relevance map's total is less than half its absolute mass "
            "(positive and negative relevance cancel), so rescaling by it is ill-conditioned; "
            "consider normalize=None for signed methods",
            stacklevel=3,
        )
    factor = torch.where(same, torch.ones_like(static_total), joint_total[:, None] / static_total)
    return [r * factor.to(r.dtype).view(n, k, *([1] * (r.dim() - 2))) for r in static_rel]


def _select_target_rows(target: TargetType, n: int, k: int, sel: Tensor) -> TargetType:
    expanded = _expand_target(target, k, expansion_type=ExpansionTypes.repeat_interleave)
    if isinstance(expanded, list) and len(expanded) == n * k:
        return [expanded[i] for i in sel.tolist()]
    if isinstance(expanded, Tensor) and expanded.numel() == n * k and n * k > 1:
        return expanded.reshape(n * k)[sel.to(expanded.device)]
    return expanded


def _select_arg_rows(args: Any, n: int, k: int, sel: Tensor) -> Any:
    expanded = _expand_additional_forward_args(args, k, ExpansionTypes.repeat_interleave)
    if expanded is None:
        return None
    return tuple(
        a[sel.to(a.device)] if isinstance(a, Tensor) and a.dim() > 0 and a.shape[0] == n * k else a
        for a in expanded
    )

r"""Attention rollout for video transformers (Abnar and Zuidema, ACL 2020, "Quantifying
Attention Flow in Transformers")."""

from __future__ import annotations

from typing import Any, Literal

import torch
from captum._utils.common import _format_output
from captum._utils.typing import TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr import Attribution
from captum.log import log_usage
from torch import Tensor, nn

from captum_video._model_state import in_eval_mode
from captum_video._targets import resolve_target
from captum_video.attr._attention import (
    HEAD_FUSIONS,
    fuse_heads,
    prepare,
    readout_row,
    relevance_to_clip,
    run_captured,
)
from captum_video.attr._attention_mixing import skip_left, skip_right, step_left, step_right
from captum_video.registry.attention import AttentionLayout

__all__ = ["AttentionRollout"]


class AttentionRollout(Attribution):
    r"""Attention rollout: how much attention flows from each input token to the prediction.

    With :math:`A_l` the attention probabilities of layer :math:`l` fused over heads (mean by
    default), each layer's residual connection is accounted for by mixing in the identity and
    renormalising rows (Abnar and Zuidema 2020, section 3):

    .. math::
        \hat A_l = D_l^{-1}\,\big(\tfrac12 A_l + \tfrac12 I\big), \qquad
        D_l = \mathrm{diag}\big((\tfrac12 A_l + \tfrac12 I)\,\mathbf 1\big),

    and the rollout is the product :math:`R = \hat A_L \hat A_{L-1} \cdots \hat A_1`. The map
    is the row of :math:`R` of the token the classifier reads (the class token), or the mean
    row for models that average every output token (VideoMAE with mean pooling, Swin),
    without class tokens, reshaped to the token grid ``(T', H', W')`` and up-sampled to the
    clip like the tube methods (trilinear by default). Only that row is computed: a row vector
    is multiplied through the layers from the last to the first, so no ``S x S`` product is
    ever formed.

    **Video structure** comes from the architecture registry
    (:func:`~captum_video.registry.attention.attention_layout`): joint space-time attention
    over tubelets (VideoMAE, ViViT, the demo transformer) is one ``S x S`` matrix per layer;
    divided space-time attention (TimeSformer) gives two steps per layer, the temporal one
    (each patch position over its frames) then the spatial one (each frame, with the class
    token repeated per frame and averaged back), each a block-structured ``S x S`` matrix
    applied blockwise; pooling attention (torchvision MViT) mixes the key / value pooling
    footprint into :math:`A_l` and pools the identity with the query stride; shifted window
    attention (torchvision Swin3D) is block-diagonal over windows and patch merging is a
    uniform footprint; X-CLIP's per-frame message tokens carry their frame's class token and
    the attention across frames' messages. Where the identity is not square (pooled steps)
    :math:`I` is that pooling footprint. See :mod:`captum_video.attr._attention_mixing` for
    the exact matrices.

    **Why** ``Attribution``: rollout reads attention probabilities from a forward pass: it
    takes no gradient (not a ``GradientAttribution``), perturbs nothing (not a
    ``PerturbationAttribution``) and explains the input through many layers at once (not a
    single-layer ``LayerAttribution``), so it derives from Captum's root ``Attribution``,
    whose contract (``attribute``, ``has_convergence_delta``) it keeps. It costs one forward
    pass plus one vector-matrix product per attention step. The map does not depend on the
    class: ``target`` is validated and otherwise ignored.

    Args:
        forward_func (nn.Module): the model, returning ``(N, classes)`` scores (Hugging Face
            models wrapped with :func:`captum_video.registry.adapt`, or loaded with
            :func:`captum_video.registry.load_model`).
        layout (AttentionLayout, optional): the model's attention structure; None asks the
            registry (per clip size). Default: None

    Example::

        >>> from captum_video.models import load_demo_model
        >>> model = load_demo_model("transformer")
        >>> rollout = AttentionRollout(model)
        >>> rollout.attribute(torch.rand(2, 3, 16, 32, 32)).shape
        torch.Size([2, 1, 16, 32, 32])
    """

    def __init__(self, forward_func: nn.Module, layout: AttentionLayout | None = None) -> None:
        Attribution.__init__(self, forward_func)
        self.layout = layout
        self._layouts: dict[tuple[int, ...], AttentionLayout] = {}  # the registry's, per size

    @log_usage(part_of_slo=True)
    @in_eval_mode
    def attribute(  # type: ignore[override]
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Any = None,
        head_fusion: Literal["mean", "max", "min"] = "mean",
        interpolate: bool = True,
        interpolate_mode: str = "trilinear",
    ) -> Tensor | tuple[Tensor, ...]:
        r"""Roll out the attention of each clip.

        A model in train mode runs in eval mode for the call (with a warning; each module's
        mode is restored afterwards), so its BatchNorm statistics never change.

        Args:
            inputs (Tensor or tuple of Tensor): clips ``(N, C, T, H, W)`` (a tuple when the
                model takes several inputs; the first is the clip the tokens come from).
            target (int, list, Tensor or tuple, optional): validated as in Captum but not
                used, since rollout does not depend on the class: ``None`` (meaning each
                clip's predicted class, as everywhere) and any class give the same map.
                Default: None
            additional_forward_args (Any, optional): extra forward arguments. Default: None
            head_fusion (str, optional): how heads are fused: ``"mean"`` (the paper),
                ``"max"`` or ``"min"``. Default: ``"mean"``
            interpolate (bool, optional): up-sample to each input's ``(T, H, W)``; otherwise
                return the token-grid map ``(N, 1, T', H', W')``. Default: True
            interpolate_mode (str, optional): ``"trilinear"``, ``"nearest"`` (each token's
                tubelet gets its value), ``"nearest-exact"`` or ``"area"``.
                Default: ``"trilinear"``

        Returns:
            Tensor or tuple of Tensor: ``(N, 1, T, H, W)`` per input (a tuple for tuple
            inputs; non-video inputs get an empty tensor), or ``(N, 1, T', H', W')`` with
            ``interpolate=False``. Raw rollout values (rows of a row-stochastic product: the
            values over all tokens, class tokens included, sum to 1).

        Example::

            >>> rollout.attribute(clip, interpolate=False).shape    # the demo's token grid
            torch.Size([1, 1, 4, 8, 8])
        """
        if head_fusion not in HEAD_FUSIONS:
            raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
        is_tuple, formatted, layout = prepare(
            self.forward_func, self.layout, inputs, interpolate_mode, self._layouts
        )
        with torch.no_grad():
            output, captured = run_captured(
                self.forward_func, layout, formatted, additional_forward_args
            )
            resolve_target(output, target)  # validated only: the rollout has no class
            n = int(formatted[0].shape[0])
            dtype = torch.promote_types(output.dtype, torch.float32)
            v = readout_row(layout, n, output.new_empty(0, dtype=dtype))
            for step, attention in zip(reversed(layout.steps), reversed(captured), strict=True):
                v = _rollout_step(step, attention, v, head_fusion)
        maps = relevance_to_clip(
            v, layout.tokens, layout.patch, formatted, interpolate, interpolate_mode
        )
        if not interpolate:
            return maps  # type: ignore[return-value]
        return _format_output(is_tuple, maps)  # type: ignore[arg-type]


def _rollout_step(step: Any, attention: Tensor | None, v: Tensor, head_fusion: str) -> Tensor:
    """``v \\hat A`` for one step: ``\\hat A = D^{-1} (A / 2 + K / 2)``, with ``K`` the
    residual path (identity, or a pooling footprint); steps without attention: ``D^{-1} K``."""
    ones = v.new_ones(v.shape[0], step.tokens_in.count)
    if attention is None:
        rows = skip_right(step, ones)
        return skip_left(step, v / rows.clamp_min(1e-12))
    a = fuse_heads(attention, head_fusion).to(v.dtype)
    if head_fusion == "mean" and step.kind in ("joint", "divided_space"):
        rows = ones  # softmax rows sum to 1, so do head means and frame means of class rows
    elif head_fusion == "mean" and step.kind == "divided_time":
        rows = ones.clone()  # class tokens take no part: only their identity half
        rows[:, : step.tokens_in.prefix] = 0.5
    else:
        rows = 0.5 * step_right(step, a, ones) + 0.5 * skip_right(step, ones)
    w = v / rows.clamp_min(1e-12)
    return 0.5 * step_left(step, a, w) + 0.5 * skip_left(step, w)

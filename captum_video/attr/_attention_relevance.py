r"""Gradient-weighted attention relevance for video transformers (Chefer, Gur and Wolf, ICCV
2021, "Generic Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder
Transformers")."""

from __future__ import annotations

from typing import Any

import torch
from captum._utils.common import _format_output, _select_targets
from captum._utils.typing import TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr import GradientAttribution
from captum.log import log_usage
from torch import Tensor, nn

from captum_video._model_state import in_eval_mode
from captum_video._targets import resolve_target
from captum_video.attr._attention import (
    prepare,
    readout_row,
    relevance_to_clip,
    run_captured,
)
from captum_video.attr._attention_mixing import skip_left, step_left
from captum_video.registry.attention import AttentionLayout

__all__ = ["GradientWeightedAttention"]


class GradientWeightedAttention(GradientAttribution):
    r"""Gradient-weighted attention relevance (Chefer et al. 2021): attention rollout where
    each layer's attention is weighted by the target's gradient and its residual kept whole.

    For each attention layer :math:`l` with probabilities :math:`A_l` (per head) and the
    gradient :math:`\nabla A_l = \partial y_c / \partial A_l` of the target score, the
    layer's relevance-weighted attention is the mean over heads of the positive part of their
    product (Chefer et al. 2021, section 3),

    .. math::
        \bar A_l = \mathbb E_h\big[(\nabla A_l \odot A_l)^+\big],

    and, starting from :math:`R = I`, each layer in forward order updates (their rule for
    self-attention)

    .. math::
        R \leftarrow R + \bar A_l\,R,

    so :math:`R = (I + \bar A_L) \cdots (I + \bar A_1)`. The map is the row of :math:`R` of
    the token the classifier reads (the class token; the mean row for heads that average every
    token, such as VideoMAE's), without class tokens, reshaped to the token grid
    ``(T', H', W')`` and up-sampled to the clip. Only that row is computed (a row vector
    through the layers from the last to the first). With every gradient equal to 1 it is
    rollout without the residual halving.

    **Video structure** comes from the architecture registry, as for
    :class:`~captum_video.attr.AttentionRollout`: joint attention (VideoMAE, ViViT, the demo
    transformer), TimeSformer's divided space-time attention as two block-structured updates
    per layer (temporal, then spatial; for the spatial one the class token's per-frame rows
    are summed, since the gradient-times-attention product of its frame-averaged row is the sum
    of the per-frame products), pooled attention (MViT: :math:`\bar A_l` composed with the key
    / value pooling footprint, the identity replaced by the query-stride pooling footprint),
    shifted windows (Swin3D), X-CLIP's cross-frame message tokens. See
    :mod:`captum_video.attr._attention_mixing`.

    Cost: one forward pass recording the graph and one backward from the target scores to the
    attention probabilities (not to the input), plus one vector-matrix product per step.

    Args:
        forward_func (nn.Module): the model, returning ``(N, classes)`` scores (Hugging Face
            models wrapped with :func:`captum_video.registry.adapt`).
        layout (AttentionLayout, optional): the model's attention structure; None asks the
            registry (per clip size). Default: None

    Example::

        >>> from captum_video.models import load_demo_model
        >>> model = load_demo_model("transformer")
        >>> relevance = GradientWeightedAttention(model)
        >>> relevance.attribute(torch.rand(2, 3, 16, 32, 32), target=[0, 3]).shape
        torch.Size([2, 1, 16, 32, 32])
    """

    def __init__(self, forward_func: nn.Module, layout: AttentionLayout | None = None) -> None:
        GradientAttribution.__init__(self, forward_func)
        self.layout = layout
        self._layouts: dict[tuple[int, ...], AttentionLayout] = {}  # the registry's, per size

    @log_usage(part_of_slo=True)
    @in_eval_mode
    def attribute(  # type: ignore[override]
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Any = None,
        interpolate: bool = True,
        interpolate_mode: str = "trilinear",
    ) -> Tensor | tuple[Tensor, ...]:
        r"""Compute the gradient-weighted attention relevance of ``target`` for each clip.

        A model in train mode runs in eval mode for the call (with a warning; each module's
        mode is restored afterwards), so its BatchNorm statistics never change.

        Args:
            inputs (Tensor or tuple of Tensor): clips ``(N, C, T, H, W)`` (a tuple when the
                model takes several inputs; the first is the clip the tokens come from).
            target (int, list, Tensor or tuple, optional): output indices as in Captum;
                ``None`` explains each clip's predicted class (the argmax of the model's
                output). Default: None
            additional_forward_args (Any, optional): extra forward arguments. Default: None
            interpolate (bool, optional): up-sample to each input's ``(T, H, W)``; otherwise
                return the token-grid map ``(N, 1, T', H', W')``. Default: True
            interpolate_mode (str, optional): ``"trilinear"``, ``"nearest"`` (each token's
                tubelet gets its value), ``"nearest-exact"`` or ``"area"``.
                Default: ``"trilinear"``

        Returns:
            Tensor or tuple of Tensor: ``(N, 1, T, H, W)`` per input (a tuple for tuple
            inputs; non-video inputs get an empty tensor), or ``(N, 1, T', H', W')`` with
            ``interpolate=False``. Non-negative, raw (not normalised).

        Example::

            >>> relevance.attribute(clip, target=1, interpolate=False).shape
            torch.Size([1, 1, 4, 8, 8])
        """
        is_tuple, formatted, layout = prepare(
            self.forward_func, self.layout, inputs, interpolate_mode, self._layouts
        )
        # Copies that require grad, so the attention is in a graph even for frozen weights.
        leaves = tuple(
            x.detach().requires_grad_() if x.is_floating_point() else x for x in formatted
        )
        with torch.enable_grad():  # callers such as NoiseTunnel may run us under no_grad
            output, captured = run_captured(
                self.forward_func, layout, leaves, additional_forward_args
            )
            target = resolve_target(output, target)
            scores = _select_targets(output, target)
            probs = [a for a in captured if a is not None]
            if not scores.requires_grad or not all(a.requires_grad for a in probs):
                raise ValueError("the model's output does not depend on its attention")
            grads = torch.autograd.grad(scores.sum(), probs, allow_unused=True)
        with torch.no_grad():
            weighted = iter(
                (g * a).clamp(min=0).mean(1) if g is not None else torch.zeros_like(a).mean(1)
                for a, g in zip(probs, grads, strict=True)
            )
            n = int(formatted[0].shape[0])
            dtype = torch.promote_types(output.dtype, torch.float32)
            v = readout_row(layout, n, output.new_empty(0, dtype=dtype))
            per_step = [next(weighted) if a is not None else None for a in captured]
            for step, bar in zip(reversed(layout.steps), reversed(per_step), strict=True):
                moved = skip_left(step, v)  # R <- K R + bar(A) R, applied to the row v
                if bar is not None:
                    moved = moved + step_left(step, bar.to(v.dtype), v, products=True)
                v = moved
        maps = relevance_to_clip(
            v, layout.tokens, layout.patch, formatted, interpolate, interpolate_mode
        )
        if not interpolate:
            return maps  # type: ignore[return-value]
        return _format_output(is_tuple, maps)  # type: ignore[arg-type]

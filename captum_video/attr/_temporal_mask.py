r"""Temporal masks (Mänttäri et al., ACCV 2020, "Interpreting video features: a comparison of
3D convolutional networks and convolutional LSTM networks"): the smallest, smoothest set of
frames whose freezing (or reversal) destroys the class score.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from captum._utils.common import (
    _format_additional_forward_args,
    _format_output,
    _run_forward,
    _select_targets,
)
from captum._utils.typing import TargetType
from captum.attr import PerturbationAttribution
from captum.log import log_usage
from torch import Tensor

from captum_video._model_state import in_eval_mode
from captum_video._targets import one_score_per_example, resolve_target
from captum_video._validation import format_video_inputs
from captum_video.baselines import freeze, freeze_soft, reverse_masked

__all__ = ["TemporalMask"]


class TemporalMask(PerturbationAttribution):
    r"""Temporal masks of Mänttäri et al. (ACCV 2020): which frames must be frozen (or
    reversed) to destroy the class score?

    A per-frame mask ``m = sigmoid(theta)`` minimises

    .. math::
        L(\theta) = \lambda_1 \sum_t |m_t| + \lambda_2 \,TV(m) + p_c(\mathrm{perturb}(x, m)),
        \quad TV(m) = \Big(\sum_{u=1}^{T-2} |m_{u-1}-m_u|^p + |m_{u+1}-m_u|^p\Big)^{q/p}

    with Adam, where ``perturb`` is :func:`~captum_video.baselines.freeze_soft` or
    :func:`~captum_video.baselines.reverse_masked` and ``p_c`` the softmax score of the
    target. "central" initialisation starts from a full mask and shrinks it symmetrically
    from both ends while ``(p(x) - p(perturb(x, m))) / (p(x) - p(freeze(x))) >= 0.9``, then
    sets ``theta = +5`` on the mask and ``-5`` off it. Clips of a batch are optimised
    together but independently (the loss is a sum of per-clip terms and Adam is
    element-wise). Only ``theta`` is differentiated (``torch.autograd.grad``), so no
    ``.grad`` is left on the model's parameters.

    Args:
        forward_func (Callable): the model, returning ``(N, K)`` logits (or probabilities,
            with ``softmax=False`` in :meth:`attribute`). Put it in eval mode.

    Example::

        >>> mask = TemporalMask(model).attribute(clip, target=label, n_iter=100)
        >>> mask.shape          # (N, T), 1 = the frames whose freezing kills the class
        torch.Size([1, 16])
    """

    def __init__(self, forward_func: Callable[..., Tensor]) -> None:
        PerturbationAttribution.__init__(self, forward_func)

    @log_usage(part_of_slo=True)
    @torch.no_grad()
    @in_eval_mode
    def attribute(  # type: ignore[override]
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: TargetType = None,
        additional_forward_args: Any = None,
        perturbation: Literal["freeze", "reverse"] | Callable[[Tensor, Tensor], Tensor] = "freeze",
        lambda1: float = 0.01,
        lambda2: float = 0.02,
        n_iter: int = 300,
        lr: float = 0.2,
        init: Literal["central", "random"] = "central",
        tol: float = 1e-5,
        p: float = 3.0,
        q: float = 3.0,
        softmax: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor | tuple[Tensor, ...]:
        r"""Optimise a per-frame mask whose perturbation destroys the target score.

        The model's state is left as it was: a model in train mode runs in eval mode for the
        call, with a warning, and every module's mode is restored afterwards, so BatchNorm
        statistics never change; the caller's tensors keep their values and
        ``requires_grad``. Bad input raises a ValueError / TypeError that names the argument.

        Args:
            inputs (Tensor or tuple of Tensor): clips ``(N, C, T, H, W)``; every tensor of a
                tuple must be a video with the same ``T`` and is perturbed with the same mask.
            target (int, Tensor or list, optional): class per clip; ``None`` explains each
                clip's predicted class (the argmax of the model's output). Default: None
            additional_forward_args (Any, optional): extra arguments of ``forward_func``.
                Default: None
            perturbation (str or callable, optional): ``"freeze"`` (soft freeze),
                ``"reverse"`` (masked reverse) or ``f(x, mask (N, T)) -> x'``.
                Default: ``"freeze"``
            lambda1 (float, optional): L1 weight (Something-Something value). Default: 0.01
            lambda2 (float, optional): TV weight. Default: 0.02
            n_iter (int, optional): Adam iterations. Default: 300
            lr (float, optional): Adam learning rate (the authors' PyTorch code). Default: 0.2
            init (str, optional): ``"central"`` or ``"random"`` (about 30 % of frames on,
                drawn from ``generator``). Default: ``"central"``
            tol (float, optional): stop when every clip's loss changes by less. Default: 1e-5
            p (float, optional): TV exponent. Default: 3
            q (float, optional): TV outer exponent. Default: 3
            softmax (bool, optional): apply a softmax over dim 1 to the output. Default: True
            generator (torch.Generator, optional): randomness of ``init="random"``.
                Default: None

        Returns:
            *Tensor* or *tuple[Tensor, ...]* of **masks**:
            - **masks** (*Tensor*): ``(N, T)`` in ``[0, 1]`` on the input's device and dtype
              (for a tuple input, the same mask once per input tensor).

        Example::

            >>> tm = TemporalMask(model)
            >>> mask = tm.attribute(clip, target=label, perturbation="reverse", n_iter=50)
        """
        is_tuple, xs = format_video_inputs(
            inputs, min_frames=2, all_videos=True, model=self.forward_func
        )
        n, t = xs[0].shape[0], xs[0].shape[2]
        perturb = self._perturbation(perturbation)
        if init not in ("central", "random"):
            raise ValueError(f"init must be 'central' or 'random', got {init!r}")
        if not isinstance(n_iter, int) or n_iter < 0:
            raise ValueError(f"n_iter must be a non-negative int, got {n_iter!r}")
        afa = _format_additional_forward_args(additional_forward_args)

        def score(clips: tuple[Tensor, ...], tgt: TargetType) -> Tensor:
            out = _run_forward(self.forward_func, clips, None, afa)
            assert isinstance(out, Tensor)
            if softmax:
                out = out.softmax(1)
            return one_score_per_example(_select_targets(out, tgt), n)

        clean = _run_forward(self.forward_func, xs, None, afa)
        assert isinstance(clean, Tensor)
        if clean.dim() != 2:
            raise ValueError(f"forward_func must return (N, K) scores, got {tuple(clean.shape)}")
        if isinstance(target, tuple):
            raise TypeError("TemporalMask needs one class per clip, not a tuple target")
        target = resolve_target(clean, target)
        if init == "central":
            on = self._central_init(xs, perturb, target, score)
        else:
            device = generator.device if generator is not None else xs[0].device
            on = (torch.rand(n, t, generator=generator, device=device) < 0.3).to(xs[0].device)
        theta = torch.where(on, 5.0, -5.0).to(xs[0].dtype).requires_grad_(True)

        optimiser = torch.optim.Adam([theta], lr=lr)
        previous = None
        for _ in range(n_iter):
            with torch.enable_grad():
                mask = torch.sigmoid(theta)
                loss = (
                    lambda1 * mask.abs().sum(1)
                    + lambda2 * self._tv(mask, p, q)
                    + score(tuple(perturb(x, mask) for x in xs), target)
                )
                (grad,) = torch.autograd.grad(loss.sum(), theta)
            theta.grad = grad
            optimiser.step()
            if previous is not None and bool(((loss - previous).abs() < tol).all()):
                break
            previous = loss.detach()
        result = torch.sigmoid(theta.detach())
        return _format_output(is_tuple, tuple(result for _ in xs))  # type: ignore[return-value]

    @staticmethod
    def _perturbation(
        perturbation: str | Callable[[Tensor, Tensor], Tensor],
    ) -> Callable[[Tensor, Tensor], Tensor]:
        if perturbation == "freeze":
            return freeze_soft
        if perturbation == "reverse":
            return reverse_masked
        if callable(perturbation):
            return perturbation
        raise ValueError(
            f"perturbation must be 'freeze', 'reverse' or a callable, got {perturbation!r}"
        )

    @staticmethod
    def _tv(mask: Tensor, p: float, q: float) -> Tensor:
        """Mänttäri's TV: both neighbours of every interior frame, ``(sum |.|^p)^(q/p)``."""
        diff = (mask[:, 1:] - mask[:, :-1]).abs() ** p
        total = diff[:, :-1].sum(1) + diff[:, 1:].sum(1)
        return total if p == q else total.clamp_min(1e-12) ** (q / p)

    @staticmethod
    def _central_init(
        xs: tuple[Tensor, ...],
        perturb: Callable[[Tensor, Tensor], Tensor],
        target: TargetType,
        score: Callable[[tuple[Tensor, ...], TargetType], Tensor],
    ) -> Tensor:
        """Largest symmetric shrink of a full mask that keeps 90 % of the frozen-clip drop."""
        n, t = xs[0].shape[0], xs[0].shape[2]
        p_clean = score(xs, target)
        drop_static = p_clean - score(tuple(freeze(x) for x in xs), target)
        frames = torch.arange(t, device=xs[0].device)
        shrink = torch.zeros(n, dtype=torch.long, device=xs[0].device)
        holding = drop_static > 0  # no drop to keep: stay with the full mask
        for k in range(1, (t + 1) // 2):
            candidate = ((frames >= k) & (frames < t - k)).to(xs[0].dtype).expand(n, t)
            drop = p_clean - score(tuple(perturb(x, candidate) for x in xs), target)
            holding = holding & (drop >= 0.9 * drop_static)
            if not bool(holding.any()):
                break
            shrink = torch.where(holding, k, shrink)
        return (frames >= shrink[:, None]) & (frames < t - shrink[:, None])

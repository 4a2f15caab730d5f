r"""When does a video model look? Temporal occlusion and temporal masks (methods.md 6.1-6.2).

:class:`TemporalOcclusion` slides a window over time, replaces the frames inside it by a
baseline and records the drop of the model's output; every frame gets the mean drop of the
windows covering it. All windows of one forward pass are built by a single broadcast
``torch.where`` from a ``(windows, T)`` mask, so the cost is the forward passes alone.

:class:`TemporalMask` (Mänttäri et al., ACCV 2020) optimises a soft per-frame mask: the
smallest, smoothest set of frames whose freezing (or reversal) destroys the class score.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from captum._utils.common import (
    _expand_additional_forward_args,
    _expand_target,
    _format_additional_forward_args,
    _format_output,
    _run_forward,
    _select_targets,
)
from captum._utils.progress import progress
from captum._utils.typing import TargetType
from captum.attr import PerturbationAttribution
from captum.log import log_usage
from torch import Tensor

from captum_video._validation import format_video_inputs, validate_target
from captum_video.baselines import freeze, freeze_soft, mean_frame, reverse_masked, spatial_blur

__all__ = ["TemporalOcclusion", "TemporalMask", "frame_curve"]

BaselineSpec = str | float | int | Tensor | Callable[[Tensor], Tensor]
_NAMED_BASELINES = ("freeze", "zero", "mean", "blur")


def frame_curve(attributions: Tensor | tuple[Tensor, ...]) -> Tensor:
    r"""The per-frame curve ``(N, T)`` of an input-shaped temporal attribution.

    :class:`TemporalOcclusion` gives every voxel of a frame the same value, so the mean over
    ``(C, H, W)`` is that value; for other attributions it is the mean relevance per frame.

    Args:
        attributions (Tensor or tuple of Tensor): ``(N, C, T, H, W)``; of a tuple the first.

    Returns:
        Tensor: ``(N, T)``.

    Example::

        >>> attr = TemporalOcclusion(model).attribute(clip, target=0)
        >>> frame_curve(attr).shape
        torch.Size([1, 16])
    """
    attr = attributions[0] if isinstance(attributions, tuple) else attributions
    if not isinstance(attr, Tensor) or attr.dim() != 5:
        raise ValueError(
            "attributions must be a (N, C, T, H, W) tensor, got "
            f"{tuple(attr.shape) if isinstance(attr, Tensor) else type(attr).__name__}"
        )
    return attr.mean(dim=(1, 3, 4))


def _score_per_example(output: Tensor, batch: int) -> Tensor:
    if output.numel() != batch:
        raise ValueError(
            f"forward_func must give one value per example after target selection ({batch}), "
            f"got output of shape {tuple(output.shape)}; pass a class `target` or wrap the model"
        )
    return output.reshape(batch)


class TemporalOcclusion(PerturbationAttribution):
    r"""Occlusion in time: the drop of the model output when a window of frames is replaced.

    For windows ``[s_k, s_k + w)`` with ``s_k = k * stride`` (the last one clipped at ``T``,
    exactly Captum ``Occlusion`` with ``sliding_window_shapes=(C, w, H, W)``), the
    attribution of frame ``t`` is

    .. math::
        a_t = \frac{1}{|K_t|} \sum_{k \in K_t} f(x) - f(x^{(k)})

    where ``K_t`` are the windows covering ``t`` and ``x^{(k)}`` the clip with window ``k``
    replaced by the baseline. The value is spread over every voxel of the frame, so the output
    is input-shaped; :func:`frame_curve` reads the ``(N, T)`` curve back.

    Unlike Captum ``Occlusion``, a batch of windows is one ``torch.where`` of a
    ``(windows, 1, 1, T, 1, 1)`` mask between the clip and the baseline (no per-window masks),
    and the ``"freeze"`` baseline depends on the window (it holds the frame before it).

    Args:
        forward_func (Callable): the model or any function returning ``(N, K)`` scores (or
            ``(N,)``). Wrap it with a softmax to attribute probabilities.

    Example::

        >>> model = load_demo_model("motion")
        >>> occ = TemporalOcclusion(model)
        >>> attr = occ.attribute(clip, window=4, stride=2, target=label)
        >>> curve = occ.frame_curve(attr)   # (N, T): drop per frame
    """

    def __init__(self, forward_func: Callable[..., Tensor]) -> None:
        PerturbationAttribution.__init__(self, forward_func)

    frame_curve = staticmethod(frame_curve)

    @torch.no_grad()
    @log_usage(part_of_slo=True)
    def attribute(  # type: ignore[override]
        self,
        inputs: Tensor | tuple[Tensor, ...],
        window: int = 4,
        stride: int = 1,
        baselines: BaselineSpec | tuple[BaselineSpec, ...] = "freeze",
        target: TargetType = None,
        additional_forward_args: Any = None,
        perturbations_per_eval: int = 1,
        show_progress: bool = False,
    ) -> Tensor | tuple[Tensor, ...]:
        r"""
        Args:
            inputs (Tensor or tuple of Tensor): clips ``(N, C, T, H, W)``; a tuple may hold
                several streams with the same ``T`` (e.g. RGB and flow), which are occluded
                in the same frames.
            window (int, optional): frames per window, ``1 <= window <= T``. Default: 4
            stride (int, optional): step between windows, ``1 <= stride <= window``.
                Default: 1
            baselines (str, number, Tensor or callable, optional): what replaces the frames
                of a window: ``"freeze"`` (the frame before the window, or the frame after it
                for a window at the start), ``"zero"``, ``"mean"`` (the clip's temporal mean
                frame), ``"blur"`` (the same frames spatially blurred), a number, a tensor
                that broadcasts to the input, or a callable ``x -> x'`` returning an
                input-shaped baseline (e.g. :func:`captum_video.baselines.shuffle`). A tuple
                gives one per input tensor. Default: ``"freeze"``
            target (int, tuple, Tensor or list, optional): output indices to attribute, as in
                every Captum method (one per example or one for all). Default: None
            additional_forward_args (Any, optional): extra arguments of ``forward_func``,
                after the inputs; tensors with a batch dimension are repeated per window.
                Default: None
            perturbations_per_eval (int, optional): windows evaluated in one forward pass;
                memory grows with it, not with the number of windows. Default: 1
            show_progress (bool, optional): show a progress bar. Default: False

        Returns:
            *Tensor* or *tuple[Tensor, ...]* of **attributions**:
            - **attributions** (*Tensor* or *tuple[Tensor, ...]*): input-shaped, constant over
              ``(C, H, W)`` of each frame, on the input's device and dtype.

        Example::

            >>> occ = TemporalOcclusion(model)
            >>> attr = occ.attribute(clip, window=2, stride=1, baselines="zero",
            ...                      target=0, perturbations_per_eval=8)
            >>> attr.shape == clip.shape
            True
        """
        is_tuple, xs = format_video_inputs(inputs, all_videos=True)
        n, t = xs[0].shape[0], xs[0].shape[2]
        if not isinstance(window, int) or not 1 <= window <= t:
            raise ValueError(
                f"window must be an int in [1, {t}] (the clip's frames), got {window!r}"
            )
        if not isinstance(stride, int) or stride < 1 or (stride > window and window < t):
            raise ValueError(f"stride must be an int in [1, window={window}], got {stride!r}")
        if not isinstance(perturbations_per_eval, int) or perturbations_per_eval < 1:
            raise ValueError(
                f"perturbations_per_eval must be a positive int, got {perturbations_per_eval!r}"
            )
        specs = baselines if isinstance(baselines, tuple) else (baselines,) * len(xs)
        if len(specs) != len(xs):
            raise ValueError(f"got {len(specs)} baselines for {len(xs)} input tensors")
        if window == t and any(isinstance(s, str) and s == "freeze" for s in specs):
            raise ValueError("baselines='freeze' needs a frame outside the window; use window < T")
        fills = tuple(self._fill(x, s) for x, s in zip(xs, specs, strict=True))
        afa = _format_additional_forward_args(additional_forward_args)

        initial = _run_forward(self.forward_func, xs, None, afa)
        assert isinstance(initial, Tensor)
        if initial.dim() >= 2 and isinstance(target, (int, list, Tensor)):
            validate_target(target, int(initial.shape[1]), n)
        initial = _score_per_example(_select_targets(initial, target), n)

        # Windows exactly as Captum's Occlusion: starts k * stride, the last one clipped.
        count = math.ceil((t - window) / stride) + 1
        device = xs[0].device
        starts = torch.arange(count, device=device) * stride
        stops = (starts + window).clamp_max(t)
        frames = torch.arange(t, device=device)
        cover = (frames >= starts[:, None]) & (frames < stops[:, None])  # (windows, T)
        src = torch.where(starts > 0, starts - 1, stops.clamp_max(t - 1))  # freeze source

        drops = torch.empty(count, n, device=device, dtype=initial.dtype)
        chunks = range(0, count, perturbations_per_eval)
        if show_progress:
            chunks = progress(chunks, desc="TemporalOcclusion", total=len(chunks))  # type: ignore[assignment]
        for first in chunks:
            sel = slice(first, min(first + perturbations_per_eval, count))
            k = sel.stop - sel.start
            batch = tuple(
                self._occlude(x, fill, cover[sel], src[sel])
                for x, fill in zip(xs, fills, strict=True)
            )
            out = _run_forward(
                self.forward_func,
                batch,
                _expand_target(target, k),
                _expand_additional_forward_args(afa, k),
            )
            assert isinstance(out, Tensor)
            drops[sel] = initial.unsqueeze(0) - _score_per_example(out, k * n).view(k, n)

        weights = cover.to(drops.dtype)
        curve = (drops.t() @ weights) / weights.sum(0).clamp_min(1)  # (N, T)
        attrs = tuple(curve.to(x.dtype).view(n, 1, t, 1, 1).expand_as(x).contiguous() for x in xs)
        return _format_output(is_tuple, attrs)  # type: ignore[return-value]

    @staticmethod
    def _fill(x: Tensor, spec: BaselineSpec) -> Tensor | None:
        """The window-independent baseline clip, or None for the window-dependent freeze."""
        if isinstance(spec, str):
            if spec == "freeze":
                return None
            if spec == "zero":
                return torch.zeros((), dtype=x.dtype, device=x.device)
            if spec == "mean":
                return mean_frame(x)
            if spec == "blur":
                return spatial_blur(x)
            raise ValueError(
                f"baselines must be one of {_NAMED_BASELINES}, a number, a tensor or a "
                f"callable, got {spec!r}"
            )
        if isinstance(spec, (int, float)):
            return torch.tensor(float(spec), dtype=x.dtype, device=x.device)
        if isinstance(spec, Tensor):
            fill = spec.to(device=x.device, dtype=x.dtype)
        elif callable(spec):
            fill = spec(x)
            if not isinstance(fill, Tensor):
                raise TypeError(f"a callable baseline must return a tensor, got {type(fill)}")
        else:
            raise TypeError(f"unsupported baseline type {type(spec).__name__}")
        try:
            shape = torch.broadcast_shapes(fill.shape, x.shape)
        except RuntimeError:
            shape = None
        if shape != x.shape:
            raise ValueError(
                f"baseline of shape {tuple(fill.shape)} does not broadcast to the input "
                f"{tuple(x.shape)}"
            )
        return fill

    @staticmethod
    def _occlude(x: Tensor, fill: Tensor | None, cover: Tensor, src: Tensor) -> Tensor:
        """``k`` occluded copies of ``x`` as one ``(k * N, C, T, H, W)`` batch."""
        k, t = cover.shape
        if fill is None:  # freeze: window j holds frame src[j]
            fill = x.index_select(2, src).permute(2, 0, 1, 3, 4).unsqueeze(3)  # (k,N,C,1,H,W)
        inside = cover.view(k, 1, 1, t, 1, 1)
        return torch.where(inside, fill, x.unsqueeze(0)).reshape(k * x.shape[0], *x.shape[1:])


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

    @torch.no_grad()
    @log_usage(part_of_slo=True)
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
        r"""
        Args:
            inputs (Tensor or tuple of Tensor): clips ``(N, C, T, H, W)``; every tensor of a
                tuple must be a video with the same ``T`` and is perturbed with the same mask.
            target (int, Tensor or list, optional): class per clip; None takes the predicted
                class of the clean clip. Default: None
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
        is_tuple, xs = format_video_inputs(inputs, min_frames=2, all_videos=True)
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
            return _score_per_example(_select_targets(out, tgt), n)

        clean = _run_forward(self.forward_func, xs, None, afa)
        assert isinstance(clean, Tensor)
        if clean.dim() != 2:
            raise ValueError(f"forward_func must return (N, K) scores, got {tuple(clean.shape)}")
        if target is None:
            target = clean.argmax(1)
        elif isinstance(target, tuple):
            raise TypeError("TemporalMask needs one class per clip, not a tuple target")
        validate_target(target, int(clean.shape[1]), n)
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

r"""Activation maximisation of a video model's unit, optimised as a moving clip.

:class:`ClipVisualization` finds a clip that makes one unit large: a class logit, a channel of
a layer (its mean over space and time) or one neuron (a channel at one ``(t, h, w)``
position). It is feature visualisation (Erhan, Bengio, Courville and Vincent 2009,
"Visualizing Higher-Layer Features of a Deep Network"; Simonyan, Vedaldi and Zisserman 2014,
"Deep Inside Convolutional Networks"; Olah, Mordvintsev and Schubert 2017, "Feature
Visualization", Distill) carried over to space-time, as done for I3D features and DeepDraw on
video (surveyed by Hiley, Preece and Hicks 2019, "Explainable Deep Learning for Video
Recognition Tasks: A Framework & Recommendations", section 2.1):

.. math::

    x^\star = \sigma\big(M \mathcal{F}^{-1}[s \odot z^\star]\big), \qquad
    z^\star = \arg\max_z \; \mathbb{E}_{\tau}\big[a(\tau(x(z)))\big]
    - \lambda_s \mathrm{TV}_s(x(z)) - \lambda_t \mathrm{TV}_t(x(z)),

with the clip parametrised by its decorrelated space-time spectrum
(:class:`~captum_video.units.FourierClip`), ``tau`` random spatial jitter, zoom and time
shifts (:mod:`~captum_video.units.transforms`) and total-variation penalties over space and
time (:mod:`~captum_video.units.penalties`), maximised with Adam.

The defaults were chosen on the bundled demo models, one setting for every class and seed:
64 steps, ``lr=0.05``, ``decay_power=2``, no colour decorrelation, ``spatial_tv=0.2``,
``temporal_tv=0.4`` (relative to the unit's size), jitter 2 px, zoom 0.95-1.05, time shift up
to 4 frames. With them the clip for each direction class of the motion model moves in that
direction (its mean optical flow is 0.8-1.2 px/frame along the class's axis, the class's way)
and the clip for each colour class of the appearance model has that colour as its dominant
hue, for seeds 0, 1 and 2 (the documentation page "Unit visualisation as moving clips" has the
numbers and the ablations).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
from captum.log import log_usage
from torch import Tensor

from captum_video._model_state import in_eval_mode
from captum_video._scalars import validate_positive_int
from captum_video._validation import model_min_frames, validate_video
from captum_video.units._objective import LayerSpec, UnitReader, channel_count
from captum_video.units.parametrization import FourierClip, check_clip_size, check_float
from captum_video.units.penalties import spatial_total_variation, temporal_total_variation
from captum_video.units.transforms import ClipTransform, apply_transforms, standard_transforms

__all__ = ["ClipVisualization"]


class ClipVisualization:
    r"""Clips that maximise a class logit, a channel or a neuron of a 3-D video model.

    Every call optimises ``N`` clips at once, one per unit, each from its own random spectrum
    (drawn from ``seed``). The caller's model is run in eval mode (with a warning if it was
    in train mode) and is left exactly as it was: no gradient is accumulated in its
    parameters, no BatchNorm statistic moves, no hook is left behind.

    Args:
        model (nn.Module or callable): the model, taking clips ``(N, 3, T, H, W)`` (after
            ``preprocess``) and returning logits ``(N, K)``. Layer units need an
            ``nn.Module``.
        preprocess (callable, optional): applied to the ``[0, 1]`` clips right before the
            model, e.g. the mean/std normalisation a torchvision model expects. Default: None

    Example::

        >>> model = load_demo_model("motion")
        >>> vis = ClipVisualization(model)
        >>> clips = vis.optimize(target=[0, 1, 2, 3], n_steps=64, seed=0)
        >>> clips.shape
        torch.Size([4, 3, 16, 32, 32])
        >>> grid = vis.optimize_layer("layer1", n_steps=16)   # every channel of layer1
        >>> grid.shape
        torch.Size([16, 3, 16, 32, 32])
    """

    def __init__(
        self, model: Callable[..., Any], preprocess: Callable[[Tensor], Tensor] | None = None
    ) -> None:
        if not callable(model):
            raise TypeError(f"model must be an nn.Module or a callable, got {type(model).__name__}")
        if preprocess is not None and not callable(preprocess):
            raise TypeError(f"preprocess must be callable or None, got {type(preprocess).__name__}")
        self.model = model
        self.preprocess = preprocess
        self._reader = UnitReader(model, preprocess)

    @log_usage(part_of_slo=True)
    @in_eval_mode
    def optimize(
        self,
        target: int | Sequence[int] | Tensor | None = None,
        layer: LayerSpec | None = None,
        channel: int | Sequence[int] | None = None,
        neuron: Sequence[int] | None = None,
        n_steps: int = 64,
        lr: float = 0.05,
        seed: int = 0,
        clip_size: tuple[int, int, int] = (16, 32, 32),
        transforms: Sequence[ClipTransform] | None = None,
        spatial_tv: float = 0.2,
        temporal_tv: float = 0.4,
        decay_power: float = 2.0,
        time_weight: float = 1.0,
        decorrelate: bool = False,
    ) -> Tensor:
        r"""Optimise one clip per unit.

        Give either ``target`` (class logits) or ``layer`` with ``channel`` (and optionally
        ``neuron``).

        Args:
            target (int, sequence of int or 1-D Tensor, optional): class indices; one clip per
                entry maximises that logit. Default: None
            layer (str or nn.Module, optional): the layer, by its name in
                ``model.named_modules()`` (``"layer3"``, ``"layer3.conv"``) or the module
                itself. Its output must be ``(N, C, T, H, W)``, ``(N, C)`` or tokens
                ``(N, S, D)`` (then ``channel`` indexes ``D``). Default: None
            channel (int or sequence of int, optional): channel(s) of ``layer``; one clip per
                entry. Without ``neuron`` the objective is the channel's mean over all
                positions. Default: None
            neuron (sequence of int, optional): a position in the layer's output grid,
                ``(t, h, w)`` for a 5-D output or ``(s,)`` for tokens; the objective is then
                that one activation of each channel. Default: None
            n_steps (int, optional): Adam steps. Default: 64
            lr (float, optional): Adam learning rate on the spectrum. Default: 0.05
            seed (int, optional): seeds the initial spectrum and every random transform, so
                a call repeats exactly on the same device. Default: 0
            clip_size (tuple of int, optional): ``(T, H, W)`` of the clips. Default:
                ``(16, 32, 32)``, the demo models' input
            transforms (sequence of callable, optional): robustness transforms
                ``(clips, generator) -> clips``; None uses
                :func:`~captum_video.units.standard_transforms` (jitter 2 px, zoom
                0.95-1.05, time shift up to 4 frames); ``[]`` turns them off. Default: None
            spatial_tv (float, optional): weight of the spatial total variation, relative to
                the unit's size (the penalty is multiplied by ``|a|``). Default: 0.2
            temporal_tv (float, optional): weight of the temporal total variation (damps
                flicker), relative like ``spatial_tv``. Default: 0.4
            decay_power (float, optional): exponent of the ``1 / |f|`` spectrum scale; 2
                gives blobs, 1 (Lucid's image default) finer texture. Default: 2.0
            time_weight (float, optional): weight of temporal against spatial frequency in
                ``|f|``. Default: 1.0
            decorrelate (bool, optional): Lucid's colour decorrelation, fitted to natural
                images; it makes saturated greens hard to reach (its green-magenta axis has
                a seventh of the luminance axis's range), so it is off by default.
                Default: False

        Returns:
            Tensor: ``(N, 3, T, H, W)`` clips in ``[0, 1]``, one per unit, on the model's
            device, without gradient.

        Raises:
            ValueError: neither or both of ``target`` and ``layer``, an unknown layer name, a
                channel, neuron or class out of range, a bad size, count or weight.
            TypeError: arguments of the wrong type.

        Example::

            >>> vis = ClipVisualization(load_demo_model("motion"))
            >>> vis.optimize(layer="layer3", channel=[0, 5], n_steps=32).shape
            torch.Size([2, 3, 16, 32, 32])
        """
        n_steps = validate_positive_int(n_steps, "n_steps")
        lr = check_float(lr, "lr")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
        size = self._clip_size(clip_size)
        spatial_tv = check_float(spatial_tv, "spatial_tv", allow_zero=True)
        temporal_tv = check_float(temporal_tv, "temporal_tv", allow_zero=True)
        decay_power = check_float(decay_power, "decay_power", allow_zero=True)
        time_weight = check_float(time_weight, "time_weight")
        chain = standard_transforms() if transforms is None else list(transforms)
        if any(not callable(t) for t in chain):
            raise TypeError("transforms must be callables (clips, generator) -> clips")
        unit = self._reader.resolve(target, layer, channel, neuron, size)

        device = self._reader.device()
        generator = torch.Generator().manual_seed(int(seed))
        param = FourierClip(
            len(unit.indices),
            size,
            decay_power=decay_power,
            time_weight=time_weight,
            decorrelate=decorrelate,
            generator=generator,
        ).to(device)
        optimizer = torch.optim.Adam([param.spectrum], lr=lr)
        with torch.enable_grad():
            for _ in range(n_steps):
                clips = param()
                scores = self._reader.scores(apply_transforms(clips, chain, generator), unit)
                penalty = spatial_tv * spatial_total_variation(clips)
                penalty = penalty + temporal_tv * temporal_total_variation(clips)
                # Weighting the penalty by the unit's own size (held constant) makes the
                # trade-off relative: the same weights suit logits of 30 and channel means of
                # 0.5, where fixed weights flatten the clip of a weak unit to grey.
                loss = (scores.detach().abs() * penalty - scores).sum()
                # Only the spectrum's gradient: the model's parameters get no .grad.
                (param.spectrum.grad,) = torch.autograd.grad(loss, [param.spectrum])
                optimizer.step()
        with torch.no_grad():
            return param().detach()

    @in_eval_mode
    def objective(
        self,
        clips: Tensor,
        target: int | Sequence[int] | Tensor | None = None,
        layer: LayerSpec | None = None,
        channel: int | Sequence[int] | None = None,
        neuron: Sequence[int] | None = None,
    ) -> Tensor:
        """The value of each clip's unit, what :meth:`optimize` maximises (no transforms).

        Args:
            clips (Tensor): ``(N, 3, T, H, W)`` in ``[0, 1]``, one per unit.
            target, layer, channel, neuron: the units, as in :meth:`optimize`.

        Returns:
            Tensor: ``(N,)`` activations (logits for ``target``).

        Example::

            >>> vis = ClipVisualization(load_demo_model("motion"))
            >>> vis.objective(torch.rand(2, 3, 16, 32, 32), target=[0, 1]).shape
            torch.Size([2])
        """
        validate_video(clips, name="clips", channels=3)
        t, h, w = (int(v) for v in clips.shape[2:])
        unit = self._reader.resolve(target, layer, channel, neuron, (t, h, w))
        if len(unit.indices) != clips.shape[0]:
            raise ValueError(
                f"clips holds {clips.shape[0]} clips but {len(unit.indices)} units were given: "
                "pass one unit per clip"
            )
        with torch.no_grad():
            return self._reader.scores(clips, unit)

    def optimize_layer(
        self,
        layer: LayerSpec,
        channels: Sequence[int] | None = None,
        neuron: Sequence[int] | None = None,
        batch_size: int = 16,
        **kwargs: Any,
    ) -> Tensor:
        """One clip for each channel of ``layer`` (all of them by default), for a grid.

        Channels are optimised ``batch_size`` at a time; chunk ``i`` uses seed
        ``seed + i``. Tile the result with :func:`~captum_video.units.clip_grid`.

        Args:
            layer (str or nn.Module): the layer, as in :meth:`optimize`.
            channels (sequence of int, optional): the channels; None means all. Default: None
            neuron (sequence of int, optional): as in :meth:`optimize`. Default: None
            batch_size (int, optional): channels per optimisation. Default: 16
            **kwargs: the other arguments of :meth:`optimize` (``n_steps``, ``lr``,
                ``seed``, ``clip_size``, ...).

        Returns:
            Tensor: ``(C, 3, T, H, W)``, in the order of ``channels``.

        Example::

            >>> vis = ClipVisualization(load_demo_model("motion"))
            >>> vis.optimize_layer("stem", n_steps=8).shape
            torch.Size([8, 3, 16, 32, 32])
        """
        batch_size = validate_positive_int(batch_size, "batch_size")
        if "channel" in kwargs or "target" in kwargs:
            raise TypeError("optimize_layer takes channels=, not channel= or target=")
        if channels is None:
            size = self._clip_size(kwargs.get("clip_size", (16, 32, 32)))
            module, name = self._reader.layer(layer)
            channels = range(channel_count(self._reader.probe(module, name, size), name))
        channels = [int(c) for c in channels]
        if not channels:
            raise ValueError("channels is empty: pass at least one channel (or None for all)")
        seed = kwargs.pop("seed", 0)
        chunks = [channels[i : i + batch_size] for i in range(0, len(channels), batch_size)]
        out = [
            self.optimize(layer=layer, channel=chunk, neuron=neuron, seed=seed + i, **kwargs)
            for i, chunk in enumerate(chunks)
        ]
        return torch.cat(out)

    # -- internals ---------------------------------------------------------------------------

    def _clip_size(self, clip_size: Any) -> tuple[int, int, int]:
        t, h, w = check_clip_size(clip_size)
        frames = max(2, model_min_frames(self.model))
        if t < frames:
            raise ValueError(f"clip_size has T={t} frames; this model needs at least {frames}")
        return t, h, w

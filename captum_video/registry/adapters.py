r"""Forward adapters: every registered model as ``(N, C, T, H, W)`` clips -> ``(N, classes)``.

captum-video's methods take clips ``(N, C, T, H, W)`` and a model that returns a tensor of
scores. Hugging Face video classifiers take ``pixel_values`` ``(N, T, C, H, W)`` and return a
``ModelOutput``; X-CLIP's vision tower takes the frames as a batch of images; SlowFast takes a
list of two clips at two frame rates. :func:`adapt` wraps such a model in a small module that
does the conversion, and leaves the model a sub-module (``adapter.model``), so the registry
still finds its family and layer names read ``"model.<name>"``. Each conversion is a
permutation, reshape or frame selection, so gradients reach the clip unchanged.

Example::

    >>> from torchvision.models.video import r3d_18
    >>> net = r3d_18(num_classes=4)
    >>> adapt(net) is net          # already takes (N, C, T, H, W) and returns scores
    True
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from captum_video.registry._family import find_family

__all__ = [
    "FramesAsBatchAdapter",
    "HFVideoAdapter",
    "PathwayAdapter",
    "VideoAdapter",
    "adapt",
    "pack_pathways",
]


def _check_clip(clip: Any, who: str) -> Tensor:
    if not isinstance(clip, Tensor) or clip.dim() != 5:
        shape = tuple(clip.shape) if isinstance(clip, Tensor) else type(clip).__name__
        raise ValueError(f"{who} takes clips (N, C, T, H, W), got {shape}")
    if not clip.is_floating_point():
        raise TypeError(
            f"{who} takes floating-point clips, got clip of dtype {clip.dtype}; convert with "
            "clip.float() / 255"
        )
    return clip


class VideoAdapter(nn.Module):
    """Base of the forward adapters: holds the wrapped model as ``self.model``.

    Args:
        model (nn.Module): the wrapped model.
        input_size (tuple of int, optional): the ``(T, H, W)`` clips the model takes (read by
            :func:`~captum_video.registry.input_size_of`). Default: None
        normalization (str, optional): a preset of
            :data:`~captum_video.registry.NORMALIZATION_PRESETS` that overrides the family's
            (e.g. read from a saved image processor). Default: None
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        input_size: tuple[int, int, int] | None = None,
        normalization: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.model = model
        self.training = model.training  # follow the model's mode, leaving the model as it is
        self.input_size = tuple(int(s) for s in input_size) if input_size else None
        self.normalization = normalization

    def _check_size(self, clip: Tensor) -> None:
        """A clear error for clips the wrapped model cannot take (fixed-size transformers)."""
        if self.input_size is None:
            return
        t, h, w = self.input_size
        if tuple(clip.shape[2:]) != (t, h, w):
            raise ValueError(
                f"{type(self.model).__name__} takes clips of exactly {t} frames of {h}x{w} "
                f"(from its config), got {tuple(clip.shape[2:])} (T, H, W); resample the clip"
            )


class HFVideoAdapter(VideoAdapter):
    """A Hugging Face video classifier (VideoMAE, TimeSformer, ViViT) as ``clip -> logits``.

    Permutes ``(N, C, T, H, W)`` to ``pixel_values`` ``(N, T, C, H, W)`` and returns the
    output's ``logits``.

    Example::

        >>> adapter = HFVideoAdapter(videomae, input_size=(16, 224, 224))  # doctest: +SKIP
        >>> adapter(torch.rand(1, 3, 16, 224, 224)).shape                 # doctest: +SKIP
        torch.Size([1, 400])
    """

    def forward(self, clip: Tensor) -> Tensor:
        clip = _check_clip(clip, type(self.model).__name__)
        self._check_size(clip)
        out = self.model(pixel_values=clip.permute(0, 2, 1, 3, 4))
        return out.logits if hasattr(out, "logits") else out[0]


class FramesAsBatchAdapter(VideoAdapter):
    """An image tower run on every frame (X-CLIP's ``XCLIPVisionModel``), pooled over time.

    The frames go through the model as a batch ``(N * T, C, H, W)``; the output is the mean
    over the ``T`` frames of the model's ``pooler_output`` (the frame's class embedding after
    ``post_layernorm``), ``(N, hidden_size)``, then ``head`` when one is given. X-CLIP has no
    classifier: give ``head`` (a linear probe, or a linear layer holding text embeddings for
    zero-shot scores) to explain classes; without it, ``target`` picks embedding dimensions.

    Args:
        model (nn.Module): the image tower.
        head (nn.Module, optional): ``(N, hidden_size) -> (N, classes)``. Default: None
        input_size, normalization: as in :class:`VideoAdapter`.
    """

    def __init__(self, model: nn.Module, head: nn.Module | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.head = head

    def forward(self, clip: Tensor) -> Tensor:
        clip = _check_clip(clip, type(self.model).__name__)
        self._check_size(clip)
        n, c, t, h, w = clip.shape
        frames = clip.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)
        out = self.model(pixel_values=frames)
        pooled = out.pooler_output if hasattr(out, "pooler_output") else out[1]
        video = pooled.reshape(n, t, -1).mean(dim=1)
        return self.head(video) if self.head is not None else video


def pack_pathways(clip: Tensor, alpha: int = 4) -> list[Tensor]:
    """SlowFast's two pathways from one clip, as PyTorchVideo's ``PackPathway`` builds them.

    The fast pathway is the clip; the slow one keeps ``T // alpha`` frames evenly spaced
    from the first to the last (``torch.linspace(0, T - 1, T // alpha)``).

    Args:
        clip (Tensor): ``(N, C, T, H, W)``.
        alpha (int, optional): the frame-rate ratio of the pathways. Default: 4

    Returns:
        list of Tensor: ``[slow, fast]``.

    Example::

        >>> slow, fast = pack_pathways(torch.rand(1, 3, 32, 8, 8), alpha=4)
        >>> slow.shape[2], fast.shape[2]
        (8, 32)
    """
    clip = _check_clip(clip, "pack_pathways")
    frames = int(clip.shape[2])
    if alpha < 1 or frames // alpha < 1:
        raise ValueError(
            f"a clip of {frames} frames is too short for a slow pathway at alpha={alpha}; "
            f"pass at least {max(alpha, 1)} frames"
        )
    index = torch.linspace(0, frames - 1, frames // alpha, device=clip.device).long()
    return [torch.index_select(clip, 2, index), clip]


class PathwayAdapter(VideoAdapter):
    """A multi-pathway network (PyTorchVideo SlowFast) as ``clip -> scores``.

    Called with one clip ``(N, C, T, H, W)`` it builds the pathways with
    :func:`pack_pathways`; called with one clip per pathway (``adapter(slow, fast)``, e.g.
    Captum's tuple inputs) it passes them on as they are.

    Args:
        model (nn.Module): the network, taking a list of clips.
        alpha (int, optional): the frame-rate ratio of the pathways. Default: 4
        pathways (int, optional): how many pathways the network takes. Default: 2
        input_size, normalization: as in :class:`VideoAdapter`.
    """

    def __init__(self, model: nn.Module, alpha: int = 4, pathways: int = 2, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        for name, value in (("alpha", alpha), ("pathways", pathways)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.alpha = int(alpha)
        self.pathways = int(pathways)

    def forward(self, *clips: Tensor) -> Tensor:
        if len(clips) == 1:
            return self.model(pack_pathways(clips[0], self.alpha))
        if len(clips) != self.pathways:
            raise ValueError(
                f"{type(self.model).__name__} takes one clip or {self.pathways} pathway clips, "
                f"got {len(clips)} inputs"
            )
        return self.model([_check_clip(c, "each pathway") for c in clips])


def adapt(model: nn.Module, **options: Any) -> nn.Module:
    """The model as ``(N, C, T, H, W)`` clips -> ``(N, classes)`` scores, via its family.

    Returns ``model`` itself when it already works that way (torchvision, PyTorchVideo
    single-pathway networks, captum-video's models) or is already adapted (idempotent);
    otherwise the family's adapter around it (:class:`HFVideoAdapter`,
    :class:`FramesAsBatchAdapter`, :class:`PathwayAdapter`).

    Args:
        model (nn.Module): the model.
        **options: passed to the family's adapter (``head=`` for X-CLIP's vision tower,
            ``alpha=`` for SlowFast).

    Returns:
        nn.Module: the adapter (with ``model`` as its sub-module ``model``) or ``model``.

    Raises:
        ValueError: ``model`` wraps a model that needs an adapter (adapt the inner one), or
            options are given for a model that needs no adapter.

    Example::

        >>> from torchvision.models.video import r3d_18
        >>> type(adapt(r3d_18())).__name__
        'VideoResNet'
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if any(isinstance(m, VideoAdapter) for m in model.modules()):
        return model
    family, root, prefix = find_family(model)
    if family.adapter is None:
        if options:
            raise ValueError(
                f"{type(model).__name__} ({family.name}) needs no adapter, so the options "
                f"{sorted(options)} do not apply"
            )
        return model
    if prefix:
        raise ValueError(
            f"{type(model).__name__} wraps a {family.name} model at '{prefix}' that needs an "
            f"adapter; adapt that module first, e.g. replace it by adapt(model.{prefix})"
        )
    return family.adapter(model, **options)

r"""How a video transformer's attention reads as token mixing: the registry's description.

Attention-based explanations (attention rollout, gradient-weighted attention relevance; see
:mod:`captum_video.attr`) need, per family, which modules compute attention probabilities, in
what order, over which tokens, and how each of those attentions sits in the ``S x S`` token
mixing matrix of its layer. An :class:`AttentionLayout` says exactly that, as data: a list of
:class:`AttentionStep` in forward order plus which output token the classifier reads. The
methods never look at a model's class; they ask :func:`attention_layout`, which asks the
model's :class:`~captum_video.registry.ModelFamily` (its ``attention`` entry).

Step kinds (each one linear map from the tokens before the step to the tokens after it):

* ``"joint"``: attention over the whole sequence, ``A`` of shape ``(N, heads, S, S)``
  (VideoMAE, ViViT, the demo transformer).
* ``"divided_time"``: divided space-time attention's temporal part (TimeSformer, Bertasius et
  al. 2021): every patch position attends over its ``T'`` frames, ``A`` of shape
  ``(N * H'W', heads, T', T')``; class tokens do not take part.
* ``"divided_space"``: the spatial part: every frame attends within itself, with the class
  token repeated in front of every frame and its outputs averaged over frames, ``A`` of shape
  ``(N * T', heads, 1 + H'W', 1 + H'W')``.
* ``"pooled"``: pooling attention (MViT, Fan et al. 2021): keys and values are pooled from the
  input grid (``kv_pool``), queries and the residual path with the query stride (``skip``),
  ``A`` of shape ``(N, heads, S_out, S_kv)``.
* ``"window"``: shifted 3-D window attention (Video Swin, Liu et al. 2022): the channels-last
  grid is padded to whole windows, rolled by ``-shift`` and cut into windows of ``window``
  tokens, ``A`` of shape ``(N * windows, heads, w, w)``.
* ``"merge"``: no attention, tokens merged by a fixed footprint (Swin's patch merging).
* ``"message"`` and ``"frame_joint"`` (X-CLIP's cross-frame communication, Ni et al. 2022):
  frames run as a batch of images, each a class token + its patches. ``"message"``: every
  frame's message token is a linear function of its class token plus the attention
  ``(N, heads, T', T')`` over all frames' message tokens (appends one token per frame);
  ``"frame_joint"``: joint attention ``(N * T', heads, E, E)`` within each frame over its
  class token, patches and message token, after which the message token is dropped.

Pooling footprints (:class:`Footprint`) are read as uniform averages over their window: the
learned pooling kernels of MViT and Swin's merging projections are not token mixing one can
read off, and a uniform footprint keeps rows stochastic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from torch import nn

from captum_video.registry._family import find_family

__all__ = [
    "AttentionKind",
    "AttentionLayout",
    "AttentionStep",
    "Footprint",
    "Tokens",
    "attention_layout",
    "footprint_grid",
]

AttentionKind = Literal[
    "joint", "divided_time", "divided_space", "pooled", "window", "merge", "message", "frame_joint"
]

#: ``(root, clip_size) -> AttentionLayout``: a family's attention description for clips of
#: ``clip_size`` ``(T, H, W)``.
AttentionOf = Callable[[nn.Module, "tuple[int, int, int]"], "AttentionLayout"]


@dataclass(frozen=True)
class Tokens:
    """A token sequence: ``prefix`` class tokens, then a ``(T', H', W')`` grid.

    Frames run as a batch of images (X-CLIP) are read frame by frame: with ``frame_prefix``
    or ``frame_suffix`` the sequence is ``T'`` groups of ``frame_prefix`` class tokens, the
    frame's ``H'W'`` patches (row-major) and ``frame_suffix`` extra tokens.

    Args:
        grid (tuple of int): ``(T', H', W')``.
        prefix (int, optional): class tokens in front of the grid. Default: 0
        order (str, optional): ``"thw"`` (time-major) or ``"hwt"`` (space-major,
            TimeSformer). Default: ``"thw"``
        frame_prefix (int, optional): class tokens in front of every frame. Default: 0
        frame_suffix (int, optional): tokens after every frame's patches. Default: 0

    Example::

        >>> Tokens((2, 4, 4), prefix=1).count
        33
        >>> Tokens((2, 4, 4), frame_prefix=1, frame_suffix=1).count   # 2 x (1 + 16 + 1)
        36
    """

    grid: tuple[int, int, int]
    prefix: int = 0
    order: Literal["thw", "hwt"] = "thw"
    frame_prefix: int = 0
    frame_suffix: int = 0

    @property
    def per_frame(self) -> int:
        """Tokens of one frame's group (framed sequences)."""
        return self.frame_prefix + self.grid[1] * self.grid[2] + self.frame_suffix

    @property
    def framed(self) -> bool:
        """Whether the sequence is read frame by frame."""
        return bool(self.frame_prefix or self.frame_suffix)

    @property
    def count(self) -> int:
        """Tokens in the sequence (class tokens and grid)."""
        if self.framed:
            return self.prefix + self.grid[0] * self.per_frame
        return self.prefix + math.prod(self.grid)


@dataclass(frozen=True)
class Footprint:
    """A pooling window over a token grid: kernel, stride and front padding per axis.

    Output token ``j`` covers input tokens ``j * stride - padding + [0, kernel)`` (those inside
    the grid). Read as a uniform average over those tokens.

    Example::

        >>> Footprint((3, 3, 3), (1, 2, 2), (1, 1, 1)).kernel
        (3, 3, 3)
    """

    kernel: tuple[int, int, int]
    stride: tuple[int, int, int]
    padding: tuple[int, int, int] = (0, 0, 0)


def footprint_grid(grid: tuple[int, int, int], pool: Footprint) -> tuple[int, int, int]:
    """The grid a :class:`Footprint` pools ``grid`` to (convolution arithmetic).

    Example::

        >>> footprint_grid((8, 8, 8), Footprint((3, 3, 3), (1, 2, 2), (1, 1, 1)))
        (8, 4, 4)
    """
    return tuple(  # type: ignore[return-value]
        (g + 2 * p - k) // s + 1
        for g, k, s, p in zip(grid, pool.kernel, pool.stride, pool.padding, strict=True)
    )


@dataclass(frozen=True)
class AttentionStep:
    """One attention (or token-merging) step of a forward pass, in forward order.

    Args:
        module (str or None): dotted name of the module inside whose forward the step's
            attention probabilities are computed (one softmax, or one fused
            ``scaled_dot_product_attention``, per call); None for ``"merge"`` steps.
        kind (str): see :data:`AttentionKind` and the module docstring.
        tokens_in (Tokens): the tokens before the step (the columns of its mixing matrix).
        tokens_out (Tokens, optional): the tokens after it (the rows); default
            ``tokens_in``.
        kv_pool (Footprint, optional): ``"pooled"``: how keys / values are pooled from
            ``tokens_in``. Default: None (not pooled)
        skip (Footprint, optional): ``"pooled"``: the residual path's pooling (None: the
            identity); ``"merge"``: the merge footprint. Default: None
        window (tuple of int, optional): ``"window"``: the window in tokens ``(t, h, w)``.
        shift (tuple of int, optional): ``"window"``: the cyclic shift. Default: no shift

    Example::

        >>> step = AttentionStep("blocks.0.attn", "joint", Tokens((4, 8, 8), prefix=1))
        >>> step.tokens_out.count
        257
    """

    module: str | None
    kind: AttentionKind
    tokens_in: Tokens
    tokens_out: Tokens | None = None
    kv_pool: Footprint | None = None
    skip: Footprint | None = None
    window: tuple[int, int, int] | None = None
    shift: tuple[int, int, int] = (0, 0, 0)

    def __post_init__(self) -> None:
        if self.tokens_out is None:
            object.__setattr__(self, "tokens_out", self.tokens_in)
        if (self.module is None) != (self.kind == "merge"):
            need = "needs" if self.module is None else "has no"
            raise ValueError(f"a {self.kind!r} step {need} module")
        if self.kind == "window" and self.window is None:
            raise ValueError("a 'window' step needs its window size")

    @property
    def out(self) -> Tokens:
        """``tokens_out`` (never None after construction)."""
        assert self.tokens_out is not None
        return self.tokens_out


@dataclass(frozen=True)
class AttentionLayout:
    """A model's attention as token mixing: its steps and the token the classifier reads.

    Args:
        steps (tuple of AttentionStep): in forward order; each step's ``tokens_in`` are the
            previous step's ``tokens_out``.
        readout (str, optional): which output row explains the prediction: ``"first"`` (the
            class token, or the first token a head reads), ``"mean"`` (heads that average
            every token: VideoMAE with mean pooling, Swin) or ``"frame_first"`` (the mean
            over frames of each frame's first token: X-CLIP). Default: ``"first"``
        patch (tuple of int, optional): voxels ``(t, h, w)`` per input token for models that
            pad the clip to whole patches (Swin): the map is up-sampled to ``grid * patch``
            and cropped to the clip. Default: None (the grid spans the clip)

    Example::

        >>> tokens = Tokens((4, 8, 8), prefix=1)
        >>> layout = AttentionLayout(tuple(
        ...     AttentionStep(f"blocks.{i}.attn", "joint", tokens) for i in range(2)))
        >>> layout.tokens.grid, [s.module for s in layout.steps]
        ((4, 8, 8), ['blocks.0.attn', 'blocks.1.attn'])
    """

    steps: tuple[AttentionStep, ...]
    readout: Literal["first", "mean", "frame_first"] = "first"
    patch: tuple[int, int, int] | None = None

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("an attention layout needs at least one step")
        if self.readout not in ("first", "mean", "frame_first"):
            raise ValueError(
                f"readout must be 'first', 'mean' or 'frame_first', got {self.readout!r}"
            )
        for before, after in zip(self.steps, self.steps[1:], strict=False):
            if before.out != after.tokens_in:
                raise ValueError(
                    f"step {after.module or after.kind!r} takes {after.tokens_in} but the step "
                    f"before gives {before.out}"
                )

    @property
    def tokens(self) -> Tokens:
        """The tokens the first step reads: the grid that maps back to the clip."""
        return self.steps[0].tokens_in

    @property
    def modules(self) -> list[str]:
        """The attention modules, in forward order (each once)."""
        return list(dict.fromkeys(s.module for s in self.steps if s.module is not None))

    def prefixed(self, prefix: str) -> AttentionLayout:
        """The same layout with module names relative to a model that wraps the root."""
        if not prefix:
            return self
        steps = tuple(
            replace(s, module=f"{prefix}.{s.module}") if s.module is not None else s
            for s in self.steps
        )
        return replace(self, steps=steps)


def attention_layout(model: Any, clip_size: tuple[int, int, int]) -> AttentionLayout:
    """The registry's :class:`AttentionLayout` of ``model`` for clips of ``clip_size``.

    Module names are relative to ``model`` (a forward adapter's ``"model."`` prefix included).

    Args:
        model (nn.Module): the model, or a module wrapping a registered one.
        clip_size (tuple of int): ``(T, H, W)`` of the explained clips.

    Returns:
        AttentionLayout: the description.

    Raises:
        ValueError: the model's family has no attention description (not a transformer, or
            not supported); the message names the family.

    Example::

        >>> from captum_video.models import VideoTransformerSmall
        >>> attention_layout(VideoTransformerSmall(depth=2), (16, 32, 32)).modules
        ['blocks.0.attn', 'blocks.1.attn']
    """
    family, root, prefix = find_family(model)
    describe: AttentionOf | None = getattr(family, "attention", None)
    if describe is None or root is None:
        raise ValueError(
            f"the registry knows no attention layout for {type(model).__name__} (family "
            f"{family.name!r}); attention methods support the families with an 'attention' "
            "entry (VideoMAE, TimeSformer, ViViT, torchvision MViT and Swin3D, the demo "
            "transformer), or pass layout= (a captum_video.registry.attention.AttentionLayout)"
        )
    size = (int(clip_size[0]), int(clip_size[1]), int(clip_size[2]))
    return describe(root, size).prefixed(prefix)

"""Synthetic videos with ground truth for judging video explanations.

:class:`MovingShapes` renders small clips of shapes on a textured background. Each example
comes with a voxel mask of the one object that decides its label, so an explanation can be
scored against the truth, and with variants where the label depends on motion only, on
appearance only, or on both.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["MovingShapes", "VARIANTS"]

#: The variants of :class:`MovingShapes`: the label depends on the object's motion only,
#: on its appearance only, or on both.
VARIANTS: tuple[str, ...] = ("motion", "appearance", "mixed")

# RGB colours in [0, 1].
_WHITE = (0.95, 0.95, 0.95)
_RED = (0.9, 0.15, 0.1)
_GREEN = (0.1, 0.85, 0.2)
_BLUE = (0.15, 0.3, 0.95)
_YELLOW = (0.95, 0.85, 0.1)
_GREY = (0.55, 0.55, 0.55)
_COLOURS = {"red": _RED, "green": _GREEN, "blue": _BLUE, "yellow": _YELLOW}

# Unit vectors (dy, dx) in image coordinates: +x is right, +y is down.
_DIRECTIONS = {"right": (0.0, 1.0), "left": (0.0, -1.0), "down": (1.0, 0.0), "up": (-1.0, 0.0)}

_CLASSES: dict[str, tuple[str, ...]] = {
    "motion": ("right", "left", "down", "up"),
    "appearance": ("red", "green", "blue", "yellow"),
    "mixed": ("red right", "red left", "green right", "green left"),
}


class MovingShapes(Dataset):
    r"""A seeded synthetic video dataset yielding ``(clip, label, mask)``.

    Every clip holds one *deciding object* and ``num_distractors`` static distractor shapes on
    a faint, static texture with a little per-frame noise. ``mask`` marks the voxels of the
    deciding object in the frames where it decides the label, which is the ground truth for
    localisation metrics.

    Variants:

    - ``"motion"``: the label is the direction the object moves in (right, left, down, up).
      The object looks the same in every class (a white square) and the distractors are
      identical white squares that do not move, so only motion tells the object apart.
    - ``"appearance"``: the label is the object's colour (red, green, blue, yellow); its
      shape (square or disc), direction and speed are random and carry no information.
      Distractors are grey.
    - ``"mixed"``: the label is colour x horizontal direction (red/green, right/left).
      Distractors are grey.

    Example ``i`` is rendered from its own generator seeded with ``(seed, i)``, so the data
    set is reproducible, random-access and cheap to hold: nothing is stored.

    Args:
        variant (str, optional): ``"motion"``, ``"appearance"`` or ``"mixed"``.
            Default: ``"motion"``
        num_samples (int, optional): length of the data set. Default: 512
        num_frames (int, optional): frames T per clip. Default: 16
        size (int or tuple of int, optional): frame size ``H`` or ``(H, W)``. Default: 32
        object_size (int, optional): side of the square (diameter of the disc) in pixels;
            default ``max(5, min(H, W) // 5)``.
        num_distractors (int, optional): static distractor shapes per clip. Default: 2
        speed (tuple of float, optional): range of the object's speed in pixels per frame.
            Default: ``(1.0, 1.5)``
        event_frames (tuple of int, optional): ``(start, stop)``; when given, the object
            moves only in frames ``start .. stop - 1`` and stands still before and after,
            and ``mask`` is non-zero only in those frames. Default: None (moves throughout)
        noise (float, optional): amplitude of the per-frame noise. Default: 0.03
        seed (int, optional): seed of the whole data set. Default: 0

    Returns:
        Indexing gives a tuple ``(clip, label, mask)``: ``clip`` a float32 tensor
        ``(3, T, H, W)`` in ``[0, 1]``, ``label`` an int, ``mask`` a bool tensor ``(T, H, W)``.

    Example::

        >>> data = MovingShapes("motion", num_samples=8, seed=1)
        >>> clip, label, mask = data[0]
        >>> clip.shape, data.classes[label], mask.shape
        (torch.Size([3, 16, 32, 32]), 'down', torch.Size([16, 32, 32]))
        >>> clips, labels, masks = data.tensors()   # all examples, stacked
    """

    def __init__(
        self,
        variant: str = "motion",
        num_samples: int = 512,
        num_frames: int = 16,
        size: int | tuple[int, int] = 32,
        object_size: int | None = None,
        num_distractors: int = 2,
        speed: tuple[float, float] = (1.0, 1.5),
        event_frames: tuple[int, int] | None = None,
        noise: float = 0.03,
        seed: int = 0,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        if num_frames < 2:
            raise ValueError(f"num_frames must be >= 2 for any motion, got {num_frames}")
        side = object_size if object_size is not None else max(5, min(height, width) // 5)
        if event_frames is not None:
            start, stop = event_frames
            if not 0 <= start < stop <= num_frames:
                raise ValueError(
                    f"event_frames must satisfy 0 <= start < stop <= num_frames={num_frames}, "
                    f"got {event_frames}"
                )
        moving_frames = (event_frames[1] - event_frames[0]) if event_frames else num_frames
        travel = speed[1] * (moving_frames - 1)
        if travel + side + 2 > min(height, width):
            raise ValueError(
                f"frames of {height}x{width} are too small for an object of {side} px moving up "
                f"to {speed[1]} px/frame for {moving_frames} frames; enlarge size or lower speed"
            )
        self.variant = variant
        self.num_samples = num_samples
        self.num_frames = num_frames
        self.height, self.width = int(height), int(width)
        self.object_size = int(side)
        self.num_distractors = num_distractors
        self.speed = (float(speed[0]), float(speed[1]))
        self.event_frames = event_frames
        self.noise = noise
        self.seed = seed

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, indexed by label."""
        return _CLASSES[self.variant]

    @property
    def num_classes(self) -> int:
        """Number of classes (4 for every variant)."""
        return len(self.classes)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> tuple[Tensor, int, Tensor]:
        if not -self.num_samples <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        index = index % self.num_samples if self.num_samples else index
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        label = int(torch.randint(self.num_classes, (1,), generator=gen))
        return self.render(label, gen)

    def tensors(self) -> tuple[Tensor, Tensor, Tensor]:
        """All examples stacked: clips ``(N, 3, T, H, W)``, labels ``(N,)``, masks ``(N, T, H, W)``.

        Returns:
            tuple of Tensor: ``(clips, labels, masks)``.
        """
        items = [self[i] for i in range(len(self))]
        clips = torch.stack([it[0] for it in items])
        labels = torch.tensor([it[1] for it in items], dtype=torch.long)
        masks = torch.stack([it[2] for it in items])
        return clips, labels, masks

    # -- rendering ---------------------------------------------------------------------------

    def render(self, label: int, generator: torch.Generator) -> tuple[Tensor, int, Tensor]:
        """Render one example of class ``label`` with randomness drawn from ``generator``.

        Args:
            label (int): the class index.
            generator (torch.Generator): source of all random choices.

        Returns:
            tuple: ``(clip, label, mask)`` as described in the class docstring.
        """
        T, H, W, side = self.num_frames, self.height, self.width, self.object_size
        g = generator
        direction, colour, shape = self._object_spec(label, g)
        speed = self.speed[0] + (self.speed[1] - self.speed[0]) * float(torch.rand((), generator=g))

        # Time course of the displacement: 0 before the event, linear during, held after.
        steps = torch.arange(T, dtype=torch.float32)
        if self.event_frames is not None:
            start, stop = self.event_frames
            steps = (steps - start).clamp(0, stop - 1 - start)
        travel = speed * float(steps.max())
        dy, dx = direction
        half = side / 2.0
        # Choose a start so the whole path stays inside the frame.
        y0 = self._start(g, H, half, dy * travel)
        x0 = self._start(g, W, half, dx * travel)
        cy = y0 + dy * speed * steps  # (T,)
        cx = x0 + dx * speed * steps

        yy = torch.arange(H, dtype=torch.float32).view(1, H, 1) + 0.5
        xx = torch.arange(W, dtype=torch.float32).view(1, 1, W) + 0.5
        background = 0.08 + 0.1 * torch.rand(1, 1, H, W, generator=g)
        clip = background.expand(3, T, H, W).clone()
        clip += self.noise * (torch.rand(3, T, H, W, generator=g) - 0.5)

        # Static distractors, placed away from the object's path where there is room.
        for _ in range(self.num_distractors):
            d_shape = (
                "square"
                if self.variant == "motion"
                else ("square", "disc")[int(torch.randint(2, (1,), generator=g))]
            )
            d_colour = _WHITE if self.variant == "motion" else _GREY
            dyx = self._free_spot(g, cy, cx, side)
            d_mask = _shape_mask(d_shape, yy, xx, dyx[0].view(1, 1, 1), dyx[1].view(1, 1, 1), half)
            d_mask = d_mask.expand(T, H, W)
            clip = torch.where(d_mask, torch.tensor(d_colour).view(3, 1, 1, 1), clip)

        obj = _shape_mask(shape, yy, xx, cy.view(T, 1, 1), cx.view(T, 1, 1), half)  # (T,H,W)
        clip = torch.where(obj, torch.tensor(colour).view(3, 1, 1, 1), clip)
        mask = obj.clone()
        if self.event_frames is not None:
            start, stop = self.event_frames
            active = torch.zeros(T, dtype=torch.bool)
            active[start:stop] = True
            mask &= active.view(T, 1, 1)
        return clip.clamp_(0.0, 1.0), label, mask

    def _object_spec(
        self, label: int, g: torch.Generator
    ) -> tuple[tuple[float, float], tuple[float, float, float], str]:
        name = self.classes[label]
        if self.variant == "motion":
            return _DIRECTIONS[name], _WHITE, "square"
        if self.variant == "appearance":
            shape = ("square", "disc")[int(torch.randint(2, (1,), generator=g))]
            angle = 2 * math.pi * float(torch.rand((), generator=g))
            return (math.sin(angle), math.cos(angle)), _COLOURS[name], shape
        colour_name, direction = name.split()
        return _DIRECTIONS[direction], _COLOURS[colour_name], "square"

    @staticmethod
    def _start(g: torch.Generator, extent: int, half: float, shift: float) -> float:
        low = half + 1 - min(shift, 0.0)
        high = extent - half - 1 - max(shift, 0.0)
        return low + (high - low) * float(torch.rand((), generator=g))

    def _free_spot(self, g: torch.Generator, cy: Tensor, cx: Tensor, side: int) -> Tensor:
        """A position for a static distractor that keeps clear of the object's path."""
        half = side / 2.0
        best = None
        for _ in range(20):  # a few rejection-sampling tries; falls back to the last draw
            spot = torch.rand(2, generator=g) * torch.tensor(
                [self.height - side - 2.0, self.width - side - 2.0]
            ) + (half + 1)
            best = spot
            clearance = torch.maximum((cy - spot[0]).abs(), (cx - spot[1]).abs()).min()
            if clearance > side + 1:
                break
        assert best is not None
        return best


def _shape_mask(shape: str, yy: Tensor, xx: Tensor, cy: Tensor, cx: Tensor, half: float) -> Tensor:
    """Boolean mask of a square or disc centred at ``(cy, cx)``, broadcast over time."""
    if shape == "square":
        return ((yy - cy).abs() <= half) & ((xx - cx).abs() <= half)
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= half**2

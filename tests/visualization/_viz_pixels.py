"""Pixel helpers for the visualisation tests: synthetic clips with a known hot blob, and
reading back what a matplotlib axis actually shows."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def blob_clip(
    frames: int = 6, size: int = 24, centres: list[tuple[int, int]] | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """A textured grey clip (3, T, H, W) and a relevance (1, 3, T, H, W) that is a Gaussian
    blob whose centre moves over time; returns (video, attr, centres as (row, col))."""
    gen = torch.Generator().manual_seed(seed)
    if centres is None:
        centres = [(5 + 2 * t, size - 6 - 2 * t) for t in range(frames)]  # moves down-left
    rows = torch.arange(size).view(size, 1).float()
    cols = torch.arange(size).view(1, size).float()
    attr = torch.zeros(1, 3, frames, size, size)
    for t, (r, c) in enumerate(centres):
        blob = torch.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * 1.5**2))
        attr[0, :, t] = blob / 3
    # small noise everywhere so the sign filters have something to work on
    attr = attr + 0.002 * torch.randn(attr.shape, generator=gen)
    video = 0.35 + 0.3 * torch.rand(1, 1, frames, size, size, generator=gen).expand(
        1, 3, -1, -1, -1
    )
    return video[0].contiguous(), attr, centres


def axis_pixels(fig: Figure, ax: Axes) -> np.ndarray:
    """The RGB pixels inside ``ax``'s data area, as rendered by the Agg canvas."""
    if not hasattr(fig.canvas, "buffer_rgba"):  # a standalone Figure (use_pyplot=False)
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    buffer = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(np.float64)
    height = buffer.shape[0]
    box = ax.get_window_extent()
    x0, x1 = int(np.ceil(box.x0)), int(np.floor(box.x1))
    y0, y1 = int(np.ceil(height - box.y1)), int(np.floor(height - box.y0))
    return buffer[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1]


def saturation(rgb: np.ndarray) -> np.ndarray:
    """max - min over colour channels: 0 for greys, large for strong heat-map colours."""
    return rgb.max(axis=-1) - rgb.min(axis=-1)


def hottest(score: np.ndarray, shape: tuple[int, int]) -> tuple[float, float]:
    """Centre of the hottest region of ``score`` (pixels within 10% of its maximum; heat maps
    saturate at the top, so the argmax alone is an arbitrary plateau pixel), in the
    continuous pixel coordinates of an (H, W) image."""
    low, high = float(score.min()), float(score.max())
    rows, cols = np.nonzero(score >= high - 0.1 * (high - low))
    return (
        (rows.mean() + 0.5) * shape[0] / score.shape[0],
        (cols.mean() + 0.5) * shape[1] / score.shape[1],
    )


def near(point: tuple[float, float], centre: tuple[int, int], tol: float = 2.0) -> bool:
    """``point`` (continuous pixel coordinates) lies within ``tol`` pixels of pixel
    ``centre``'s middle."""
    return abs(point[0] - (centre[0] + 0.5)) <= tol and abs(point[1] - (centre[1] + 0.5)) <= tol

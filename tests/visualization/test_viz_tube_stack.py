"""The staggered tube stack: geometry of savetopng, focus plane, animation frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from _viz_pixels import blob_clip, saturation

from captum_video.visualization import (
    plot_tube_stack,
    render_tube_stack,
    render_tube_stack_frames,
)
from captum_video.visualization.tube_stack import DEFAULT_SHEAR_POINTS

SIZE, STEP, FRAMES, H = 96, 24, 6, 24


def _predicted(t: int, centre: tuple[int, int]) -> tuple[float, float]:
    """Where the centre of pixel ``centre`` of frame ``t`` lands in the uncropped stack."""
    src, dst = (np.asarray(p, np.float32) * SIZE for p in DEFAULT_SHEAR_POINTS)
    matrix = cv2.getAffineTransform(src, dst)
    # cv2.resize maps pixel centres: x' = (x + 0.5) * S / W - 0.5
    x = (centre[1] + 0.5) * SIZE / H - 0.5
    y = (centre[0] + 0.5) * SIZE / H - 0.5
    px, py = matrix @ np.array([x, y, 1.0])
    return py + t * STEP, px


def test_shape_and_each_frame_lands_where_the_shear_puts_it() -> None:
    video, attr, centres = blob_clip(frames=FRAMES, size=H)
    for t in range(FRAMES):
        only_t = torch.zeros_like(attr)
        only_t[:, :, t] = attr[:, :, t]
        stack = render_tube_stack(
            only_t, video, plane_size=SIZE, vertical_step=STEP, crop=False, outlier_perc=0
        )
        assert stack.shape == (SIZE + (FRAMES - 1) * STEP, SIZE, 4)
        score = saturation(stack[..., :3].astype(float)) * (stack[..., 3] > 0)
        row, col = np.unravel_index(int(np.argmax(score)), score.shape)
        exp_row, exp_col = _predicted(t, centres[t])
        assert abs(row - exp_row) <= 3 and abs(col - exp_col) <= 3, (t, (row, col))


def test_focus_plane_is_opaque_and_context_planes_translucent() -> None:
    video, attr, centres = blob_clip(frames=FRAMES, size=H)
    focus = 2
    stack = render_tube_stack(
        attr, video, focus=focus, plane_size=SIZE, vertical_step=STEP, crop=False
    )
    alpha = stack[..., 3]
    # a point inside the focus plane and one inside the last plane only
    r, c = (int(round(v)) for v in _predicted(focus, (H // 2, H // 2)))
    assert alpha[r, c] == 255
    r, c = (int(round(v)) for v in _predicted(FRAMES - 1, (H - 3, H // 2)))
    assert alpha[r, c] == 135
    assert alpha[0, 0] == 0  # transparent outside the sheared planes
    # without a focus no plane is opaque
    none = render_tube_stack(attr, video, plane_size=SIZE, vertical_step=STEP, crop=False)
    assert none[..., 3].max() == 135


def test_animation_frames_match_single_renders_and_crop_is_shared() -> None:
    video, attr, _ = blob_clip(frames=4, size=H)
    frames = render_tube_stack_frames(attr, video, plane_size=64, vertical_step=16)
    assert frames.shape[0] == 4 and frames.dtype == np.uint8
    for f in range(4):
        np.testing.assert_array_equal(
            frames[f], render_tube_stack(attr, video, focus=f, plane_size=64, vertical_step=16)
        )
    uncropped = render_tube_stack(attr, video, plane_size=64, vertical_step=16, crop=False)
    assert frames.shape[1] < uncropped.shape[0]
    # cropping removed only fully transparent rows and columns
    assert frames[0, 0, :, 3].any() and frames[0, -1, :, 3].any()
    assert frames[0, :, 0, 3].any() and frames[0, :, -1, 3].any()


def test_plot_tube_stack_and_errors() -> None:
    video, attr, _ = blob_clip(frames=3, size=H)
    fig, ax = plot_tube_stack(attr, video, focus=1, plane_size=48, vertical_step=12,
                              use_pyplot=False)  # fmt: skip
    shown = ax.get_images()[0].get_array()
    np.testing.assert_array_equal(
        shown, render_tube_stack(attr, video, focus=1, plane_size=48, vertical_step=12)
    )
    with pytest.raises(ValueError, match="out of range"):
        render_tube_stack(attr, video, focus=3)
    with pytest.raises(ValueError, match="context_alpha"):
        render_tube_stack(attr, video, context_alpha=0)
    with pytest.raises(ValueError, match="plane_size"):
        render_tube_stack(attr, video, plane_size=4)
    with pytest.raises(ValueError, match="draws on the clip"):
        render_tube_stack(attr, None)

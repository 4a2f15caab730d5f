"""spatiotemporal_overlay: one frame, two hues, a legend, the frame with most relevance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _viz_pixels import axis_pixels

from captum_video.visualization import spatiotemporal_overlay, two_hue_frames


def _clip() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    video = torch.full((3, 5, 20, 20), 0.5)
    spatial = torch.zeros(1, 5, 20, 20)
    temporal = torch.zeros(1, 5, 20, 20)
    spatial[:, :, 2:8, 2:8] = 0.5  # appearance: top-left, every frame
    temporal[:, 3, 12:18, 12:18] = 1.0  # motion: bottom-right, frame 3 only
    return video, spatial, temporal


def test_picks_the_frame_with_most_relevance_and_shows_both_hues() -> None:
    video, spatial, temporal = _clip()
    fig, ax = spatiotemporal_overlay(spatial, temporal, video, use_pyplot=False)
    assert ax.get_title() == "frame 3"
    pixels = axis_pixels(fig, ax)
    h, w = pixels.shape[:2]
    top_left = pixels[int(0.25 * h), int(0.25 * w)]
    bottom_right = pixels[int(0.75 * h), int(0.75 * w)]
    empty = pixels[int(0.75 * h), int(0.25 * w)]
    assert top_left[0] > top_left[2] + 50  # orange: spatial
    assert bottom_right[2] > bottom_right[0] + 100  # azure: temporal
    assert abs(empty[0] - empty[2]) < 3  # grey where neither
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["spatial (appearance)", "temporal (motion)", "both"]
    # the axis shows exactly the two-hue frame
    shown = ax.get_images()[0].get_array()
    np.testing.assert_array_equal(shown, two_hue_frames(spatial, temporal, video)[3])


def test_explicit_frame_labels_and_errors() -> None:
    video, spatial, temporal = _clip()
    fig, ax = spatiotemporal_overlay(
        spatial, temporal, video, frame=-1, labels=("RGB", "flow"), title="x", use_pyplot=False
    )
    assert ax.get_title() == "x"
    assert [t.get_text() for t in ax.get_legend().get_texts()][:2] == ["RGB", "flow"]
    shown = ax.get_images()[0].get_array()
    assert shown[15, 15, 2] == shown[15, 15, 0]  # frame 4 holds no motion
    with pytest.raises(ValueError, match="out of range"):
        spatiotemporal_overlay(spatial, temporal, video, frame=5, use_pyplot=False)
    with pytest.raises(ValueError, match="magnitudes"):
        spatiotemporal_overlay(spatial, temporal, video, sign="all", use_pyplot=False)

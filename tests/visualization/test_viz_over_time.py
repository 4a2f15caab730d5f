"""Relevance over time: per-frame mass, several methods on one axis, key frames beneath."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from _viz_pixels import axis_pixels, blob_clip

from captum_video.visualization import (
    overlay_frames,
    plot_relevance_over_time,
    relevance_over_time,
)


def test_relevance_over_time_numbers() -> None:
    attr = torch.zeros(1, 3, 4, 5, 5)
    attr[0, 0, 1] = 1.0  # 25 per frame
    attr[0, 1, 3, 0, 0] = -5.0
    np.testing.assert_allclose(relevance_over_time(attr, normalize=None), [0, 25, 0, 5])
    np.testing.assert_allclose(relevance_over_time(attr), [0, 25 / 30, 0, 5 / 30])
    np.testing.assert_allclose(relevance_over_time(attr, normalize="max"), [0, 1, 0, 0.2])
    np.testing.assert_allclose(relevance_over_time(attr, "positive", None), [0, 25, 0, 0])
    np.testing.assert_allclose(relevance_over_time(attr, "negative", None), [0, 0, 0, 5])
    np.testing.assert_allclose(relevance_over_time(attr, "all", None), [0, 25, 0, -5])
    with pytest.raises(ValueError, match="normalize must be"):
        relevance_over_time(attr, normalize="mean")  # type: ignore[arg-type]


def test_curves_thumbnails_and_key_frames() -> None:
    video, attr, _ = blob_clip(frames=8, size=24)
    ramp = attr * torch.arange(1, 9).view(1, 1, 8, 1, 1)  # relevance grows over time
    fig, axes = plot_relevance_over_time(
        {"flat": attr, "ramp": ramp}, video=video, key_frames="peaks", num_key_frames=3,
        use_pyplot=False,
    )  # fmt: skip
    curve_ax, thumbs = axes[0], axes[1:]
    lines = [line for line in curve_ax.get_lines() if line.get_label() in ("flat", "ramp")]
    assert [line.get_label() for line in lines] == ["flat", "ramp"]
    np.testing.assert_allclose(lines[1].get_ydata(), relevance_over_time(ramp))
    # the peaks of the summed curves are the last frames of the ramp, at least 8 / 4 apart
    assert [thumb.get_title() for thumb in thumbs] == ["frame 4", "frame 6", "frame 8"]
    # each thumbnail shows its frame and sits centred under its frame on the x axis
    for thumb, t in zip(thumbs, [3, 5, 7], strict=True):
        pixels = axis_pixels(fig, thumb)
        expected = video[:, t].mean(0).numpy() * 255
        assert abs(pixels.mean() - expected.mean()) < 6
        box = thumb.get_window_extent()
        centre_x = curve_ax.transData.transform((t, 0))[0]
        assert abs((box.x0 + box.x1) / 2 - centre_x) < 2
        assert box.y1 < curve_ax.get_window_extent().y0  # beneath the curves


def test_even_key_frames_single_attr_and_no_video() -> None:
    video, attr, _ = blob_clip(frames=8)
    fig, axes = plot_relevance_over_time(attr, video=video, num_key_frames=4, use_pyplot=False)
    assert [ax.get_title() for ax in axes[1:]] == ["frame 1", "frame 3", "frame 6", "frame 8"]
    assert axes[0].get_legend() is None
    fig, axes = plot_relevance_over_time([attr, attr * 2], labels=["a", "b"], use_pyplot=False)
    assert len(axes) == 1
    a, b = (line.get_ydata() for line in axes[0].get_lines()[:2])
    np.testing.assert_allclose(a, b)  # shares of the clip's relevance do not depend on scale


def test_works_without_cm_get_cmap(monkeypatch: pytest.MonkeyPatch) -> None:
    # Captum's visualize_timeseries_attr calls matplotlib.cm.get_cmap, removed in 3.11;
    # nothing here may depend on it, whatever matplotlib is installed.
    monkeypatch.delattr(matplotlib.cm, "get_cmap", raising=False)
    video, attr, _ = blob_clip(frames=3)
    plot_relevance_over_time(attr, video=video, use_pyplot=False)
    overlay_frames(attr, video, sign="all", method="heat_map")


def test_errors() -> None:
    video, attr, _ = blob_clip(frames=4)
    with pytest.raises(ValueError, match="different numbers of frames"):
        plot_relevance_over_time([attr, attr[:, :, :3]], use_pyplot=False)
    with pytest.raises(ValueError, match="2 labels for 1"):
        plot_relevance_over_time([attr], labels=["a", "b"], use_pyplot=False)
    with pytest.raises(ValueError, match="key_frames must be"):
        plot_relevance_over_time(attr, video=video, key_frames="best", use_pyplot=False)
    with pytest.raises(ValueError, match=r"covers \(T, H, W\)"):
        plot_relevance_over_time(attr, video=video[:, :2], use_pyplot=False)

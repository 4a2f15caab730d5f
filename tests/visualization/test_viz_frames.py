"""Frame grids: the rendered figure shows Captum's pixels, normalised over the whole clip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _viz_pixels import axis_pixels, blob_clip, hottest, near, saturation
from captum.attr import visualization as captum_viz
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from captum_video.visualization import visualize_video_attr, visualize_video_attr_multiple


def test_grid_is_hottest_on_the_blob_in_every_frame() -> None:
    video, attr, centres = blob_clip()
    fig, axes = visualize_video_attr(attr, video, use_pyplot=False, ncols=3)
    assert isinstance(fig, Figure) and axes.shape == (2, 3)
    for t, ax in enumerate(axes.ravel()):
        pixels = axis_pixels(fig, ax)
        assert near(hottest(saturation(pixels), (24, 24)), centres[t], tol=1.5), t
        assert ax.get_title() == f"frame {t + 1}/{len(centres)}"


@pytest.mark.parametrize(
    ("method", "sign"),
    [
        ("heat_map", "absolute_value"),
        ("heat_map", "all"),
        ("blended_heat_map", "positive"),
        ("blended_heat_map", "negative"),
        ("original_image", "absolute_value"),
        ("masked_image", "absolute_value"),
        ("alpha_scaling", "positive"),
    ],
)
def test_a_one_frame_clip_draws_exactly_what_captum_draws(method: str, sign: str) -> None:
    # With T = 1 the clip-wide normalisation is Captum's own, so the pixels must be identical.
    video, attr, _ = blob_clip(frames=1)
    attr = attr - 0.02  # give the negative sign something to show
    ours = Figure(figsize=(3, 3))
    ours_ax = ours.subplots()
    visualize_video_attr(
        attr, video, method=method, sign=sign, frame_titles=False,
        plt_fig_axis=(ours, [ours_ax]), use_pyplot=False,
    )  # fmt: skip
    theirs = Figure(figsize=(3, 3))
    theirs_ax = theirs.subplots()
    captum_viz.visualize_image_attr(
        attr[0, :, 0].permute(1, 2, 0).numpy(), video[:, 0].permute(1, 2, 0).numpy(),
        method=method, sign=sign, plt_fig_axis=(theirs, theirs_ax), use_pyplot=False,
    )  # fmt: skip
    np.testing.assert_array_equal(axis_pixels(ours, ours_ax), axis_pixels(theirs, theirs_ax))


def test_one_normalisation_for_the_clip_keeps_a_weak_frame_pale() -> None:
    video, attr, _ = blob_clip()
    attr[:, :, 4] *= 0.1
    fig, axes = visualize_video_attr(attr, video, method="heat_map", use_pyplot=False)
    strong = saturation(axis_pixels(fig, axes.flat[3])).max()
    weak = saturation(axis_pixels(fig, axes.flat[4])).max()
    assert weak < 0.4 * strong
    # Captum frame by frame would stretch the weak frame to full colour.
    solo = Figure(figsize=(3, 3))
    solo_ax = solo.subplots()
    captum_viz.visualize_image_attr(
        attr[0, :, 4].permute(1, 2, 0).numpy(), plt_fig_axis=(solo, solo_ax), use_pyplot=False
    )
    assert saturation(axis_pixels(solo, solo_ax)).max() > 0.8 * strong


def test_frames_selection_colorbar_and_title() -> None:
    video, attr, centres = blob_clip()
    fig, axes = visualize_video_attr(
        attr, video, frames=[5, 1], show_colorbar=True, title="clip", use_pyplot=False
    )
    assert [ax.get_title() for ax in axes.ravel()] == ["frame 6/6", "frame 2/6"]
    assert near(hottest(saturation(axis_pixels(fig, axes.flat[0])), (24, 24)), centres[5], 1.5)
    assert len(fig.axes) == 3  # two frames + one shared colour bar
    assert fig.get_suptitle() == "clip"


def test_tensor_layouts_and_numpy_give_the_same_picture() -> None:
    video, attr, _ = blob_clip(frames=2)
    pictures = []
    for a, v in [
        (attr, video),
        (attr[0], video[None]),
        (attr[0].sum(0, keepdim=True), video),
        (attr[0].sum(0).numpy(), video.numpy()),
    ]:
        fig, axes = visualize_video_attr(a, v, use_pyplot=False, fig_size=(4, 2))
        pictures.append(axis_pixels(fig, axes.flat[1]))
    for picture in pictures[1:]:
        np.testing.assert_allclose(picture, pictures[0], atol=2)


def test_use_pyplot_false_leaves_pyplot_alone_and_true_registers_the_figure() -> None:
    video, attr, _ = blob_clip(frames=2)
    before = plt.get_fignums()
    visualize_video_attr(attr, video, use_pyplot=False)
    assert plt.get_fignums() == before
    fig, _ = visualize_video_attr(attr, video, use_pyplot=True)
    assert fig.number in plt.get_fignums()
    plt.close(fig)


def test_multiple_rows_compare_methods() -> None:
    video, attr, centres = blob_clip()
    other = torch.roll(attr, shifts=-6, dims=-1)
    fig, axes = visualize_video_attr_multiple(
        [attr, other], video, ["blended_heat_map", "heat_map"], ["absolute_value", "positive"],
        titles=["A", "B"], frames=3, use_pyplot=False,
    )  # fmt: skip
    assert axes.shape == (2, 3)
    assert axes[0, 0].get_ylabel() == "A" and axes[1, 0].get_ylabel() == "B"
    shown = [0, 2, 5]
    for col, t in enumerate(shown):
        row0 = hottest(saturation(axis_pixels(fig, axes[0, col])), (24, 24))
        row1 = hottest(saturation(axis_pixels(fig, axes[1, col])), (24, 24))
        assert near(row0, centres[t], 1.5)
        assert near(row1, (centres[t][0], centres[t][1] - 6), 1.5)
    # One attribution, several visualisation methods (Captum's own use of *_multiple)
    fig, axes = visualize_video_attr_multiple(
        attr, video, ["original_image", "heat_map"], ["all", "all"], use_pyplot=False
    )
    assert axes.shape == (2, 6)


def test_errors_and_inputs_untouched() -> None:
    video, attr, _ = blob_clip()
    attr_before, video_before = attr.clone(), video.clone()
    with pytest.raises(ValueError, match="draws on the clip"):
        visualize_video_attr(attr, None, use_pyplot=False)
    with pytest.raises(ValueError, match="sign must be one of"):
        visualize_video_attr(attr, video, sign="abs", use_pyplot=False)
    with pytest.raises(ValueError, match="axes for"):
        fig = Figure()
        visualize_video_attr(attr, video, frames=3, plt_fig_axis=(fig, fig.subplots(1, 2)))
    with pytest.raises(ValueError, match=r"covers \(T, H, W\)"):
        visualize_video_attr(attr[:, :, :3], video, use_pyplot=False)
    with pytest.raises(ValueError, match="one sign per method"):
        visualize_video_attr_multiple(attr, video, ["heat_map"], [], use_pyplot=False)
    with pytest.raises(TypeError, match="unexpected keyword"):
        visualize_video_attr_multiple(
            attr, video, ["heat_map"], ["all"], use_pyplot=False, colour="red"
        )
    assert torch.equal(attr, attr_before) and torch.equal(video, video_before)
    fig, _ = visualize_video_attr(attr, method="heat_map", use_pyplot=False)  # no clip needed
    assert len(fig.axes) == 6

"""Pure-array overlays: Captum's methods, signs and colour maps, and the two-hue view."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _viz_pixels import blob_clip, hottest, near, saturation
from matplotlib import colormaps

from captum_video.visualization import overlay_frames, two_hue_frames
from captum_video.visualization.overlay import SPATIAL_HUE, TEMPORAL_HUE, get_colormap


@pytest.mark.parametrize(
    ("method", "score"),
    [
        ("heat_map", lambda rgb, grey: saturation(rgb)),
        ("blended_heat_map", lambda rgb, grey: saturation(rgb)),
        ("masked_image", lambda rgb, grey: rgb.mean(-1) / grey),  # kept share of the pixel
        ("alpha_scaling", lambda rgb, grey: -np.abs(rgb.mean(-1) - grey)),  # least washed out
    ],
)
def test_overlay_is_hottest_on_the_blob_in_every_frame(method: str, score) -> None:  # type: ignore[no-untyped-def]
    video, attr, centres = blob_clip()
    rgb = overlay_frames(attr, video, method=method).astype(np.float64)
    grey = video.mean(0).numpy() * 255
    assert rgb.shape == (6, 24, 24, 3)
    for t, centre in enumerate(centres):
        assert near(hottest(score(rgb[t], grey[t]), (24, 24)), centre, tol=1.0), (method, t)


def test_original_image_reproduces_the_clip() -> None:
    video, attr, _ = blob_clip()
    rgb = overlay_frames(attr, video, method="original_image")
    expected = np.rint(video.permute(1, 2, 3, 0).numpy() * 255)
    np.testing.assert_array_equal(rgb, expected.astype(np.uint8))


@pytest.mark.parametrize(
    ("sign", "name"), [("positive", "Greens"), ("absolute_value", "Blues"), ("negative", "Reds")]
)
def test_default_colour_maps_are_captums(sign: str, name: str) -> None:
    attr = torch.linspace(-1, 1, 11).view(1, 1, 11)
    heat = overlay_frames(attr, method="heat_map", sign=sign, outlier_perc=0)
    values = {"positive": np.clip(np.linspace(-1, 1, 11), 0, 1)}
    values["negative"] = values["positive"][::-1]
    values["absolute_value"] = np.abs(np.linspace(-1, 1, 11))
    expected = colormaps[name](values[sign])[:, :3]
    np.testing.assert_allclose(heat[0, 0] / 255.0, expected, atol=1 / 255)
    assert get_colormap(None, sign)[0].name == name


def test_sign_all_uses_red_white_green() -> None:
    attr = torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 3)
    heat = overlay_frames(attr, method="heat_map", sign="all", outlier_perc=0)[0, 0]
    assert (heat[1] >= 253).all()  # white (the 256-entry colour table has no exact 0.5)
    assert heat[0, 0] > 200 and heat[0, 1] < 10  # red for negative
    assert heat[2, 1] > 100 and heat[2, 0] < 10  # green for positive


def test_clip_normalisation_makes_weak_frames_pale() -> None:
    video, attr, _ = blob_clip()
    attr[:, :, 3] *= 0.1
    rgb = overlay_frames(attr, video, method="heat_map").astype(np.float64)
    assert saturation(rgb[3]).max() < 0.4 * saturation(rgb[2]).max()


def test_custom_cmap_and_errors() -> None:
    video, attr, _ = blob_clip()
    viridis = overlay_frames(attr, method="heat_map", cmap="viridis", outlier_perc=0)
    peak = np.unravel_index(np.argmax(attr[0].sum(0).numpy()), attr.shape[2:])
    np.testing.assert_allclose(viridis[peak] / 255.0, colormaps["viridis"](1.0)[:3], atol=2 / 255)
    with pytest.raises(ValueError, match="unknown colour map"):
        overlay_frames(attr, method="heat_map", cmap="no-such-map")
    with pytest.raises(ValueError, match="draws on the clip"):
        overlay_frames(attr, method="blended_heat_map")
    with pytest.raises(ValueError, match="cannot show positive and negative"):
        overlay_frames(attr, video, method="masked_image", sign="all")
    with pytest.raises(ValueError, match="method must be one of"):
        overlay_frames(attr, video, method="blend")
    with pytest.raises(ValueError, match="up-sample layer maps"):
        overlay_frames(torch.rand(1, 1, 2, 6, 6), video)
    with pytest.raises(ValueError, match="alpha_overlay"):
        overlay_frames(attr, video, alpha_overlay=1.5)


def _recover(rgb: np.ndarray, grey: np.ndarray, background: float) -> np.ndarray:
    """Invert pixel = background * grey + (1 - background) * (s * h_s + m * h_t) for (s, m),
    given the grey frame, by least squares over the three colour channels."""
    hues = np.stack([SPATIAL_HUE, TEMPORAL_HUE], axis=1)  # (3, 2)
    target = (rgb / 255.0 - background * grey[..., None]) / (1 - background)
    solution, *_ = np.linalg.lstsq(hues, target.reshape(-1, 3).T, rcond=None)
    return solution.T.reshape(*rgb.shape[:-1], 2)


def test_two_hue_overlay_keeps_both_signals_separable() -> None:
    size, frames = 24, 4
    gen = torch.Generator().manual_seed(3)
    video = torch.rand(3, frames, size, size, generator=gen)
    spatial = torch.zeros(1, frames, size, size)
    temporal = torch.zeros(1, frames, size, size)
    spatial[..., 4:14, 4:14] = torch.rand(1, frames, 10, 10, generator=gen)
    temporal[..., 9:20, 9:20] = torch.rand(1, frames, 11, 11, generator=gen)  # overlaps spatial
    rgb = two_hue_frames(spatial, temporal, video, outlier_perc=0, joint_scale=False)
    grey = video.mean(0).numpy()
    recovered = _recover(rgb.astype(np.float64), grey, background=0.35)
    s_true = spatial[0].numpy() / spatial.max().item()
    m_true = temporal[0].numpy() / temporal.max().item()
    tolerance = 3 / 255 / 0.65  # uint8 rounding, amplified by the inversion
    np.testing.assert_allclose(recovered[..., 0], s_true, atol=tolerance * 3)
    np.testing.assert_allclose(recovered[..., 1], m_true, atol=tolerance * 3)
    # In the overlap both signals are still there: nothing was painted over.
    overlap = (s_true > 0.3) & (m_true > 0.3)
    assert overlap.sum() > 20
    assert np.corrcoef(recovered[..., 0][overlap], s_true[overlap])[0, 1] > 0.99
    assert np.corrcoef(recovered[..., 1][overlap], m_true[overlap])[0, 1] > 0.99
    # Spatial-only pixels lean orange (red > blue), temporal-only lean azure (blue > red).
    only_s = (s_true > 0.5) & (m_true == 0)
    only_m = (m_true > 0.5) & (s_true == 0)
    assert (rgb[..., 0][only_s] > rgb[..., 2][only_s]).all()
    assert (rgb[..., 2][only_m] > rgb[..., 0][only_m]).all()


def test_two_hue_joint_scale_keeps_a_weak_component_weak() -> None:
    video = torch.full((3, 2, 8, 8), 0.5)
    spatial = torch.zeros(2, 8, 8)
    spatial[:, :4] = 1.0
    temporal = torch.zeros(2, 8, 8)
    temporal[:, 4:] = 0.1
    joint = _recover(
        two_hue_frames(spatial, temporal, video, outlier_perc=0), np.full((2, 8, 8), 0.5), 0.35
    )
    separate = _recover(
        two_hue_frames(spatial, temporal, video, outlier_perc=0, joint_scale=False),
        np.full((2, 8, 8), 0.5),
        0.35,
    )
    assert joint[:, 4:, :, 1].max() == pytest.approx(0.1, abs=0.02)
    assert separate[:, 4:, :, 1].max() == pytest.approx(1.0, abs=0.02)


def test_two_hue_errors() -> None:
    video = torch.rand(3, 2, 8, 8)
    attr = torch.rand(2, 8, 8)
    with pytest.raises(ValueError, match="magnitudes"):
        two_hue_frames(attr, attr, video, sign="all")
    with pytest.raises(ValueError, match="temporal covers"):
        two_hue_frames(attr, torch.rand(3, 8, 8), video)
    with pytest.raises(ValueError, match="never saturate"):
        two_hue_frames(attr, attr, video, spatial_hue=(1, 1, 0), temporal_hue=(1, 0, 1))


def test_tensors_on_any_device_render_the_same(device: torch.device) -> None:
    video, attr, _ = blob_clip(frames=2)
    expected = overlay_frames(attr, video)
    np.testing.assert_array_equal(overlay_frames(attr.to(device), video.to(device)), expected)

"""normalize_video_attr: Captum's normaliser applied once over the whole clip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _viz_pixels import blob_clip
from captum.attr._utils.visualization import _normalize_attr

from captum_video.visualization import normalize_video_attr
from captum_video.visualization._inputs import attr_volume, select_frames, video_frames


@pytest.mark.parametrize("sign", ["positive", "absolute_value", "negative", "all"])
def test_matches_captum_normaliser_on_the_stacked_clip(sign: str) -> None:
    attr = torch.randn(1, 3, 5, 9, 11, generator=torch.Generator().manual_seed(0))
    volume = attr[0].sum(0).numpy().astype(np.float64)
    expected = _normalize_attr(volume, sign, 2)
    got = normalize_video_attr(attr, sign=sign)
    np.testing.assert_allclose(got, expected)
    low = -1.0 if sign == "all" else 0.0
    assert got.min() >= low and got.max() <= 1.0


def test_one_threshold_for_all_frames_keeps_weak_frames_pale() -> None:
    attr = torch.zeros(3, 4, 8, 8)
    attr[:, 0, 2:5, 2:5] = 1.0
    attr[:, 2, 2:5, 2:5] = 0.1
    norm = normalize_video_attr(attr, outlier_perc=0)
    assert norm[0].max() == pytest.approx(1.0)
    assert norm[2].max() == pytest.approx(0.1)
    # the opt-in per-frame mode stretches the weak frame to full scale: the thing we avoid
    per_frame = normalize_video_attr(attr, outlier_perc=0, per_frame=True)
    assert per_frame[2].max() == pytest.approx(1.0)
    assert not per_frame[1].any()


def test_no_outliers_is_max_normalisation_even_where_captum_fails() -> None:
    volume = torch.zeros(2, 8, 8)
    volume[:, 4:] = 0.1  # Captum's cumulative-sum threshold rounds past the total here
    with pytest.raises(IndexError):
        _normalize_attr(volume.numpy().astype(np.float64), "absolute_value", 0)
    np.testing.assert_allclose(normalize_video_attr(volume, outlier_perc=0), volume.numpy() / 0.1)


def test_modes() -> None:
    volume = np.array([[[-2.0, 1.0], [0.5, 0.0]]])
    np.testing.assert_allclose(normalize_video_attr(volume, mode="max"), [[[1, 0.5], [0.25, 0]]])
    np.testing.assert_allclose(
        normalize_video_attr(volume, sign="all", mode="max"), [[[-1, 0.5], [0.25, 0]]]
    )
    np.testing.assert_allclose(
        normalize_video_attr(volume, sign="positive", mode="minmax"), [[[0, 1], [0.5, 0]]]
    )
    # Captum returns negative relevance as magnitudes in [0, 1]
    neg = normalize_video_attr(volume, sign="negative", mode="max")
    np.testing.assert_allclose(neg, [[[1, 0], [0, 0]]])
    with pytest.raises(ValueError, match="minmax"):
        normalize_video_attr(volume, sign="all", mode="minmax")


def test_zero_relevance_gives_zeros_with_a_warning() -> None:
    with pytest.warns(UserWarning, match="zero everywhere"):
        out = normalize_video_attr(torch.zeros(2, 4, 4), sign="positive")
    assert out.shape == (2, 4, 4) and not out.any()


@pytest.mark.parametrize(
    "layout",
    [
        lambda v: v,
        lambda v: v[None],
        lambda v: v[None, None],
        lambda v: (v / 3).expand(3, -1, -1, -1).clone(),
        lambda v: (v / 3).expand(1, 3, -1, -1, -1).clone(),
    ],
    ids=["THW", "1THW", "11THW", "CTHW", "1CTHW"],
)
def test_accepted_layouts_agree(layout) -> None:  # type: ignore[no-untyped-def]
    volume = torch.randn(4, 6, 7, generator=torch.Generator().manual_seed(1))
    tensor = layout(volume)
    np.testing.assert_allclose(attr_volume(tensor), volume.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(attr_volume(tensor.numpy()), volume.numpy(), rtol=1e-5, atol=1e-6)


def test_inputs_are_not_modified() -> None:
    video, attr, _ = blob_clip()
    attr.requires_grad_(True)
    before_attr, before_video = attr.detach().clone(), video.clone()
    normalize_video_attr(attr)
    video_frames(video)
    assert attr.requires_grad and torch.equal(attr.detach(), before_attr)
    assert torch.equal(video, before_video)


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (torch.rand(2, 3, 4, 6, 6), ValueError, "2 clips"),
        (torch.rand(6, 6), ValueError, r"\(T, H, W\)"),
        (torch.full((2, 4, 4), float("nan")), ValueError, "NaN"),
        ([[1.0]], TypeError, "torch.Tensor or numpy"),
    ],
)
def test_bad_attr(bad: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        normalize_video_attr(bad)


def test_bad_arguments() -> None:
    attr = torch.rand(2, 4, 4)
    with pytest.raises(ValueError, match="sign must be one of"):
        normalize_video_attr(attr, sign="abs")
    with pytest.raises(ValueError, match="outlier_perc"):
        normalize_video_attr(attr, outlier_perc=100)
    with pytest.raises(ValueError, match="mode must be"):
        normalize_video_attr(attr, mode="zscore")  # type: ignore[arg-type]


def test_video_frames_conversions_and_errors() -> None:
    grey = torch.rand(1, 4, 6, 6)
    rgb = video_frames(grey)
    assert rgb.shape == (4, 6, 6, 3) and np.allclose(rgb[..., 0], rgb[..., 2])
    # The package's one uint8 policy: refused with the fix, tensors and arrays alike.
    with pytest.raises(TypeError, match=r"floating-point .*float\(\) / 255"):
        video_frames((torch.rand(3, 2, 4, 4) * 255).to(torch.uint8))
    with pytest.raises(TypeError, match=r"astype\('float32'\) / 255"):
        video_frames(np.zeros((3, 2, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\].*denormalize"):
        video_frames(torch.randn(3, 4, 6, 6) * 3)
    with pytest.raises(ValueError, match="channels-last"):
        video_frames(np.random.rand(4, 6, 6, 3))
    with pytest.raises(ValueError, match="2 clips"):
        video_frames(torch.rand(2, 3, 4, 6, 6))


def test_select_frames() -> None:
    assert select_frames(32, 4) == [0, 10, 21, 31]
    assert select_frames(20, None) == select_frames(20, 16)
    assert select_frames(8, None) == list(range(8))
    assert select_frames(8, [0, -1]) == [0, 7]
    with pytest.raises(ValueError, match="out of range"):
        select_frames(8, [8])
    with pytest.raises(ValueError, match="between 1"):
        select_frames(8, 9)

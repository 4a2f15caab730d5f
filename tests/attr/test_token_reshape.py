"""Tests of the reshape presets that turn transformer outputs into (N, K, T', H', W')."""

from __future__ import annotations

import pytest
import torch
import torchvision.models.video as tv
from torch import nn

from captum_video.models import C3DSmall
from captum_video.registry import (
    RESHAPE_PRESETS,
    channels_first,
    channels_last_to_channels_first,
    mvit_tokens_to_volume,
    resolve_reshape,
    token_grid_to_volume,
)


@pytest.fixture(scope="module")
def swin():
    return tv.swin3d_t(num_classes=3).eval()


@pytest.fixture(scope="module")
def mvit():
    return tv.mvit_v2_s(num_classes=3).eval()


def test_channels_last_preset_moves_channels_not_time():
    x = torch.arange(2 * 4 * 3 * 5 * 6, dtype=torch.float32).reshape(2, 4, 3, 5, 6)  # N T H W C
    vol = channels_last_to_channels_first(x)
    assert vol.shape == (2, 6, 4, 3, 5)
    assert vol[1, 5, 3, 2, 4] == x[1, 3, 2, 4, 5]
    with pytest.raises(ValueError, match="channels-last"):
        channels_last_to_channels_first(torch.rand(2, 10, 6))


def test_token_grid_drops_class_token_in_time_major_order():
    t, h, w, k = 2, 3, 4, 5
    grid = torch.rand(1, t, h, w, k)
    tokens = torch.cat([torch.full((1, 1, k), -1.0), grid.reshape(1, t * h * w, k)], dim=1)
    vol = token_grid_to_volume(tokens, (t, h, w))
    torch.testing.assert_close(vol, grid.permute(0, 4, 1, 2, 3))
    torch.testing.assert_close(token_grid_to_volume(tokens[:, 1:], (t, h, w)), vol)
    assert not (vol == -1).any()
    with pytest.raises(ValueError, match="cannot hold"):
        token_grid_to_volume(tokens, (t, h, w + 1))
    with pytest.raises(ValueError, match=r"\(N, L, K\)"):
        token_grid_to_volume(torch.rand(2, 3), (1, 1, 1))


def test_mvit_preset_reads_thw_from_the_block_output():
    tokens = torch.rand(2, 1 + 4 * 2 * 2, 8)
    vol = mvit_tokens_to_volume((tokens, [4, 2, 2]))
    assert vol.shape == (2, 8, 4, 2, 2)
    torch.testing.assert_close(vol[:, :, 0, 0, 1], tokens[:, 2])
    with pytest.raises(ValueError, match="MultiscaleBlock"):
        mvit_tokens_to_volume(tokens)


def test_presets_are_linear_reindexing_so_they_map_gradients_too():
    x = torch.rand(1, 4, 3, 3, 6, requires_grad=True)
    vol = channels_last_to_channels_first(x)
    g = torch.rand_like(vol)
    (grad,) = torch.autograd.grad(vol, x, g)
    torch.testing.assert_close(channels_last_to_channels_first(grad), g)


def test_resolve_reshape():
    conv = nn.Conv3d(1, 1, 1)
    assert resolve_reshape(None, C3DSmall(), conv) is channels_first
    assert resolve_reshape("mvit", None, conv) is RESHAPE_PRESETS["mvit"]

    def custom(out):
        return out

    assert resolve_reshape(custom, None, conv) is custom
    with pytest.raises(ValueError, match="unknown reshape preset"):
        resolve_reshape("timesformer", None, conv)
    with pytest.raises(TypeError, match="reshape must be"):
        resolve_reshape(3, None, conv)

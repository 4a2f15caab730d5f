"""Unit visualisation as moving clips: the optimised clips show what the demo models learned.

The checks use oracles independent of the optimiser: the direction each motion class moves in
and the hue of each colour class are read from MovingShapes clips of that class (optical flow
and pixel colour of the object), not from the data set's tables, and compared with the
optical flow and the colours of the optimised clips. One setting (the defaults) for every
class and seed.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from captum_video.datasets import MovingShapes
from captum_video.flow import optical_flow
from captum_video.io import read_video, video_info
from captum_video.models import R2Plus1DSmall
from captum_video.units import (
    ClipVisualization,
    FourierClip,
    RandomScale,
    SpatialJitter,
    TemporalJitter,
    add_unit_clips,
    clip_grid,
    spatial_total_variation,
    standard_transforms,
    temporal_total_variation,
    write_unit_clips,
)
from tests.helpers import assert_model_unchanged, model_snapshot

SEEDS = [0, 1]


def _class_examples(variant: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One MovingShapes clip and object mask per class, rendered from the data set itself."""
    data = MovingShapes(variant, num_samples=1, seed=7)
    gen = torch.Generator().manual_seed(3)
    return [data.render(label, gen)[::2] for label in range(data.num_classes)]


def _mean_flow(clips: torch.Tensor) -> torch.Tensor:
    """Mean optical flow ``(N, 2)`` as ``(dx, dy)`` in pixels per frame."""
    return optical_flow(clips).mean(dim=(1, 3, 4))


def _hue(rgb: np.ndarray) -> np.ndarray:
    return np.array([colorsys.rgb_to_hsv(*p)[0] * 360.0 for p in rgb])


def _hue_votes(clip: torch.Tensor, class_hues: np.ndarray) -> np.ndarray:
    """Share of the clip's colour in each class hue: every pixel votes for the nearest class
    hue with its chroma (max - min of R, G, B), so grey, white and black pixels do not count."""
    rgb = clip.flatten(1).T.numpy().astype(np.float64)
    chroma = rgb.max(1) - rgb.min(1)
    dist = np.abs((_hue(rgb)[:, None] - class_hues[None] + 180.0) % 360.0 - 180.0)
    votes = np.bincount(dist.argmin(1), weights=chroma, minlength=len(class_hues))
    return votes / votes.sum()


@pytest.fixture(scope="module")
def motion_directions() -> list[tuple[int, float]]:
    """Per class: (flow axis 0=dx / 1=dy, sign), measured on a clip of that class."""
    out = []
    for clip, _ in _class_examples("motion"):
        flow = _mean_flow(clip[None])[0]
        axis = int(flow.abs().argmax())
        out.append((axis, float(torch.sign(flow[axis]))))
    return out


@pytest.fixture(scope="module")
def class_hues() -> np.ndarray:
    """Hue of each appearance class's object, from the pixels under its mask."""
    colours = [clip[:, mask].mean(1).numpy() for clip, mask in _class_examples("appearance")]
    return _hue(np.stack(colours))


# -- the demo models: what each class clip shows -------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_motion_class_clips_move_in_the_class_direction(demo_model, motion_directions, seed):
    assert sorted(motion_directions) == [(0, -1.0), (0, 1.0), (1, -1.0), (1, 1.0)]  # 4 ways
    clips = ClipVisualization(demo_model).optimize(target=[0, 1, 2, 3], seed=seed)
    assert clips.shape == (4, 3, 16, 32, 32)
    assert clips.min() >= 0 and clips.max() <= 1
    flow = _mean_flow(clips)
    for label, (axis, sign) in enumerate(motion_directions):
        along, across = flow[label, axis], flow[label, 1 - axis]
        assert sign * along > 0.3, (label, flow[label].tolist())  # > 0.3 px/frame that way
        assert along.abs() > across.abs(), (label, flow[label].tolist())
    assert demo_model(clips).argmax(1).tolist() == [0, 1, 2, 3]
    # Control: played backwards, every clip moves the other way and loses its class.
    backwards = clips.flip(2)
    flow_back = _mean_flow(backwards)
    for label, (axis, sign) in enumerate(motion_directions):
        assert sign * flow_back[label, axis] < -0.3, (label, flow_back[label].tolist())
    assert (demo_model(backwards).argmax(1) != torch.arange(4)).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_appearance_class_clips_have_the_class_hue(appearance_model, class_hues, seed):
    clips = ClipVisualization(appearance_model).optimize(target=[0, 1, 2, 3], seed=seed)
    for label, clip in enumerate(clips):
        votes = _hue_votes(clip, class_hues)
        assert votes.argmax() == label, (label, votes.round(2).tolist())
    assert appearance_model(clips).argmax(1).tolist() == [0, 1, 2, 3]


def test_hue_oracle_tells_the_classes_apart(class_hues):
    # The measurement itself: a clip of each class votes for its own hue, a grey one for none.
    for label, (clip, _) in enumerate(_class_examples("appearance")):
        assert _hue_votes(clip, class_hues).argmax() == label
    assert sorted(np.round(class_hues / 60).astype(int).tolist()) == [0, 1, 2, 4]


def test_channels_and_neurons_beat_random_clips(demo_model):
    vis = ClipVisualization(demo_model)
    channels = [0, 3, 7]
    clips = vis.optimize(layer="layer2", channel=channels, n_steps=24, seed=0)
    random = torch.rand(3, 3, 16, 32, 32)
    got = vis.objective(clips, layer="layer2", channel=channels)
    base = vis.objective(random, layer="layer2", channel=channels)
    assert (got > base + 0.1).all(), (got, base)
    # A neuron before its ReLU (a ReLU output at 0 has no gradient to climb), given as a module.
    conv = demo_model.layer3.conv
    clips = vis.optimize(layer=conv, channel=[1, 2], neuron=(1, 2, 2), n_steps=24)
    got = vis.objective(clips, layer="layer3.conv", channel=[1, 2], neuron=(1, 2, 2))
    base = vis.objective(random[:2], layer="layer3.conv", channel=[1, 2], neuron=(1, 2, 2))
    assert (got > base + 1.0).all(), (got, base)


def test_optimize_layer_gives_one_clip_per_channel_and_a_grid(demo_model):
    vis = ClipVisualization(demo_model)
    clips = vis.optimize_layer("stem", n_steps=3, batch_size=5, clip_size=(4, 12, 12))
    assert clips.shape == (8, 3, 4, 12, 12)
    one = vis.optimize(layer="stem", channel=[5, 6, 7], n_steps=3, seed=1, clip_size=(4, 12, 12))
    torch.testing.assert_close(clips[5:], one)  # chunk i uses seed + i
    grid = clip_grid(clips, ncols=4, padding=1)
    assert grid.shape == (3, 4, 2 * 13 + 1, 4 * 13 + 1)
    torch.testing.assert_close(grid[:, :, 14:26, 40:52], clips[7])  # row 1, column 3
    assert (grid[:, :, 0] == 1).all()


def test_a_seed_repeats_and_different_seeds_differ(demo_model):
    vis = ClipVisualization(demo_model)
    kwargs = {"target": [0], "n_steps": 4, "clip_size": (8, 16, 16)}
    a, b = vis.optimize(seed=3, **kwargs), vis.optimize(seed=3, **kwargs)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, vis.optimize(seed=4, **kwargs))


def test_token_layers_use_the_feature_axis():
    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Conv3d(3, 6, (2, 4, 4), stride=(2, 4, 4))
            self.mix = nn.Linear(6, 6)
            self.head = nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            tokens = self.mix(self.embed(x).flatten(2).transpose(1, 2))  # (N, S, D)
            return self.head(tokens.mean(1))

    vis = ClipVisualization(Tokens().eval())
    clips = vis.optimize(layer="mix", channel=[0, 5], n_steps=4, clip_size=(4, 8, 8))
    assert clips.shape == (2, 3, 4, 8, 8)
    with pytest.raises(ValueError, match="channel 6 is out of range .* 6 channels"):
        vis.optimize(layer="mix", channel=6, clip_size=(4, 8, 8))
    with pytest.raises(ValueError, match="neuron .* outside"):
        vis.optimize(layer="mix", channel=0, neuron=(8,), clip_size=(4, 8, 8))


# -- the caller's model ---------------------------------------------------------------------------


def test_model_and_batchnorm_statistics_are_unchanged():
    torch.manual_seed(0)
    model = R2Plus1DSmall(num_classes=3).train()
    before = model_snapshot(model)
    vis = ClipVisualization(model)
    with pytest.warns(UserWarning, match="eval mode"):
        vis.optimize(target=[0, 2], n_steps=3, clip_size=(8, 16, 16))
    with pytest.warns(UserWarning, match="eval mode"):
        vis.optimize(layer="layer1", channel=0, n_steps=2, clip_size=(8, 16, 16))
    assert_model_unchanged(before, model)
    assert all(p.grad is None for p in model.parameters())
    with pytest.warns(UserWarning), pytest.raises(ValueError):
        vis.optimize(layer="layer1", channel=10_000, clip_size=(8, 16, 16))
    assert_model_unchanged(before, model)


def test_no_grad_mode_of_the_caller_is_no_obstacle(demo_model):
    with torch.no_grad():
        clips = ClipVisualization(demo_model).optimize(target=1, n_steps=2)
    assert clips.shape == (1, 3, 16, 32, 32) and not clips.requires_grad


# -- bad arguments --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"layer": "layer9", "channel": 0}, ValueError, r"layer 'layer9' is not a module.*layer3"),
        ({"layer": "layer3", "channel": 32}, ValueError, r"channel 32 is out of range .*0\.\.31"),
        ({"layer": "layer3", "channel": -1}, ValueError, "channel -1 is out of range"),
        ({"layer": "layer3", "channel": 0.5}, TypeError, "channel must be an int"),
        ({"layer": "layer3"}, ValueError, "needs channel="),
        ({"layer": "layer3", "channel": 0, "neuron": (0, 9, 0)}, ValueError, "outside"),
        ({"layer": "layer3", "channel": 0, "neuron": (0, 1)}, ValueError, "outside"),
        ({"layer": nn.Linear(2, 2), "channel": 0}, ValueError, "not part of the model"),
        ({"layer": 3, "channel": 0}, TypeError, "layer must be a module name"),
        ({}, ValueError, "nothing to maximise"),
        ({"target": 4}, ValueError, "target 4 is out of range"),
        ({"target": 1.5}, TypeError, "target"),
        ({"target": 0, "layer": "layer3", "channel": 0}, ValueError, "not both"),
        ({"channel": 0}, ValueError, "need a layer"),
        ({"target": 0, "n_steps": 0}, ValueError, "n_steps"),
        ({"target": 0, "lr": -1.0}, ValueError, "lr must be a finite number > 0"),
        ({"target": 0, "temporal_tv": float("nan")}, ValueError, "temporal_tv"),
        ({"target": 0, "clip_size": (16, 32)}, ValueError, r"clip_size must be \(T, H, W\)"),
        ({"target": 0, "clip_size": (1, 32, 32)}, ValueError, "needs at least 4"),
        ({"target": 0, "seed": 1.0}, TypeError, "seed must be an int"),
        ({"target": 0, "transforms": [1]}, TypeError, "transforms must be callables"),
    ],
)
def test_bad_arguments_give_clear_errors(demo_model, kwargs, error, match):
    before = model_snapshot(demo_model)
    with pytest.raises(error, match=match):
        ClipVisualization(demo_model).optimize(n_steps=kwargs.pop("n_steps", 1), **kwargs)
    assert_model_unchanged(before, demo_model)


def test_bad_constructor_and_objective_arguments(demo_model):
    with pytest.raises(TypeError, match="model must be"):
        ClipVisualization("model")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="layer units need the model to be an nn.Module"):
        ClipVisualization(lambda x: x.mean((2, 3, 4))).optimize(layer="a", channel=0)
    vis = ClipVisualization(demo_model)
    with pytest.raises(ValueError, match="2 clips but 1 units"):
        vis.objective(torch.rand(2, 3, 16, 32, 32), target=0)
    with pytest.raises(ValueError, match="clips must be a 5-D video tensor"):
        vis.objective(torch.rand(3, 16, 32, 32), target=0)
    with pytest.raises(TypeError, match="channels="):
        vis.optimize_layer("stem", channel=0)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: FourierClip(0, (4, 8, 8)), ValueError, "num_clips"),
        (lambda: FourierClip(1, (4, 8)), ValueError, "clip_size"),
        (lambda: FourierClip(1, (4, 8, 8), time_weight=0), ValueError, "time_weight"),
        (lambda: SpatialJitter(-1), ValueError, "pixels"),
        (lambda: TemporalJitter(1.5), TypeError, "frames"),
        (lambda: RandomScale("12"), TypeError, "scales"),
        (lambda: TemporalJitter(1)(torch.rand(3, 4, 8, 8), torch.Generator()), ValueError, "5-D"),
        (lambda: SpatialJitter(1)(torch.rand(1, 3, 4, 8, 8), 0), TypeError, "generator"),
        (lambda: temporal_total_variation(torch.rand(1, 3, 1, 8, 8)), ValueError, "clips"),
        (lambda: clip_grid(torch.rand(2, 3, 4, 8, 8), ncols=0), ValueError, "ncols"),
        (lambda: add_unit_clips(None, "u", torch.rand(1, 3, 4, 8, 8), fps=0), ValueError, "fps"),
    ],
)
def test_bad_arguments_of_the_parts(call, error, match):
    with pytest.raises(error, match=match):
        call()


# -- parametrisation, transforms, penalties -------------------------------------------------------


def test_fourier_clip_is_smooth_periodic_and_in_range():
    param = FourierClip(2, (8, 16, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        param.spectrum.normal_(0, 1.0)
        clips = param()
        logits = param.logits()
    assert clips.shape == (2, 3, 8, 16, 16) and 0 < clips.min() and clips.max() < 1
    power = torch.fft.fftn(logits, dim=(2, 3, 4)).abs() ** 2
    f = torch.fft.fftfreq(16).abs()
    low, high = power[..., f < 0.15, :][..., f < 0.15].mean(), power[..., f > 0.3, :].mean()
    assert low > 20 * high  # 1/f^2 scale: energy sits at low frequencies
    white = FourierClip(1, (8, 16, 16), decay_power=0.0)
    assert white.scale.max() == white.scale.min() == 1.0
    dec = FourierClip(1, (4, 4, 4), decorrelate=True)
    with torch.no_grad():
        dec.spectrum.normal_()
    assert not torch.allclose(
        dec.logits(),
        torch.fft.irfftn(
            torch.view_as_complex(dec.spectrum) * dec.scale,
            s=(4, 4, 4),
            dim=(2, 3, 4),
            norm="ortho",
        )
        / 4,
    )


def test_transforms_are_rolls_and_zooms_that_keep_the_shape():
    x = torch.rand(2, 3, 8, 12, 12)
    g = torch.Generator().manual_seed(0)
    shifted = TemporalJitter(3)(x, g)
    assert any(torch.equal(shifted, torch.roll(x, s, dims=2)) for s in range(-3, 4))
    moved = SpatialJitter(2)(x, g)
    assert any(
        torch.equal(moved, torch.roll(x, (dy, dx), dims=(3, 4)))
        for dy in range(-2, 3)
        for dx in range(-2, 3)
    )
    for factor in (0.8, 1.0, 1.25):
        assert RandomScale((factor,))(x, g).shape == x.shape
    flat = torch.full_like(x, 0.3)
    torch.testing.assert_close(RandomScale((0.8,))(flat, g), flat)
    assert [repr(t) for t in standard_transforms(1, 2, (1.0,))] == [
        "SpatialJitter(1)",
        "RandomScale((1.0,))",
        "SpatialJitter(1)",
        "TemporalJitter(2)",
    ]
    with pytest.raises(ValueError, match="scales must be finite positive"):
        RandomScale((0.0,))


def test_total_variation_separates_flicker_from_motion():
    static = torch.rand(1, 3, 1, 16, 16).expand(1, 3, 8, 16, 16)
    assert temporal_total_variation(static).item() == 0
    assert spatial_total_variation(static).item() > 0
    bar = torch.zeros(1, 3, 8, 16, 16)
    for t in range(8):
        bar[:, :, t, :, t : t + 8] = 1.0  # a wide bar moving right by 1 px/frame
    flicker = bar[:, :, :1].expand_as(bar) * (torch.arange(8) % 2).view(1, 1, 8, 1, 1)
    assert temporal_total_variation(flicker) > 3 * temporal_total_variation(bar)


# -- writing --------------------------------------------------------------------------------------


def test_write_unit_clips_one_file_per_unit(tmp_path: Path):
    ramp = torch.linspace(0.1, 0.9, 8)
    smooth = (ramp.view(1, 1, 8) + ramp.view(1, 8, 1)) / 2  # (1, 8, 8), plenty for H.264
    clips = (smooth * torch.linspace(0.6, 1.0, 6).view(6, 1, 1)).expand(2, 3, 6, 8, 8)
    paths = write_unit_clips(clips, tmp_path, names=["right", "layer3 ch5"], suffix=".gif", scale=2)
    assert [p.name for p in paths] == ["right.gif", "layer3_ch5.gif"]
    info = video_info(paths[1])
    assert info["frames"] == 6 and info["width"] == 16 and info["height"] > 16  # caption strip
    (mp4,) = write_unit_clips(clips[:1], tmp_path, caption=False, scale=1)
    assert mp4.name == "unit_0.mp4"
    decoded = read_video(mp4, num_frames=6, size=None)
    assert decoded.shape == (3, 6, 8, 8)
    assert (decoded - clips[0]).abs().mean() < 0.05  # H.264 is lossy
    with pytest.raises(ValueError, match="same file name"):
        write_unit_clips(clips, tmp_path, names=["a b", "a_b"])
    with pytest.raises(ValueError, match="names has 1 entries"):
        write_unit_clips(clips, tmp_path, names=["a"])
    with pytest.raises(ValueError, match="clips must have 3 channels"):
        write_unit_clips(torch.rand(2, 1, 6, 8, 8), tmp_path)


def test_add_unit_clips_writes_one_tag_per_unit(tmp_path: Path):
    clips = torch.randint(0, 256, (2, 3, 5, 8, 8)).float() / 255
    with SummaryWriter(str(tmp_path)) as writer:
        headers = add_unit_clips(writer, "units/motion", clips, ["right", "left"], global_step=3)
    assert [h["num_frames"] for h in headers] == [5, 5]
    assert headers[0]["method"] == "ClipVisualization" and headers[1]["info"] == {"unit": "left"}
    (events,) = tmp_path.glob("events.out.tfevents.*")
    tags = [v.tag for e in EventFileLoader(str(events)).Load() for v in e.summary.value]
    assert tags == ["units/motion/right", "units/motion/left"]


# -- the benchmark --------------------------------------------------------------------------------


def test_benchmark_reports_a_ratio_per_contender(demo_model):
    from benchmarks.units import BASELINE, bench_case

    case = bench_case("demo", demo_model, "layer2", 2, (4, 16, 16), 1, torch.device("cpu"), 1)
    ratios = case["ratios"][f"vs_{BASELINE}"]
    assert set(ratios) == {BASELINE, "logit", "logit_no_transforms", "channel"}
    assert ratios[BASELINE]["median"] == 1.0
    assert all(0 < r["median"] < float("inf") for r in ratios.values())
    assert all(s > 0 for s in case["seconds_per_step"].values())

"""Every public entry point refuses bad input clearly, never hangs and changes no state.

A table of rows, each one call of a public function or class (every name in ``__all__`` of the
modules in :data:`MODULES`) with one kind of bad input: channels-last, time-first or too short
clips, wrong channel counts, uint8 clips, NaN/inf values, float/str/negative targets, bad fps,
strides and sizes, mismatched shapes, files that are no videos. A row passes when the call
raises a ValueError or TypeError (an OSError subclass for a missing or unreadable file) whose
message names the argument, within 30 s, and leaves every model (parameters, buffers,
BatchNorm statistics, modes, hooks) and every tensor of the fixture (values and
``requires_grad``) as it was. The state rows run methods on a model in *train* mode with good
input: they must run it in eval mode (with a warning) and leave its BatchNorm statistics alone.

The table grows with the package: :func:`test_every_public_entry_point_has_rows` fails for a
public name that has no row and is not in :data:`EXEMPT` (constants, type aliases, result
tuples, functions without arguments). The counts of a run (tried / clear error / other) are
printed at the end of the module and written to ``$CAPTUM_VIDEO_BAD_INPUT_COUNTS`` when set.

The rows in :data:`OBSERVED` and the train-mode rows in :data:`STATE_OBSERVED` reproduce the
failures of the 741-input audit (they failed on the code before the shared checks).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import json
import math
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from captum.attr import FeatureAblation, Lime, NoiseTunnel, Saliency
from torch import nn

from captum_video import (
    attr,
    baselines,
    concept,
    datasets,
    explainers,
    flow,
    influence,
    io,
    masks,
    metrics,
    pipeline,
    registry,
    relevance,
    tensorboard,
    units,
    video_folder,
    visualization,
)
from captum_video.models import load_demo_model
from captum_video.models.transformer import VideoTransformerSmall
from tests.helpers import assert_model_unchanged, model_snapshot

MODULES = {
    "attr": attr,
    "metrics": metrics,
    "baselines": baselines,
    "masks": masks,
    "io": io,
    "visualization": visualization,
    "tensorboard": tensorboard,
    "concept": concept,
    "registry": registry,
    "relevance": relevance,
    "flow": flow,
    "datasets": datasets,
    "explainers": explainers,
    "pipeline": pipeline,
    "video_folder": video_folder,
    "units": units,
    "influence": influence,
}

#: Public names without rows, and why: nothing a caller passes can be bad.
EXEMPT = {
    # constants
    "units.COLOR_CORRELATION_SVD_SQRT": "constant",
    "influence.METHODS": "constant",
    # result types
    "influence.InfluentialClips": "result dataclass of VideoTracIn",
    "influence.SimilarClips": "result dataclass of VideoSimilarityInfluence",
    "influence.METRICS": "constant",
    "metrics.SeedStability": "result named tuple",
    "metrics.RoarResult": "result dataclass of remove_and_retrain",
    "metrics.StreamAblation": "result named tuple of stream_ablation",
    "attr.COMPOSITES": "constant: the composites by name",
    "baselines.FILLS": "constant",
    "baselines.WINDOW_DEPENDENT_FILLS": "constant",
    "baselines.PERTURBATIONS": "constant",
    "concept.ACT_POOLS": "constant",
    "registry.GENERIC": "constant: the fallback family",
    "registry.KINETICS400_CLASSES": "constant",
    "registry.NORMALIZATION_PRESETS": "constant",
    "registry.RESHAPE_PRESETS": "constant",
    "relevance.SIGNS": "constant",
    "datasets.VARIANTS": "constant",
    "explainers.EXPLAINERS": "constant: the method registry (read-only mapping)",
    "pipeline.TEMPORAL_OPS": "constant",
    "video_folder.VIDEO_SUFFIXES": "constant",
    # type aliases
    "registry.Layout": "type alias",
    "registry.ReshapeFn": "type alias",
    "registry.ResidualForward": "type alias",
    "relevance.ChannelReduction": "type alias",
    "explainers.Explainer": "type alias",
    # results: named tuples and dataclasses that methods return, built from checked values
    "attr.SpatioTemporalRelevance": "result named tuple of SpatioTemporalSplit",
    "metrics.AOPCResult": "result named tuple",
    "metrics.CausalCurve": "result named tuple",
    "metrics.PointingGameResult": "result named tuple",
    "metrics.SanityResult": "result named tuple",
    "concept.DiscoveredConcept": "result dataclass of discover_concepts",
    "concept.SignificanceResult": "result dataclass of significance",
    "concept.TCAVScores": "result dict of VideoTCAV.interpret",
    "explainers.MethodEntry": "pure dataclass: a registry entry (build, kwargs, output)",
    "pipeline.DatasetExplanation": "result dataclass of explain_dataset",
    # no arguments
    "attr.default_canonizers": "takes no arguments",
    "registry.families": "takes no arguments",
    "registry.model_names": "takes no arguments",
    "registry.residual_block_forwards": "takes no arguments",
    # abstract base classes: their subclasses have rows
    "attr.TubeAttribution": "abstract base class of GradCAMTube / SaliencyTube (rows there)",
    "attr.Canonizer": "abstract base class of the canonizers (rows there)",
    "attr.VideoLRPRule": "abstract base class of the rules (rows there)",
}

T, S = 8, 16  # frames and frame size of the fixture clips: small, above C3DSmall's 4 frames


# -- the fixture --------------------------------------------------------------------------------


class BNNet(nn.Module):
    """A tiny 3-D CNN with BatchNorm (put in train mode by the fixture) and a named layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm3d(4)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.act(self.bn(self.conv(x)))).flatten(1))


class Ctx:
    """Everything the rows use, built once per module; tensors are never meant to change."""

    def __init__(self, tmp: Path) -> None:
        g = torch.Generator().manual_seed(0)
        self.tmp = tmp
        self.model = load_demo_model("motion")
        self.bn = BNNet().train()
        self.tf = VideoTransformerSmall(depth=1, dim=8, heads=2).eval()
        self.clip = torch.rand(1, 3, T, S, S, generator=g)
        self.clips = torch.rand(2, 3, T, S, S, generator=g)
        self.tf_clip = torch.rand(1, 3, 16, 32, 32, generator=g)
        self.rel = torch.rand(1, 3, T, S, S, generator=g)
        self.rel1 = torch.rand(1, 1, T, S, S, generator=g)
        self.nan_rel = self.rel.clone()
        self.nan_rel[0, 0, 2, 3, 4] = float("nan")
        self.inf_clip = self.clip.clone()
        self.inf_clip[0, 1, 1, 1, 1] = float("inf")
        self.mask = torch.zeros(1, T, S, S, dtype=torch.bool)
        self.mask[:, :, 4:10, 4:10] = True
        self.video = torch.rand(3, T, S, S, generator=g)  # one clip (C, T, H, W)
        self.rect_video = torch.rand(3, T, S, S + 8, generator=g)  # H != W
        self.rect_rel = torch.rand(3, T, S + 8, S, generator=g)  # H and W swapped
        self.long_video = torch.rand(3, 40, S, S, generator=g)
        self.u8 = (self.clip * 255).to(torch.uint8)
        self.tokens = torch.rand(1, 1 + 2 * 4 * 4, 8, generator=g)
        self.frames_u8 = np.zeros((2, 8, 8, 3), np.uint8)
        self.png = tmp / "still.png"
        _save_png(self.png)
        self.empty = tmp / "empty.mp4"
        self.empty.write_bytes(b"")
        self.truncated = tmp / "truncated.mp4"
        self.truncated.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 8)
        self.flat = tmp / "flat"
        self.flat.mkdir()
        (self.flat / "a.mp4").write_bytes(b"\x00" * 32)
        self.tensors = {k: v for k, v in vars(self).items() if isinstance(v, torch.Tensor)}

    # a few helpers rows share

    def cl(self) -> torch.Tensor:
        """The clip channels-last: (N, T, H, W, C)."""
        return self.clip.permute(0, 2, 3, 4, 1)

    def tf_first(self) -> torch.Tensor:
        """The clip time-first: (N, T, C, H, W)."""
        return self.clip.permute(0, 2, 1, 3, 4)


def _save_png(path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Ctx:
    return Ctx(tmp_path_factory.mktemp("bad_input"))


# -- the rows -----------------------------------------------------------------------------------

ANY = (ValueError, TypeError)
FILE = (ValueError, TypeError, OSError)


@dataclass
class Row:
    entry: str  # "module.Name"
    case: str
    call: Callable[[Ctx], Any]
    names: str  # regex: the message must name the argument
    error: type | tuple[type, ...] = ANY

    @property
    def id(self) -> str:
        return f"{self.entry}[{self.case}]"

    @property
    def observed(self) -> bool:
        return self.id in OBSERVED


ROWS: list[Row] = []


def rows(entry: str, names: str, error: Any = ANY, **cases: Any) -> None:
    for case, call in cases.items():
        ROWS.append(Row(entry, case, call, names, error))


#: The rows that reproduce the audit's findings: each failed on the code before the shared
#: checks (checked against ``git archive`` of the commit before them).
OBSERVED = {
    "attr.GradCAMTube[channels_last]",
    "attr.GradCAMTube[time_first]",
    "attr.GradCAMTube[one_channel]",
    "attr.GradCAMTube[too_short]",
    "attr.GradCAMTube[noise_tunnel_uint8]",
    "attr.GradCAMTube[float_target]",
    "attr.GradCAMTube[str_target]",
    "attr.GradCAMTube[float_tensor_target]",
    "attr.TemporalOcclusion[channels_last]",
    "attr.TemporalOcclusion[two_channels]",
    "attr.TemporalOcclusion[too_short]",
    "attr.SelectiveRelevance[saliency_negative_target]",
    "attr.SelectiveRelevance[saliency_target_out_of_range]",
    "attr.SelectiveRelevance[saliency_float_target]",
    "metrics.pointing_game[nan]",
    "metrics.relevance_mass[nan]",
    "metrics.relevance_rank[nan]",
    "metrics.spearman_correlation[nan]",
    "io.read_video[png]",
    "io.video_info[png]",
    "io.sample_clips[channels_last]",
    "io.sample_clips[frame_stride_zero]",
    "io.sample_clips[frame_stride_negative]",
    "io.sample_clips[clip_stride_negative]",
    "io.normalize_video[uint8]",
    "tensorboard.add_relevance_clip[hw_swapped]",
    "tensorboard.add_relevance_clip[inf_fps]",
    "pipeline.explain_dataset[inf_fps]",
    "video_folder.VideoFolder[flat_folder]",
}


def _enter(manager: Any) -> None:
    with manager:
        pass


def _merge_in_train_mode() -> None:
    model = nn.Sequential(nn.Conv3d(3, 2, 1), nn.BatchNorm3d(2)).train()
    _enter(attr.canonized(model, [attr.MergeBatchNorm()]))


def _tube(c: Ctx) -> attr.GradCAMTube:
    return attr.GradCAMTube(c.model, c.model.layer2)


# attr: the attribution methods

rows(
    "attr.GradCAMTube",
    r"inputs",
    channels_last=lambda c: _tube(c).attribute(c.cl(), target=0),
    time_first=lambda c: _tube(c).attribute(c.tf_first(), target=0),
    one_channel=lambda c: _tube(c).attribute(c.clip[:, :1], target=0),
    too_short=lambda c: _tube(c).attribute(c.clip[:, :, :2], target=0),
    uint8=lambda c: _tube(c).attribute(c.u8, target=0),
    inf=lambda c: _tube(c).attribute(c.inf_clip, target=0),
    four_d=lambda c: _tube(c).attribute(c.video, target=0),
    not_a_tensor=lambda c: _tube(c).attribute(c.video.tolist(), target=0),
    noise_tunnel_uint8=lambda c: NoiseTunnel(_tube(c)).attribute(c.u8, nt_samples=2, target=0),
)
rows(
    "attr.GradCAMTube",
    r"target",
    float_target=lambda c: _tube(c).attribute(c.clip, target=1.5),
    str_target=lambda c: _tube(c).attribute(c.clip, target="up"),
    negative_target=lambda c: _tube(c).attribute(c.clip, target=-1),
    target_out_of_range=lambda c: _tube(c).attribute(c.clip, target=4),
    float_tensor_target=lambda c: _tube(c).attribute(c.clip, target=torch.tensor([0.0])),
)
rows(
    "attr.GradCAMTube",
    r"layer",
    layer_not_a_module=lambda c: attr.GradCAMTube(c.model, "layer2"),
)
rows(
    "attr.SaliencyTube",
    r"inputs",
    channels_last=lambda c: attr.SaliencyTube(c.model, c.model.layer2).attribute(c.cl(), target=0),
    too_short=lambda c: attr.SaliencyTube(c.model, c.model.layer2).attribute(
        c.clip[:, :, :3], target=0
    ),
)
rows(
    "attr.SaliencyTube",
    r"target",
    negative_target=lambda c: attr.SaliencyTube(c.model, c.model.layer2).attribute(
        c.clip, target=-2
    ),
)
rows(
    "attr.TemporalOcclusion",
    r"inputs",
    channels_last=lambda c: attr.TemporalOcclusion(c.model).attribute(c.cl(), target=0),
    two_channels=lambda c: attr.TemporalOcclusion(c.model).attribute(c.clip[:, :2], target=0),
    too_short=lambda c: attr.TemporalOcclusion(c.model).attribute(c.clip[:, :, :3], target=0),
)
rows(
    "attr.TemporalOcclusion",
    r"window|stride",
    window_zero=lambda c: attr.TemporalOcclusion(c.model).attribute(c.clip, window=0, target=0),
    stride_negative=lambda c: attr.TemporalOcclusion(c.model).attribute(
        c.clip, window=2, stride=-1, target=0
    ),
)
rows(
    "attr.TemporalOcclusion",
    r"target",
    float_target=lambda c: attr.TemporalOcclusion(c.model).attribute(c.clip, target=0.5),
)
rows(
    "attr.TemporalMask",
    r"inputs",
    time_first=lambda c: attr.TemporalMask(c.model).attribute(c.tf_first(), target=0, n_iter=1),
    nan=lambda c: attr.TemporalMask(c.model).attribute(c.nan_rel, target=0, n_iter=1),
)
rows(
    "attr.TemporalMask",
    r"n_iter",
    negative_iterations=lambda c: attr.TemporalMask(c.model).attribute(c.clip, n_iter=-1),
)
rows(
    "attr.TemporalMask",
    r"target",
    str_target=lambda c: attr.TemporalMask(c.model).attribute(c.clip, target="a", n_iter=1),
)
rows(
    "attr.SpatioTemporalSplit",
    r"inputs",
    channels_last=lambda c: attr.SpatioTemporalSplit(Saliency(c.model)).attribute(c.cl(), target=0),
    uint8=lambda c: attr.SpatioTemporalSplit(Saliency(c.model)).attribute(c.u8, target=0),
)
rows(
    "attr.SpatioTemporalSplit",
    r"attribution_method",
    not_a_method=lambda c: attr.SpatioTemporalSplit(c.model),
)
rows(
    "attr.SpatioTemporalSplit",
    r"static",
    unknown_static=lambda c: attr.SpatioTemporalSplit(Saliency(c.model), static="bogus"),
)
rows(
    "attr.SelectiveRelevance",
    r"target",
    saliency_negative_target=lambda c: attr.SelectiveRelevance(Saliency(c.model)).attribute(
        c.clip, target=-1
    ),
    saliency_target_out_of_range=lambda c: attr.SelectiveRelevance(Saliency(c.model)).attribute(
        c.clip, target=7
    ),
    saliency_float_target=lambda c: attr.SelectiveRelevance(Saliency(c.model)).attribute(
        c.clip, target=1.0
    ),
)
rows(
    "attr.SelectiveRelevance",
    r"inputs",
    channels_last=lambda c: attr.SelectiveRelevance(Saliency(c.model)).attribute(c.cl(), target=0),
    uint8=lambda c: attr.SelectiveRelevance(Saliency(c.model)).attribute(c.u8, target=0),
)
rows(
    "attr.SelectiveRelevance",
    r"sigma",
    nan_sigma=lambda c: attr.SelectiveRelevance(Saliency(c.model)).attribute(
        c.clip, sigma=float("nan"), target=0
    ),
)
rows(
    "attr.SelectiveRelevance",
    r"attribution_method",
    not_a_method=lambda c: attr.SelectiveRelevance(c.model),
)
rows(
    "attr.selective_relevance",
    r"relevance",
    nan=lambda c: attr.selective_relevance(c.nan_rel),
    four_d=lambda c: attr.selective_relevance(c.video),
)
rows(
    "attr.selective_relevance",
    r"sigma",
    negative_sigma=lambda c: attr.selective_relevance(c.rel, -1.0),
)
rows(
    "attr.DeepTaylor3D",
    r"inputs",
    channels_last=lambda c: attr.DeepTaylor3D(c.model).attribute(c.cl(), target=0),
    uint8=lambda c: attr.DeepTaylor3D(c.model).attribute(c.u8, target=0),
    too_short=lambda c: attr.DeepTaylor3D(c.model).attribute(c.clip[:, :, :1], target=0),
)
rows(
    "attr.DeepTaylor3D",
    r"target",
    str_target=lambda c: attr.DeepTaylor3D(c.model).attribute(c.clip, target="0"),
)
rows("attr.DeepTaylor3D", r"model", not_a_model=lambda c: attr.DeepTaylor3D("c3d"))
rows(
    "attr.DeepTaylor3D",
    r"composite",
    unknown_composite=lambda c: attr.DeepTaylor3D(c.model, composite="bogus"),
)
rows(
    "attr.AttentionRollout",
    r"inputs",
    channels_last=lambda c: attr.AttentionRollout(c.tf).attribute(c.tf_clip.permute(0, 2, 3, 4, 1)),
    uint8=lambda c: attr.AttentionRollout(c.tf).attribute((c.tf_clip * 255).byte()),
)
rows(
    "attr.AttentionRollout",
    r"forward_func",
    not_a_module=lambda c: attr.AttentionRollout(lambda x: x).attribute(c.tf_clip),
)
rows(
    "attr.GradientWeightedAttention",
    r"inputs",
    time_first=lambda c: attr.GradientWeightedAttention(c.tf).attribute(
        c.tf_clip.permute(0, 2, 1, 3, 4), target=0
    ),
)
rows(
    "attr.GradientWeightedAttention",
    r"target",
    negative_target=lambda c: attr.GradientWeightedAttention(c.tf).attribute(c.tf_clip, target=-1),
)

# attr: LRP rules, composites and canonizers

rows("attr.ZPlusRule", r"stabilizer", negative=lambda c: attr.ZPlusRule(stabilizer=-1.0))
rows("attr.ZEpsilonRule", r"stabilizer", nan=lambda c: attr.ZEpsilonRule(stabilizer=float("nan")))
rows("attr.ZBRule", r"low|high", low_above_high=lambda c: attr.ZBRule(low=1.0, high=0.0))
rows("attr.GammaRule", r"gamma", negative_gamma=lambda c: attr.GammaRule(gamma=-0.5))
rows("attr.FlatRule", r"stabilizer", str_stabilizer=lambda c: attr.FlatRule(stabilizer="x"))
rows(
    "attr.ProportionalRule", r"stabilizer", inf=lambda c: attr.ProportionalRule(stabilizer=math.inf)
)
rows(
    "attr.WinnerTakeAllRule",
    r"stabilizer",
    negative=lambda c: attr.WinnerTakeAllRule(stabilizer=-2),
)
rows("attr.PassRule", r"stabilizer", nan=lambda c: attr.PassRule(stabilizer=float("nan")))
rows("attr.Composite", r"layer_rules", not_a_mapping=lambda c: attr.Composite(layer_rules=3))
rows(
    "attr.MergeBatchNorm",
    r"eval|BatchNorm",
    train_mode=lambda c: _merge_in_train_mode(),
)
rows(
    "attr.ResidualAddCanonizer",
    r"block_types",
    not_a_mapping=lambda c: attr.ResidualAddCanonizer(3),
)
rows(
    "attr.ConstantGateCanonizer",
    r"block_types",
    not_a_mapping=lambda c: attr.ConstantGateCanonizer(3),
)
rows(
    "attr.NoInplaceReLU",
    r"model",
    not_a_model=lambda c: _enter(attr.canonized("model", [attr.NoInplaceReLU()])),
)
rows(
    "attr.canonized",
    r"canonizers",
    not_canonizers=lambda c: _enter(attr.canonized(c.model, [3])),
)

# metrics

rows(
    "metrics.deletion",
    r"attributions",
    nan=lambda c: metrics.deletion(c.model, c.clip, c.nan_rel, target=0, n_steps=2),
    shape=lambda c: metrics.deletion(c.model, c.clip, c.rel[:, :, :4], target=0, n_steps=2),
)
rows(
    "metrics.deletion",
    r"inputs",
    channels_last=lambda c: metrics.deletion(c.model, c.cl(), c.rel, target=0, n_steps=2),
    too_short=lambda c: metrics.deletion(
        c.model, c.clip[:, :, :2], c.rel[:, :, :2], target=0, n_steps=2
    ),
)
rows(
    "metrics.deletion",
    r"target",
    float_target=lambda c: metrics.deletion(c.model, c.clip, c.rel, target=1.5, n_steps=2),
)
rows(
    "metrics.insertion",
    r"attributions",
    inf=lambda c: metrics.insertion(c.model, c.clip, c.rel * math.inf, target=0, n_steps=2),
)
rows(
    "metrics.insertion",
    r"target",
    negative_target=lambda c: metrics.insertion(c.model, c.clip, c.rel, target=-1, n_steps=2),
)
rows(
    "metrics.insertion",
    r"n_steps",
    zero_steps=lambda c: metrics.insertion(c.model, c.clip, c.rel, target=0, n_steps=0),
)
rows(
    "metrics.aopc",
    r"attributions",
    nan=lambda c: metrics.aopc(c.model, c.clip, c.nan_rel, target=0, n_regions=2),
)
rows(
    "metrics.aopc",
    r"inputs",
    uint8=lambda c: metrics.aopc(c.model, c.u8, c.rel, target=0, n_regions=2),
)
rows(
    "metrics.aopc",
    r"n_regions",
    zero_regions=lambda c: metrics.aopc(c.model, c.clip, c.rel, target=0, n_regions=0),
)
rows(
    "metrics.temporal_sensitivity",
    r"x",
    channels_last=lambda c: metrics.temporal_sensitivity(c.model, c.cl(), target=0),
    too_short=lambda c: metrics.temporal_sensitivity(c.model, c.clip[:, :, :2], target=0),
)
rows(
    "metrics.temporal_sensitivity",
    r"target",
    str_target=lambda c: metrics.temporal_sensitivity(c.model, c.clip, target="up"),
)
rows(
    "metrics.temporal_sensitivity",
    r"ops|perturbation",
    unknown_op=lambda c: metrics.temporal_sensitivity(c.model, c.clip, ops=["bogus"]),
)
rows(
    "metrics.pointing_game",
    r"attributions",
    nan=lambda c: metrics.pointing_game(c.nan_rel, c.mask),
)
rows(
    "metrics.pointing_game",
    r"tolerance",
    nan_tolerance=lambda c: metrics.pointing_game(c.rel, c.mask, tolerance=float("nan")),
)
rows(
    "metrics.pointing_game",
    r"mask|ground",
    mask_shape=lambda c: metrics.pointing_game(c.rel, c.mask[:, :4]),
)
rows(
    "metrics.relevance_mass",
    r"attributions",
    nan=lambda c: metrics.relevance_mass(c.nan_rel, c.mask),
)
rows(
    "metrics.relevance_mass",
    r"relevance",
    unknown=lambda c: metrics.relevance_mass(c.rel, c.mask, relevance="bogus"),
)
rows(
    "metrics.relevance_rank",
    r"attributions",
    nan=lambda c: metrics.relevance_rank(c.nan_rel, c.mask),
)
rows(
    "metrics.relevance_rank",
    r"mask|ground",
    mask_hw_swapped=lambda c: metrics.relevance_rank(
        torch.rand(1, 1, T, S, S + 8), torch.zeros(1, T, S + 8, S, dtype=torch.bool)
    ),
)
rows(
    "metrics.flow_agreement",
    r"relevance",
    nan=lambda c: metrics.flow_agreement(c.nan_rel, c.clip),
)
rows(
    "metrics.flow_agreement",
    r"video",
    uint8=lambda c: metrics.flow_agreement(c.rel, c.u8),
)
rows(
    "metrics.spatial_bias",
    r"relevance|selected",
    nan=lambda c: metrics.spatial_bias(c.nan_rel, c.rel),
    shape=lambda c: metrics.spatial_bias(c.rel, c.rel[:, :, :4]),
)
rows(
    "metrics.randomization_sanity",
    r"inputs",
    channels_last=lambda c: metrics.randomization_sanity(
        lambda x, t: Saliency(c.model).attribute(x, target=t), c.model, c.cl(), target=0
    ),
)
rows(
    "metrics.randomization_sanity",
    r"layers",
    unknown_layer=lambda c: metrics.randomization_sanity(
        lambda x, t: x, c.model, c.clip, target=0, layers=["nope"]
    ),
)
rows(
    "metrics.randomization_sanity",
    r"model",
    not_a_model=lambda c: metrics.randomization_sanity(lambda x, t: x, "m", c.clip),
)
rows(
    "metrics.randomization_sanity",
    r"explain",
    not_callable=lambda c: metrics.randomization_sanity(3, c.model, c.clip),
)
rows(
    "metrics.spearman_correlation",
    r"\ba\b|\bb\b",
    nan=lambda c: metrics.spearman_correlation(
        torch.tensor([[1.0, float("nan"), 3.0]]), torch.tensor([[1.0, 2.0, 3.0]])
    ),
    shape=lambda c: metrics.spearman_correlation(torch.rand(2, 3), torch.rand(2, 4)),
)

# baselines

rows(
    "baselines.freeze",
    r"\bx\b",
    uint8=lambda c: baselines.freeze(c.u8),
    four_d=lambda c: baselines.freeze(c.video),
)
rows("baselines.freeze", r"frame", frame_out_of_range=lambda c: baselines.freeze(c.clip, frame=T))
rows(
    "baselines.freeze_soft",
    r"mask",
    mask_shape=lambda c: baselines.freeze_soft(c.clip, torch.ones(1, T + 1)),
)
rows("baselines.shuffle", r"\bx\b", channels_last=lambda c: baselines.shuffle(c.video))
rows("baselines.jumble", r"segment", zero_segment=lambda c: baselines.jumble(c.clip, 0))
rows("baselines.reverse", r"\bx\b", uint8=lambda c: baselines.reverse(c.u8))
rows(
    "baselines.reverse_masked",
    r"mask",
    mask_shape=lambda c: baselines.reverse_masked(c.clip, torch.ones(2, T)),
)
rows("baselines.subsample", r"rate", zero_rate=lambda c: baselines.subsample(c.clip, 0))
rows(
    "baselines.temporal_blur",
    r"sigma",
    nan_sigma=lambda c: baselines.temporal_blur(c.clip, float("nan")),
    negative=lambda c: baselines.temporal_blur(c.clip, -1.0),
)
rows(
    "baselines.spatial_blur", r"sigma", inf_sigma=lambda c: baselines.spatial_blur(c.clip, math.inf)
)
rows("baselines.mean_frame", r"\bx\b", a_list=lambda c: baselines.mean_frame([1.0, 2.0]))
rows(
    "baselines.baseline_fill",
    r"fill",
    unknown_fill=lambda c: baselines.baseline_fill(c.clip, "bogus"),
)
rows(
    "baselines.occlude_window",
    r"start|length",
    negative_start=lambda c: baselines.occlude_window(c.clip, -1, 2),
    zero_length=lambda c: baselines.occlude_window(c.clip, 0, 0),
)
rows(
    "baselines.occlude_windows",
    r"start|stop",
    start_after_stop=lambda c: baselines.occlude_windows(
        c.clip, torch.tensor([4]), torch.tensor([2])
    ),
)
rows(
    "baselines.get_perturbation",
    r"op|perturbation",
    unknown=lambda c: baselines.get_perturbation("bogus"),
)

# masks

rows("masks.frame_mask", r"video", four_d=lambda c: masks.frame_mask(c.video))
rows("masks.segment_mask", r"num_segments", zero=lambda c: masks.segment_mask(c.clip, 0))
rows("masks.tube_mask", r"cell", zero_cell=lambda c: masks.tube_mask(c.clip, (1, 0, 2)))
rows("masks.cuboid_ids", r"cell|size", negative=lambda c: masks.cuboid_ids((4, 8, 8), (1, -1, 2)))
rows(
    "masks.shifted_tube_mask",
    r"offset",
    past_the_cell=lambda c: masks.shifted_tube_mask(c.clip, (4, 8, 8), (0, 8, 0)),
    negative=lambda c: masks.shifted_tube_mask(c.clip, (4, 8, 8), (0, -1, 0)),
    two_axes=lambda c: masks.shifted_tube_mask(c.clip, (4, 8, 8), (1, 1)),
)
rows(
    "masks.shifted_tube_mask",
    r"cell",
    zero_cell=lambda c: masks.shifted_tube_mask(c.clip, (1, 0, 2), (0, 0, 0)),
)
rows(
    "masks.shifted_tube_mask",
    r"video",
    uint8=lambda c: masks.shifted_tube_mask(c.u8, (4, 8, 8), (0, 0, 0)),
)
rows(
    "masks.supervoxel_mask",
    r"n_segments",
    zero=lambda c: masks.supervoxel_mask(c.clip, n_segments=0),
)
rows("masks.supervoxel_mask", r"video", uint8=lambda c: masks.supervoxel_mask(c.u8))
rows(
    "masks.supervoxel_mask",
    r"offset",
    outside_the_cell=lambda c: masks.supervoxel_mask(c.clip, offset=(0.5, 1.5, 0.5)),
    two_axes=lambda c: masks.supervoxel_mask(c.clip, offset=(0.5, 0.5)),
)
rows("masks.flow_mask", r"video", one_frame=lambda c: masks.flow_mask(c.clip[:, :, :1]))
rows("masks.flow_mask", r"threshold", nan=lambda c: masks.flow_mask(c.clip, threshold=float("nan")))
rows("masks.num_features", r"mask", float_mask=lambda c: masks.num_features(c.rel))
rows("masks.relabel", r"mask", float_mask=lambda c: masks.relabel(c.rel))

# io

rows(
    "io.read_video",
    r"still\.png is not a video",
    FILE,
    png=lambda c: io.read_video(c.png, num_frames=2),
)
rows("io.read_video", r"empty\.mp4", FILE, empty=lambda c: io.read_video(c.empty))
rows("io.read_video", r"truncated\.mp4", FILE, truncated=lambda c: io.read_video(c.truncated))
rows("io.read_video", r"missing\.mp4", FILE, missing=lambda c: io.read_video(c.tmp / "missing.mp4"))
rows("io.read_video", r"num_frames", zero_frames=lambda c: io.read_video(c.png, num_frames=0))
rows("io.read_video", r"size", zero_size=lambda c: io.read_video(c.png, size=(0, 8)))
rows("io.read_video", r"path", not_a_path=lambda c: io.read_video(3))
rows(
    "io.video_info",
    r"still\.png is not a video",
    FILE,
    png=lambda c: io.video_info(c.png),
)
rows(
    "io.sample_clips",
    r"video",
    channels_last=lambda c: io.sample_clips(c.long_video.permute(1, 2, 3, 0), num_frames=4),
)
rows(
    "io.sample_clips",
    r"frame_stride|clip_stride|num_frames|num_clips",
    frame_stride_zero=lambda c: io.sample_clips(c.long_video, num_frames=4, frame_stride=0),
    frame_stride_negative=lambda c: io.sample_clips(c.long_video, num_frames=4, frame_stride=-2),
    clip_stride_negative=lambda c: io.sample_clips(c.long_video, num_frames=4, clip_stride=-3),
    zero_frames=lambda c: io.sample_clips(c.long_video, num_frames=0),
    float_clips=lambda c: io.sample_clips(c.long_video, num_frames=4, num_clips=2.5),
)
rows(
    "io.normalize_video",
    r"video",
    uint8=lambda c: io.normalize_video(c.u8),
    channels_last=lambda c: io.normalize_video(c.cl()),
    nan=lambda c: io.normalize_video(c.nan_rel),
)
rows("io.normalize_video", r"preset", unknown=lambda c: io.normalize_video(c.clip, "bogus"))
rows(
    "io.denormalize_video",
    r"std",
    zero_std=lambda c: io.denormalize_video(c.clip, None, mean=[0, 0, 0], std=[1, 0, 1]),
)
rows("io.denormalize_video", r"video", uint8=lambda c: io.denormalize_video(c.u8))
rows("io.video_preprocessor", r"preset", unknown=lambda c: io.video_preprocessor("bogus"))
rows("io.video_preprocessor", r"model", auto_without_model=lambda c: io.video_preprocessor("auto"))
rows("io.video_preprocessor", r"preprocess", not_callable=lambda c: io.video_preprocessor(3))

# visualization

V = visualization
rows(
    "visualization.normalize_video_attr",
    r"attr",
    nan=lambda c: V.normalize_video_attr(c.nan_rel),
)
rows(
    "visualization.normalize_video_attr",
    r"outlier_perc",
    negative=lambda c: V.normalize_video_attr(c.rel, outlier_perc=-5),
)
rows(
    "visualization.overlay_frames",
    r"video",
    uint8=lambda c: V.overlay_frames(c.rel[0], c.u8[0]),
    channels_last=lambda c: V.overlay_frames(c.rel[0], c.video.permute(1, 2, 3, 0)),
)
rows(
    "visualization.overlay_frames",
    r"attr",
    hw_swapped=lambda c: V.overlay_frames(c.rect_rel, c.rect_video),
)
rows(
    "visualization.two_hue_frames",
    r"spatial|temporal",
    nan=lambda c: V.two_hue_frames(c.nan_rel[0], c.rel[0], c.video),
)
rows(
    "visualization.visualize_video_attr",
    r"attr",
    hw_swapped=lambda c: V.visualize_video_attr(c.rect_rel, c.rect_video, use_pyplot=False),
)
rows(
    "visualization.visualize_video_attr",
    r"frames",
    frame_out_of_range=lambda c: V.visualize_video_attr(
        c.rel[0], c.video, frames=[T + 3], use_pyplot=False
    ),
)
rows(
    "visualization.visualize_video_attr_multiple",
    r"methods|signs",
    length_mismatch=lambda c: V.visualize_video_attr_multiple(
        c.rel[0], c.video, ["heat_map", "blended_heat_map"], ["absolute_value"], use_pyplot=False
    ),
)
rows("visualization.relevance_over_time", r"attr", nan=lambda c: V.relevance_over_time(c.nan_rel))
rows(
    "visualization.relevance_over_time",
    r"sign",
    unknown_sign=lambda c: V.relevance_over_time(c.rel, sign="bogus"),
)
rows(
    "visualization.plot_relevance_over_time",
    r"attrs|attr",
    nan=lambda c: V.plot_relevance_over_time(c.nan_rel, use_pyplot=False),
)
rows(
    "visualization.render_tube_stack",
    r"attr|video",
    frames_mismatch=lambda c: V.render_tube_stack(c.rel[:, :, :4], c.video),
    uint8=lambda c: V.render_tube_stack(c.rel, (c.video * 255).byte()),
)
rows(
    "visualization.render_tube_stack_frames",
    r"focus",
    focus_out_of_range=lambda c: V.render_tube_stack_frames(c.rel, c.video, focus=[T + 5]),
)
rows(
    "visualization.plot_tube_stack",
    r"attr",
    nan=lambda c: V.plot_tube_stack(c.nan_rel, c.video, use_pyplot=False),
)
rows(
    "visualization.spatiotemporal_overlay",
    r"frame",
    frame_out_of_range=lambda c: V.spatiotemporal_overlay(
        c.rel[0], c.rel[0], c.video, frame=T + 1, use_pyplot=False
    ),
)
rows(
    "visualization.write_video",
    r"fps",
    inf_fps=lambda c: V.write_video(c.rel[0], c.tmp / "inf.gif", fps=math.inf, video=c.video),
    zero_fps=lambda c: V.write_video(c.rel[0], c.tmp / "zero.gif", fps=0, video=c.video),
)
rows(
    "visualization.write_video",
    r"frames_or_attr|attr",
    hw_swapped=lambda c: V.write_video(c.rect_rel, c.tmp / "swap.gif", video=c.rect_video),
)
rows(
    "visualization.VideoEncoder",
    r"fps",
    nan_fps=lambda c: V.VideoEncoder(c.tmp / "x.mp4", fps=float("nan")),
)
rows(
    "visualization.VideoEncoder",
    r"codec",
    unknown_codec=lambda c: V.VideoEncoder(c.tmp / "x.mp4", fps=8, codec="bogus"),
)
rows(
    "visualization.caption_frames",
    r"frames",
    float_frames=lambda c: V.caption_frames(c.frames_u8.astype(np.float32), "x"),
)
rows(
    "visualization.caption_frames",
    r"times",
    times_mismatch=lambda c: V.caption_frames(c.frames_u8, "x", times=[0.0]),
)
rows("visualization.frame_label", r"index|total", negative=lambda c: V.frame_label(-1, 4))

# tensorboard


class _Writer:
    """Collects summaries like a FileWriter (nothing reaches the disk)."""

    def __init__(self) -> None:
        self.summaries: list[Any] = []

    def add_summary(self, summary: Any, step: Any = None, walltime: Any = None) -> None:
        self.summaries.append(summary)


rows(
    "tensorboard.add_relevance_clip",
    r"attribution",
    hw_swapped=lambda c: tensorboard.add_relevance_clip(_Writer(), "t", c.rect_video, c.rect_rel),
    nan=lambda c: tensorboard.add_relevance_clip(_Writer(), "t", c.video, c.nan_rel[0]),
)
rows(
    "tensorboard.add_relevance_clip",
    r"fps",
    inf_fps=lambda c: tensorboard.add_relevance_clip(
        _Writer(), "t", c.video, c.rel[0], fps=math.inf
    ),
)
rows(
    "tensorboard.add_relevance_clip",
    r"video",
    uint8=lambda c: tensorboard.add_relevance_clip(_Writer(), "t", c.u8[0], c.rel[0]),
)

# concept


def _tcav(c: Ctx, model: nn.Module | None = None) -> concept.VideoTCAV:
    return concept.VideoTCAV(model if model is not None else c.model, "layer2")


def _sets(c: Ctx) -> list[list[Any]]:
    g = torch.Generator().manual_seed(1)
    made = [
        concept.VideoConcept(i, f"c{i}", clips=torch.rand(4, 3, T, S, S, generator=g))
        for i in range(2)
    ]
    return [made]


rows(
    "concept.VideoTCAV",
    r"inputs",
    channels_last=lambda c: _tcav(c).interpret(c.cl(), _sets(c), target=0),
    too_short=lambda c: _tcav(c).interpret(c.clip[:, :, :2], _sets(c), target=0),
)
rows(
    "concept.VideoTCAV",
    r"target",
    negative_target=lambda c: _tcav(c).interpret(c.clip, _sets(c), target=-1),
)
rows("concept.VideoTCAV", r"layer", unknown_layer=lambda c: concept.VideoTCAV(c.model, "nope"))
rows(
    "concept.VideoConcept",
    r"clips",
    uint8=lambda c: concept.VideoConcept(0, "u8", clips=(torch.rand(2, 3, T, S, S) * 255).byte()),
    channels_last=lambda c: concept.VideoConcept(0, "cl", clips=torch.rand(2, T, S, S, 3)),
)
rows(
    "concept.VideoConcept",
    r"batch_size",
    zero=lambda c: concept.VideoConcept(0, "x", clips=c.clips, batch_size=0),
)
rows(
    "concept.TorchLinearClassifier",
    r"alpha|steps|loss|test_split_ratio",
    negative_alpha=lambda c: concept.TorchLinearClassifier(alpha=-1.0),
    bad_split=lambda c: concept.TorchLinearClassifier(test_split_ratio=1.5),
)
rows(
    "concept.discover_concepts",
    r"videos",
    uint8=lambda c: concept.discover_concepts(c.model, "layer2", c.u8),
    channels_last=lambda c: concept.discover_concepts(c.model, "layer2", c.cl()),
)
rows(
    "concept.discover_concepts",
    r"target",
    float_target=lambda c: concept.discover_concepts(c.model, "layer2", c.clips, target=0.5),
)
rows(
    "concept.dynamic_clip",
    r"boxes",
    boxes_shape=lambda c: concept.dynamic_clip(c.video, torch.zeros(T, 3), num_frames=4),
)
rows(
    "concept.dynamic_clip",
    r"num_frames",
    zero=lambda c: concept.dynamic_clip(c.video, torch.zeros(T, 4), 0),
)
rows("concept.kmeans", r"\bk\b", zero_k=lambda c: concept.kmeans(torch.rand(10, 3), 0))
rows("concept.kmeans", r"\bx\b", nan=lambda c: concept.kmeans(torch.full((10, 3), float("nan")), 2))
rows(
    "concept.pool_activations",
    r"act_pool",
    unknown=lambda c: concept.pool_activations(c.rel, "bogus"),
)
rows(
    "concept.significance", r"alpha", bad_alpha=lambda c: concept.significance({"s": {}}, alpha=2.0)
)
rows("concept.significance", r"scores", not_a_dict=lambda c: concept.significance([1, 2]))
rows("concept.static_clip", r"num_frames", zero=lambda c: concept.static_clip(c.video[:, 0], 0))
rows("concept.static_clip", r"frame", uint8=lambda c: concept.static_clip(c.u8[0, :, 0], 4))
rows("concept.static_twin", r"clip", uint8=lambda c: concept.static_twin(c.u8[0]))
rows(
    "concept.static_twin",
    r"frame_index",
    out_of_range=lambda c: concept.static_twin(c.video, T + 2),
)

# registry

R = registry
rows("registry.FramesAsBatchAdapter", r"model", not_a_model=lambda c: R.FramesAsBatchAdapter("m"))
rows("registry.HFVideoAdapter", r"model", not_a_model=lambda c: R.HFVideoAdapter("m"))
rows("registry.VideoAdapter", r"model", not_a_model=lambda c: R.VideoAdapter(3))
rows("registry.PathwayAdapter", r"alpha", zero_alpha=lambda c: R.PathwayAdapter(c.model, alpha=0))
rows(
    "registry.ModelFamily", r"model_types", not_types=lambda c: R.ModelFamily("x", model_types=(3,))
)
rows("registry.TokenReshape", r"grid", zero=lambda c: R.TokenReshape(grid=(0, 4, 4)))
rows(
    "registry.TokenReshape",
    r"order",
    unknown=lambda c: R.TokenReshape(grid=(2, 4, 4), order="bogus"),
)
rows("registry.adapt", r"model", not_a_model=lambda c: R.adapt("m"))
rows(
    "registry.bounds_from_normalization",
    r"preset|mean|std",
    unknown=lambda c: R.bounds_from_normalization("bogus"),
    zero_std=lambda c: R.bounds_from_normalization([0.5, 0.5, 0.5], [0.0, 1.0, 1.0]),
)
rows(
    "registry.channels_first",
    r"output|tensor",
    not_a_tensor=lambda c: R.channels_first(3),
)
rows(
    "registry.channels_last_to_channels_first",
    r"output|tensor",
    three_d=lambda c: R.channels_last_to_channels_first(torch.rand(2, 3, 4)),
)
rows("registry.class_names_of", r"model", not_a_model=lambda c: R.class_names_of(3))
rows(
    "registry.classifier_of", r"model|classifier", unknown=lambda c: R.classifier_of(nn.Identity())
)
rows("registry.default_layer", r"layer", unknown=lambda c: R.default_layer(nn.Identity()))
rows("registry.head_layer", r"model|head", not_a_model=lambda c: R.head_layer(3))
rows("registry.family_of", r"model", not_a_model=lambda c: R.family_of(3))
rows("registry.find_family", r"model", not_a_model=lambda c: R.find_family("x"))
rows(
    "registry.input_size_of",
    r"default",
    bad_default=lambda c: R.input_size_of(c.model, default=(0, 1)),
)
rows("registry.first_tensor", r"output", no_tensor=lambda c: R.first_tensor(3))
rows("registry.load_model", r"model|name", unknown=lambda c: R.load_model("bogus"))
rows(
    "registry.load_model",
    r"weights|still\.png",
    FILE,
    not_weights=lambda c: R.load_model("demo", weights=c.png),
)
rows("registry.needs_weights_file", r"model|name", unknown=lambda c: R.needs_weights_file("bogus"))
rows("registry.min_frames_of", r"model", not_a_model=lambda c: R.min_frames_of(3))
rows(
    "registry.mvit_tokens_to_volume",
    r"output|tokens",
    not_tokens=lambda c: R.mvit_tokens_to_volume(torch.rand(2, 3)),
)
rows("registry.normalization_of", r"model", not_a_model=lambda c: R.normalization_of(3))
rows("registry.normalization_stats", r"preset", unknown=lambda c: R.normalization_stats("bogus"))
rows("registry.pack_pathways", r"alpha", zero_alpha=lambda c: R.pack_pathways(c.clip, alpha=0))
rows("registry.pack_pathways", r"clip", uint8=lambda c: R.pack_pathways(c.u8))
rows("registry.parse_model_name", r"name|model", empty=lambda c: R.parse_model_name(""))
rows("registry.pathways_to_volumes", r"pathway", not_pathways=lambda c: R.pathways_to_volumes(3))
rows(
    "registry.preset_for_stats",
    r"mean|std",
    length_mismatch=lambda c: R.preset_for_stats([0.5, 0.5], [0.2, 0.2, 0.2], "x"),
)
rows(
    "registry.read_state_dict",
    r"still\.png|state dict|path",
    FILE,
    png=lambda c: R.read_state_dict(c.png),
)
rows("registry.register_family", r"family", not_a_family=lambda c: R.register_family("x"))
rows(
    "registry.register_optional_families",
    r"library",
    unknown=lambda c: R.register_optional_families("bogus"),
)
rows("registry.reshape_for", r"layer", not_a_layer=lambda c: R.reshape_for(c.model, "layer2"))
rows(
    "registry.resolve_reshape",
    r"reshape",
    unknown=lambda c: R.resolve_reshape("bogus", c.model, c.model.layer2),
)
rows(
    "registry.token_grid_to_volume",
    r"grid|tokens",
    grid_too_large=lambda c: R.token_grid_to_volume(c.tokens, (4, 4, 4)),
)
rows(
    "registry.tokens_to_volume",
    r"order",
    unknown_order=lambda c: R.tokens_to_volume(c.tokens[:, 1:], (2, 4, 4), order="bogus"),
)

# relevance

rows("relevance.apply_sign", r"sign", unknown=lambda c: relevance.apply_sign(c.rel, "bogus"))
rows(
    "relevance.reduce_channels",
    r"mode",
    unknown=lambda c: relevance.reduce_channels(c.rel, "bogus"),
)
rows("relevance.reduce_channels", r"attr", four_d=lambda c: relevance.reduce_channels(c.video))
rows(
    "relevance.relevance_per_frame",
    r"relevance",
    nan=lambda c: relevance.relevance_per_frame(c.nan_rel),
)
rows(
    "relevance.relevance_per_frame",
    r"normalize",
    unknown=lambda c: relevance.relevance_per_frame(c.rel, normalize="bogus"),
)
rows(
    "relevance.upsample_to_input",
    r"size",
    zero=lambda c: relevance.upsample_to_input(c.rel1, (0, S, S)),
)
rows(
    "relevance.upsample_to_input",
    r"layer_attr",
    four_d=lambda c: relevance.upsample_to_input(c.video, (T, S, S)),
)

# flow

rows(
    "flow.optical_flow",
    r"video",
    uint8=lambda c: flow.optical_flow(c.u8),
    one_frame=lambda c: flow.optical_flow(c.clip[:, :, :1]),
    channels_last=lambda c: flow.optical_flow(c.cl()),
)
rows(
    "flow.flow_magnitude",
    r"flow",
    wrong_shape=lambda c: flow.flow_magnitude(torch.rand(1, 3, 4, 8, 8)),
)
rows(
    "flow.motion_mask",
    r"threshold",
    nan=lambda c: flow.motion_mask(c.clip, threshold=float("nan")),
)

# datasets

rows(
    "datasets.MovingShapes",
    r"variant|num_frames|num_samples|size",
    unknown_variant=lambda c: datasets.MovingShapes("bogus"),
    zero_frames=lambda c: datasets.MovingShapes(num_frames=0),
    negative_samples=lambda c: datasets.MovingShapes(num_samples=-1),
    zero_size=lambda c: datasets.MovingShapes(size=0),
)

# explainers

rows(
    "explainers.build_method",
    r"name|method",
    unknown=lambda c: explainers.build_method("bogus", c.model),
)
rows(
    "explainers.make_explainer",
    r"name|method",
    unknown=lambda c: explainers.make_explainer("bogus", c.model),
)
rows(
    "explainers.make_explainer",
    r"clips|inputs",
    channels_last=lambda c: explainers.make_explainer("gradcam_tube", c.model)(
        c.cl(), torch.tensor([0])
    ),
)
rows(
    "explainers.make_explainer",
    r"target",
    negative_target=lambda c: explainers.make_explainer("saliency", c.model)(
        c.clip, torch.tensor([-1])
    ),
)
rows(
    "explainers.plan_chunks",
    r"budget",
    negative_budget=lambda c: explainers.plan_chunks(
        explainers.EXPLAINERS["saliency"], c.model, c.clip, -1, {}
    ),
)
rows(
    "explainers.predict",
    r"clips|inputs",
    channels_last=lambda c: explainers.predict(c.model, c.cl()),
)

# pipeline


def _before_any_work(out: Path, run: Callable[[Path], Any]) -> Any:
    """``run(out)``, which must refuse its arguments before it writes anything to ``out``."""
    try:
        return run(out)
    finally:
        if out.exists() and any(out.iterdir()):
            raise AssertionError(f"{out} was written before the bad argument was refused")


def _data(c: Ctx) -> Any:
    return torch.utils.data.TensorDataset(c.clips, torch.tensor([0, 1]))


rows(
    "pipeline.explain_dataset",
    r"fps",
    inf_fps=lambda c: _before_any_work(
        c.tmp / "run_inf",
        lambda out: pipeline.explain_dataset(
            c.model, _data(c), "saliency", out, fps=math.inf, progress=False
        ),
    ),
)
rows(
    "pipeline.explain_dataset",
    r"shard_size|highlights|target",
    zero_shard=lambda c: pipeline.explain_dataset(
        c.model, _data(c), "saliency", c.tmp / "run_shard", shard_size=0, progress=False
    ),
    negative_target=lambda c: pipeline.explain_dataset(
        c.model, _data(c), "saliency", c.tmp / "run_target", target=-1, progress=False
    ),
)

# video_folder

rows(
    "video_folder.VideoFolder",
    r"labels_from_folders|class folders",
    flat_folder=lambda c: video_folder.VideoFolder(c.flat, labels_from_folders=True),
)
rows(
    "video_folder.VideoFolder",
    r"num_frames|size",
    zero_frames=lambda c: video_folder.VideoFolder(c.flat, num_frames=0),
    zero_size=lambda c: video_folder.VideoFolder(c.flat, size=(0, 4)),
)
rows(
    "video_folder.find_videos",
    r"missing",
    FILE,
    missing=lambda c: video_folder.find_videos(c.tmp / "missing"),
)


# -- running the rows ---------------------------------------------------------------------------

COUNTS = {"tried": 0, "clear error": 0, "other": 0}
OTHER: list[str] = []


# -- units (activation maximisation as clips) -----------------------------------------------

U = units
rows("units.ClipVisualization", "model", not_callable=lambda c: U.ClipVisualization("model"))
rows(
    "units.ClipVisualization",
    "layer",
    unknown_layer=lambda c: U.ClipVisualization(c.model).optimize(layer="layer9", channel=0),
    foreign_module=lambda c: U.ClipVisualization(c.model).optimize(layer=c.bn.conv, channel=0),
)
rows(
    "units.ClipVisualization",
    "channel",
    channel_out_of_range=lambda c: U.ClipVisualization(c.model).optimize(
        layer="layer3", channel=32
    ),
    negative_channel=lambda c: U.ClipVisualization(c.model).optimize(layer="layer3", channel=-1),
    float_channel=lambda c: U.ClipVisualization(c.model).optimize(layer="layer3", channel=1.5),
)
rows(
    "units.ClipVisualization",
    "target",
    target_out_of_range=lambda c: U.ClipVisualization(c.model).optimize(target=4),
    float_target=lambda c: U.ClipVisualization(c.model).optimize(target=0.5),
    no_unit=lambda c: U.ClipVisualization(c.model).optimize(),
)
rows(
    "units.ClipVisualization",
    "neuron",
    neuron_outside=lambda c: U.ClipVisualization(c.model).optimize(
        layer="layer3", channel=0, neuron=(0, 0, 9)
    ),
)
rows(
    "units.ClipVisualization",
    "clip_size",
    short_clip=lambda c: U.ClipVisualization(c.model).optimize(target=0, clip_size=(2, S, S)),
    two_dims=lambda c: U.ClipVisualization(c.model).optimize(target=0, clip_size=(S, S)),
)
rows(
    "units.ClipVisualization",
    "n_steps|lr|temporal_tv",
    zero_steps=lambda c: U.ClipVisualization(c.model).optimize(target=0, n_steps=0),
    negative_lr=lambda c: U.ClipVisualization(c.model).optimize(target=0, lr=-0.1),
    nan_tv=lambda c: U.ClipVisualization(c.model).optimize(target=0, temporal_tv=float("nan")),
)
rows(
    "units.ClipVisualization",
    "clips",
    objective_uint8=lambda c: U.ClipVisualization(c.model).objective(c.u8, target=0),
    objective_channels_last=lambda c: U.ClipVisualization(c.model).objective(c.cl(), target=0),
    objective_nan=lambda c: U.ClipVisualization(c.model).objective(c.inf_clip, target=0),
)
rows(
    "units.FourierClip",
    "num_clips|clip_size|decay_power",
    zero_clips=lambda c: U.FourierClip(0, (T, S, S)),
    bad_size=lambda c: U.FourierClip(1, (T, S)),
    negative_decay=lambda c: U.FourierClip(1, (T, S, S), decay_power=-1.0),
)
rows("units.SpatialJitter", "pixels", negative=lambda c: U.SpatialJitter(-1))
rows("units.SpatialJitter", "clips", four_d=lambda c: U.SpatialJitter(1)(c.video, _g()))
rows("units.TemporalJitter", "frames", float_frames=lambda c: U.TemporalJitter(1.5))
rows("units.TemporalJitter", "generator", no_generator=lambda c: U.TemporalJitter(1)(c.clip, 0))
rows(
    "units.RandomScale",
    "scales",
    zero=lambda c: U.RandomScale((0.0,)),
    text=lambda c: U.RandomScale("1"),
)
rows("units.standard_transforms", "pixels|frames", negative=lambda c: U.standard_transforms(-1))
rows(
    "units.apply_transforms",
    "clips|transforms",
    uint8=lambda c: U.apply_transforms(c.u8, [], _g()),
    not_callable=lambda c: U.apply_transforms(c.clip, [1], _g()),
)
rows("units.spatial_total_variation", "clips", four_d=lambda c: U.spatial_total_variation(c.video))
rows(
    "units.temporal_total_variation",
    "clips",
    one_frame=lambda c: U.temporal_total_variation(c.clip[:, :, :1]),
)
rows(
    "units.clip_grid",
    "clips|ncols",
    grey=lambda c: U.clip_grid(c.rel1),
    zero_cols=lambda c: U.clip_grid(c.clips, ncols=0),
)
rows(
    "units.write_unit_clips",
    "clips|names|suffix|format",
    uint8=lambda c: U.write_unit_clips(c.u8, c.tmp / "units"),
    one_name=lambda c: U.write_unit_clips(c.clips, c.tmp / "units", names=["a"]),
    suffix=lambda c: U.write_unit_clips(c.clips, c.tmp / "units", suffix=".png"),
)
rows(
    "units.add_unit_clips",
    "clips|attributions|fps",
    nan=lambda c: U.add_unit_clips(_NoWriter(), "u", c.inf_clip),
    attributions=lambda c: U.add_unit_clips(_NoWriter(), "u", c.clips, attributions=c.rel),
    fps=lambda c: U.add_unit_clips(_NoWriter(), "u", c.clips, fps=0),
)


def _g() -> torch.Generator:
    return torch.Generator().manual_seed(0)


class _NoWriter:
    """A writer that must never be reached: every row fails before writing."""

    def add_summary(self, *args: Any) -> None:
        raise AssertionError("wrote despite bad input")


# -- stable perturbation methods, stability, two-stream models --------------------------------

rows(
    "attr.AggregatedPerturbation",
    r"inputs",
    channels_last=lambda c: attr.AggregatedPerturbation(FeatureAblation(c.model)).attribute(
        c.cl(), target=0
    ),
    too_short=lambda c: attr.AggregatedPerturbation(FeatureAblation(c.model)).attribute(
        c.clip[:, :, :3], target=0
    ),
)
rows(
    "attr.AggregatedPerturbation",
    r"n_runs|n_samples|mask|method",
    zero_runs=lambda c: attr.AggregatedPerturbation(Lime(c.model), n_runs=0),
    budget_below_runs=lambda c: attr.AggregatedPerturbation(Lime(c.model), n_runs=4).attribute(
        c.clip, target=0, n_samples=2
    ),
    bad_cell=lambda c: attr.AggregatedPerturbation(Lime(c.model), mask=(4, 0, 8)),
    not_perturbation=lambda c: attr.AggregatedPerturbation(Saliency(c.model)),
)
rows(
    "attr.AggregatedPerturbation",
    r"target",
    float_target=lambda c: attr.AggregatedPerturbation(
        FeatureAblation(c.model), mask=(4, 8, 8)
    ).attribute(c.clip, target=0.5),
    out_of_range=lambda c: attr.AggregatedPerturbation(
        FeatureAblation(c.model), mask=(4, 8, 8)
    ).attribute(c.clip, target=9),
)
rows(
    "metrics.seed_stability",
    r"seeds",
    one_seed=lambda c: metrics.seed_stability(lambda x, t: x, c.clip, seeds=[0]),
)
rows(
    "metrics.seed_stability",
    r"inputs",
    channels_last=lambda c: metrics.seed_stability(lambda x, t: x, c.cl(), seeds=[0, 1]),
)
rows(
    "metrics.seed_stability",
    r"explain",
    not_callable=lambda c: metrics.seed_stability(3, c.clip),
)
rows(
    "metrics.rank_stability",
    r"maps",
    one_run=lambda c: metrics.rank_stability(c.rel[None]),
    nan=lambda c: metrics.rank_stability(torch.stack([c.nan_rel, c.rel])),
    not_tensor=lambda c: metrics.rank_stability("maps"),
)


@functools.cache
def _two_stream() -> nn.Module:
    return load_demo_model("two_stream_motion")


def _pair(c: Ctx) -> tuple[torch.Tensor, torch.Tensor]:
    return (c.clip, c.clip[:, :2])  # (rgb, flow) of the fixture clip


rows(
    "metrics.stream_relevance_shares",
    r"attributions",
    one_tensor=lambda c: metrics.stream_relevance_shares(c.rel),
    batch_mismatch=lambda c: metrics.stream_relevance_shares((c.rel, c.clips)),
    nan=lambda c: metrics.stream_relevance_shares((c.rel, c.nan_rel)),
    uint8=lambda c: metrics.stream_relevance_shares((c.rel, c.u8)),
)
rows(
    "metrics.stream_relevance_shares",
    r"mode|reduction",
    bad_mode=lambda c: metrics.stream_relevance_shares((c.rel, c.rel), mode="signed"),
    bad_reduction=lambda c: metrics.stream_relevance_shares((c.rel, c.rel), reduction="max"),
)
rows(
    "metrics.stream_ablation",
    r"inputs",
    one_tensor=lambda c: metrics.stream_ablation(_two_stream(), c.clip),
    inf=lambda c: metrics.stream_ablation(_two_stream(), (c.inf_clip, c.clip[:, :2])),
    batch_mismatch=lambda c: metrics.stream_ablation(_two_stream(), (c.clip, c.clips[:, :2])),
)
rows(
    "metrics.stream_ablation",
    r"replace",
    unknown=lambda c: metrics.stream_ablation(_two_stream(), _pair(c), replace="noise"),
    wrong_count=lambda c: metrics.stream_ablation(_two_stream(), _pair(c), replace=(0.0,)),
    not_broadcast=lambda c: metrics.stream_ablation(
        _two_stream(), _pair(c), replace=(torch.zeros(5), 0.0)
    ),
)
rows(
    "metrics.stream_ablation",
    r"target",
    out_of_range=lambda c: metrics.stream_ablation(_two_stream(), _pair(c), target=7),
    float_target=lambda c: metrics.stream_ablation(_two_stream(), _pair(c), target=1.5),
)
rows(
    "visualization.flow_relevance_frames",
    r"flow",
    time_first=lambda c: visualization.flow_relevance_frames(
        c.video[:2].permute(1, 0, 2, 3), c.rel
    ),
    inf=lambda c: visualization.flow_relevance_frames(c.video[:2] * math.inf, c.rel),
)
rows(
    "visualization.flow_relevance_frames",
    r"relevance",
    shape=lambda c: visualization.flow_relevance_frames(c.video[:2], c.rel[:, :, :4]),
    nan=lambda c: visualization.flow_relevance_frames(c.video[:2], c.nan_rel),
)
rows(
    "visualization.flow_relevance_frames",
    r"sign|style|scale|video",
    sign_all=lambda c: visualization.flow_relevance_frames(c.video[:2], c.rel, sign="all"),
    bad_style=lambda c: visualization.flow_relevance_frames(c.video[:2], c.rel, style="quiver"),
    zero_scale=lambda c: visualization.flow_relevance_frames(c.video[:2], c.rel, scale=0),
    video_range=lambda c: visualization.flow_relevance_frames(
        c.video[:2], c.rel, video=c.video * 3
    ),
)
rows(
    "visualization.write_flow_overlay",
    r"format",
    bad_suffix=lambda c: visualization.write_flow_overlay(c.tmp / "x.mp3", c.video[:2], c.rel),
)


# -- influence (explanation by example) ---------------------------------------------------------


def _influence_ckpt(c: Ctx, model: nn.Module | None = None) -> Path:
    """One checkpoint (the model's own weights) for the TracIn rows."""
    model = c.model if model is None else model
    path = c.tmp / f"influence_{type(model).__name__}.pt"
    if not path.exists():
        torch.save(model.state_dict(), path)
    return path


def _tracin(c: Ctx) -> Any:
    return influence.VideoTracIn(c.model, (c.clips, torch.tensor([0, 1])), _influence_ckpt(c))


rows(
    "influence.VideoTracIn",
    r"checkpoints",
    no_checkpoints=lambda c: influence.VideoTracIn(c.model, (c.clips, torch.tensor([0, 1])), None),
    folder_without_checkpoints=lambda c: influence.VideoTracIn(
        c.model, (c.clips, torch.tensor([0, 1])), c.flat
    ),
)
rows(
    "influence.VideoTracIn",
    r"checkpoints",
    FILE,
    missing_file=lambda c: influence.VideoTracIn(
        c.model, (c.clips, torch.tensor([0, 1])), [c.tmp / "missing.pt"]
    ),
)
rows(
    "influence.VideoTracIn",
    r"checkpoint",
    not_a_checkpoint=lambda c: influence.VideoTracIn(
        c.model, (c.clips, torch.tensor([0, 1])), [c.png]
    ),
    other_architecture=lambda c: influence.VideoTracIn(
        c.model, (c.clips, torch.tensor([0, 1])), [_influence_ckpt(c, c.bn)]
    ),
)
rows(
    "influence.VideoTracIn",
    r"train_dataset",
    unlabelled=lambda c: influence.VideoTracIn(
        c.model, torch.utils.data.TensorDataset(c.clips), _influence_ckpt(c)
    ),
    label_first=lambda c: influence.VideoTracIn(
        c.model, [(0, c.video), (1, c.video)], _influence_ckpt(c)
    ),
    label_out_of_range=lambda c: influence.VideoTracIn(
        c.model, (c.clips, torch.tensor([9, 0])), _influence_ckpt(c)
    ),
    channels_last=lambda c: influence.VideoTracIn(
        c.model, (c.clips.permute(0, 2, 3, 4, 1), torch.tensor([0, 1])), _influence_ckpt(c)
    ),
    uint8=lambda c: influence.VideoTracIn(
        c.model, ((c.clips * 255).to(torch.uint8), torch.tensor([0, 1])), _influence_ckpt(c)
    ),
    labels_mismatch=lambda c: influence.VideoTracIn(
        c.model, (c.clips, torch.tensor([0])), _influence_ckpt(c)
    ),
)
rows(
    "influence.VideoTracIn",
    r"method",
    unknown_method=lambda c: influence.VideoTracIn(
        c.model, (c.clips, torch.tensor([0, 1])), _influence_ckpt(c), method="exact"
    ),
)
rows(
    "influence.VideoTracIn",
    r"final_fc_layer",
    not_linear=lambda c: influence.VideoTracIn(
        c.model, (c.clips, torch.tensor([0, 1])), _influence_ckpt(c), final_fc_layer="layer3"
    ),
)
rows(
    "influence.VideoTracIn",
    r"clips",
    channels_last=lambda c: _tracin(c).proponents(c.cl(), k=1),
    one_clip_4d=lambda c: _tracin(c).proponents(c.clips[0], k=1),
    uint8=lambda c: _tracin(c).opponents(c.u8, k=1),
    inf=lambda c: _tracin(c).influence(c.inf_clip),
)
rows(
    "influence.VideoTracIn",
    r"\bk\b",
    zero=lambda c: _tracin(c).proponents(c.clips, k=0),
    more_than_training_clips=lambda c: _tracin(c).proponents(c.clips, k=3),
)
rows(
    "influence.VideoTracIn",
    r"target",
    out_of_range=lambda c: _tracin(c).proponents(c.clips, target=4, k=1),
    float_target=lambda c: _tracin(c).proponents(c.clips, target=1.5, k=1),
)


def _tracin_rand_proj(c: Ctx) -> Any:
    return influence.VideoTracIn(
        c.model, (c.clips, torch.tensor([0, 1])), _influence_ckpt(c), method="fast_rand_proj"
    )


rows(
    "influence.VideoTracIn",
    r"projection_dim",
    projection_with_fast=lambda c: influence.VideoTracIn(
        c.model, (c.clips, torch.tensor([0, 1])), _influence_ckpt(c), projection_dim=16
    ),
    projection_zero=lambda c: influence.VideoTracIn(
        c.model,
        (c.clips, torch.tensor([0, 1])),
        _influence_ckpt(c),
        method="fast_rand_proj",
        projection_dim=0,
    ),
    projection_float=lambda c: influence.VideoTracIn(
        c.model,
        (c.clips, torch.tensor([0, 1])),
        _influence_ckpt(c),
        method="fast_rand_proj",
        projection_dim=16.0,
    ),
)
rows(
    "influence.VideoTracIn",
    r"\bseed\b",
    negative_seed=lambda c: influence.VideoTracIn(
        c.model,
        (c.clips, torch.tensor([0, 1])),
        _influence_ckpt(c),
        method="fast_rand_proj",
        projection_dim=16,
        seed=-1,
    ),
)
rows(
    "influence.VideoTracIn",
    r"clips",
    rand_proj_channels_last=lambda c: _tracin_rand_proj(c).proponents(c.cl(), k=1),
    rand_proj_inf=lambda c: _tracin_rand_proj(c).influence(c.inf_clip),
)
rows(
    "influence.VideoTracIn",
    r"\bk\b",
    rand_proj_more_than_training_clips=lambda c: _tracin_rand_proj(c).opponents(c.clips, k=3),
)


def _neighbors(c: Ctx) -> Any:
    index = influence.ExactNearestNeighbors()
    index.setup(c.clips.flatten(1))
    return index


rows(
    "influence.ExactNearestNeighbors",
    r"chunk_size",
    zero_chunk_size=lambda c: influence.ExactNearestNeighbors(chunk_size=0),
    float_chunk_size=lambda c: influence.ExactNearestNeighbors(chunk_size=2.5),
)
rows(
    "influence.ExactNearestNeighbors",
    r"\bdata\b",
    one_dimensional=lambda c: influence.ExactNearestNeighbors().setup(c.clips[0, 0, 0, 0]),
    integer=lambda c: influence.ExactNearestNeighbors().setup((c.clips * 255).to(torch.uint8)),
    not_a_tensor=lambda c: influence.ExactNearestNeighbors().setup(c.frames_u8),
    nan=lambda c: influence.ExactNearestNeighbors().setup(c.nan_rel),
)
rows(
    "influence.ExactNearestNeighbors",
    r"query",
    other_width=lambda c: _neighbors(c).get_nearest_neighbors(c.clip[:, :1].flatten(1), 1),
    no_batch_dimension=lambda c: _neighbors(c).get_nearest_neighbors(c.clip.flatten(), 1),
)
rows(
    "influence.ExactNearestNeighbors",
    r"\bk\b",
    zero_k=lambda c: _neighbors(c).get_nearest_neighbors(c.clip.flatten(1), 0),
    more_than_stored=lambda c: _neighbors(c).get_nearest_neighbors(c.clip.flatten(1), 3),
)


def _similar(c: Ctx) -> Any:
    return influence.VideoSimilarityInfluence(c.model, (c.clips, torch.tensor([0, 1])))


rows(
    "influence.VideoSimilarityInfluence",
    r"train_dataset",
    unlabelled=lambda c: influence.VideoSimilarityInfluence(
        c.model, torch.utils.data.TensorDataset(c.clips)
    ),
    label_first=lambda c: influence.VideoSimilarityInfluence(c.model, [(0, c.video), (1, c.video)]),
    label_out_of_range=lambda c: influence.VideoSimilarityInfluence(
        c.model, (c.clips, torch.tensor([9, 0]))
    ),
    channels_last=lambda c: influence.VideoSimilarityInfluence(
        c.model, (c.clips.permute(0, 2, 3, 4, 1), torch.tensor([0, 1]))
    ),
    uint8=lambda c: influence.VideoSimilarityInfluence(
        c.model, ((c.clips * 255).to(torch.uint8), torch.tensor([0, 1]))
    ),
    labels_mismatch=lambda c: influence.VideoSimilarityInfluence(
        c.model, (c.clips, torch.tensor([0]))
    ),
)
rows(
    "influence.VideoSimilarityInfluence",
    r"model",
    not_a_module=lambda c: influence.VideoSimilarityInfluence(
        lambda x: x, (c.clips, torch.tensor([0, 1]))
    ),
)
rows(
    "influence.VideoSimilarityInfluence",
    r"metric",
    unknown_metric=lambda c: influence.VideoSimilarityInfluence(
        c.model, (c.clips, torch.tensor([0, 1])), metric="dot"
    ),
)
rows(
    "influence.VideoSimilarityInfluence",
    r"layer",
    not_a_module_name=lambda c: influence.VideoSimilarityInfluence(
        c.model, (c.clips, torch.tensor([0, 1])), layer="layer9"
    ),
    module_of_another_model=lambda c: influence.VideoSimilarityInfluence(
        c.model, (c.clips, torch.tensor([0, 1])), layer=c.bn.fc
    ),
    number=lambda c: influence.VideoSimilarityInfluence(
        c.model, (c.clips, torch.tensor([0, 1])), layer=3
    ),
)
rows(
    "influence.VideoSimilarityInfluence",
    r"activation_dir",
    a_file=lambda c: influence.VideoSimilarityInfluence(
        c.model, (c.clips, torch.tensor([0, 1])), activation_dir=c.png
    ),
    not_a_path=lambda c: influence.VideoSimilarityInfluence(
        c.model, (c.clips, torch.tensor([0, 1])), activation_dir=3
    ),
)
rows(
    "influence.VideoSimilarityInfluence",
    r"batch_size",
    zero=lambda c: influence.VideoSimilarityInfluence(
        c.model, (c.clips, torch.tensor([0, 1])), batch_size=0
    ),
)
rows(
    "influence.VideoSimilarityInfluence",
    r"clips",
    channels_last=lambda c: _similar(c).most_similar(c.cl(), k=1),
    one_clip_4d=lambda c: _similar(c).most_similar(c.clips[0], k=1),
    uint8=lambda c: _similar(c).least_similar(c.u8, k=1),
    inf=lambda c: _similar(c).most_similar(c.inf_clip, k=1),
)
rows(
    "influence.VideoSimilarityInfluence",
    r"\bk\b",
    zero=lambda c: _similar(c).most_similar(c.clips, k=0),
    more_than_training_clips=lambda c: _similar(c).least_similar(c.clips, k=3),
)
rows(
    "influence.ClipLabelDataset",
    r"train_dataset",
    unlabelled=lambda c: influence.ClipLabelDataset(torch.utils.data.TensorDataset(c.clips)),
    empty=lambda c: influence.ClipLabelDataset(torch.utils.data.TensorDataset(c.clips[:0])),
    not_a_dataset=lambda c: influence.ClipLabelDataset(3),
)
rows(
    "influence.as_clip_label_dataset",
    r"train_dataset",
    labels_mismatch=lambda c: influence.as_clip_label_dataset((c.clips, torch.tensor([0]))),
    channels_last=lambda c: influence.as_clip_label_dataset(
        (c.clips.permute(0, 2, 3, 4, 1), torch.tensor([0, 1]))
    ),
)
rows(
    "influence.find_checkpoints",
    r"checkpoints",
    none=lambda c: influence.find_checkpoints(None),
    not_a_path=lambda c: influence.find_checkpoints(3),
    folder_without_checkpoints=lambda c: influence.find_checkpoints(c.flat),
)
rows(
    "influence.CheckpointLoader",
    r"checkpoint",
    not_a_checkpoint=lambda c: influence.CheckpointLoader()(c.model, str(c.png)),
    other_architecture=lambda c: influence.CheckpointLoader()(
        c.model, str(_influence_ckpt(c, c.bn))
    ),
)
rows(
    "influence.influence_frames",
    r"test_clip",
    uint8=lambda c: influence.influence_frames((c.video * 255).to(torch.uint8), [c.video]),
    channels_last=lambda c: influence.influence_frames(c.video.permute(1, 2, 3, 0), [c.video]),
)
rows(
    "influence.influence_frames",
    r"proponent_clips",
    other_shape=lambda c: influence.influence_frames(c.video, [c.rect_video]),
    nothing=lambda c: influence.influence_frames(c.video, []),
)
rows(
    "influence.render_influence",
    r"proponents",
    no_results=lambda c: influence.render_influence(c.video, [(c.video, 0)]),
)


# -- remove and retrain (ROAR / KAR) ---------------------------------------------------------

rows(
    "metrics.ablate_top",
    r"attributions",
    nan=lambda c: metrics.ablate_top(c.clip, c.nan_rel, 0.1),
    shape=lambda c: metrics.ablate_top(c.clip, c.rel[:, :, :4], 0.1),
)
rows("metrics.ablate_top", r"clips", uint8=lambda c: metrics.ablate_top(c.u8, c.rel, 0.1))
rows("metrics.ablate_top", r"fraction", too_big=lambda c: metrics.ablate_top(c.clip, c.rel, 1.5))
rows(
    "metrics.ablate_top",
    r"mode",
    bad_mode=lambda c: metrics.ablate_top(c.clip, c.rel, 0.1, mode="keep"),
)


def _retrain(c: Ctx, **changes: Any) -> Any:
    """``remove_and_retrain`` on the fixture clips, with one argument made bad."""
    args = {
        "train_clips": c.clips,
        "train_labels": torch.tensor([0, 1]),
        "train_attributions": c.clips,
        "test_clips": c.clips,
        "test_labels": torch.tensor([0, 1]),
        "test_attributions": c.clips,
        "model_factory": nn.Identity,
        "train_fn": lambda *a: None,
    }
    return metrics.remove_and_retrain(**{**args, **changes})


rows(
    "metrics.remove_and_retrain",
    r"train_labels",
    labels=lambda c: _retrain(c, train_labels=torch.tensor([0])),
)
rows(
    "metrics.remove_and_retrain",
    r"test_attributions",
    shape=lambda c: _retrain(c, test_attributions=c.clips[:, :, :4]),
)
rows("metrics.remove_and_retrain", r"fraction", percent=lambda c: _retrain(c, fractions=(10,)))
rows("metrics.roar_curve", r"result", not_result=lambda c: metrics.roar_curve([0.1, 0.5]))


def _tensor_state(c: Ctx) -> dict[str, tuple[torch.Tensor, bool]]:
    return {k: (v.detach().clone(), v.requires_grad) for k, v in c.tensors.items()}


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values (NaN where NaN was) and dtype."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if not a.is_floating_point():
        return torch.equal(a, b)
    return bool(torch.allclose(a, b, rtol=0, atol=0, equal_nan=True))


def _models(c: Ctx) -> dict[str, nn.Module]:
    return {"model": c.model, "bn": c.bn, "tf": c.tf}


def _outcome(r: Row, c: Ctx) -> str:
    """Run one row; return "" when it behaved (a clear error, nothing changed), else why."""
    before = {k: model_snapshot(m) for k, m in _models(c).items()}
    tensors = _tensor_state(c)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r.call(c)
    except r.error as err:
        message = str(err)
        problem = "" if re.search(r.names, message) else f"message does not name {r.names!r}"
    except Exception as err:  # noqa: BLE001 - the point is to classify it
        problem = f"{type(err).__name__} instead of {r.error}: {str(err)[:300]}"
        message = ""
    else:
        problem = "no error"
        message = ""
    for name, model in _models(c).items():
        try:
            assert_model_unchanged(before[name], model)
        except AssertionError as err:
            problem += f"; model {name} changed: {err}"
    for name, (value, req) in tensors.items():
        now = c.tensors[name]
        if now.requires_grad != req or not _same(now.detach(), value):
            problem += f"; tensor {name} changed"
    if not problem and not message:
        problem = "empty message"
    return problem.lstrip("; ")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("r", ROWS, ids=lambda r: r.id)
def test_bad_input_is_refused_clearly(r: Row, ctx: Ctx) -> None:
    COUNTS["tried"] += 1
    problem = _outcome(r, ctx)
    if problem:
        COUNTS["other"] += 1
        OTHER.append(f"{r.id}: {problem}")
    else:
        COUNTS["clear error"] += 1
    assert not problem, problem


# -- state: a model in train mode, good input -------------------------------------------------


def _sanity(c: Ctx) -> Any:
    return metrics.randomization_sanity(
        lambda x, t: Saliency(c.bn).attribute(x, target=t), c.bn, c.clip, target=0, layers=["fc"]
    )


STATE = {
    "GradCAMTube": lambda c: attr.GradCAMTube(c.bn, c.bn.act).attribute(c.clip, target=0),
    "SaliencyTube": lambda c: attr.SaliencyTube(c.bn, c.bn.act, classifier=c.bn.fc).attribute(
        c.clip, target=0
    ),
    "NoiseTunnel(GradCAMTube)": lambda c: NoiseTunnel(attr.GradCAMTube(c.bn, c.bn.act)).attribute(
        c.clip, nt_samples=2, target=0
    ),
    "TemporalOcclusion": lambda c: attr.TemporalOcclusion(c.bn).attribute(
        c.clip, window=2, target=0
    ),
    "TemporalMask": lambda c: attr.TemporalMask(c.bn).attribute(c.clip, target=0, n_iter=2),
    "SpatioTemporalSplit": lambda c: attr.SpatioTemporalSplit(Saliency(c.bn)).attribute(
        c.clip, target=0
    ),
    "SelectiveRelevance(Saliency)": lambda c: attr.SelectiveRelevance(Saliency(c.bn)).attribute(
        c.clip, target=0
    ),
    "DeepTaylor3D": lambda c: attr.DeepTaylor3D(c.bn).attribute(c.clip, target=0),
    "randomization_sanity": _sanity,
    "deletion": lambda c: metrics.deletion(c.bn, c.clip, c.rel, target=0, n_steps=2),
    "insertion": lambda c: metrics.insertion(c.bn, c.clip, c.rel, target=0, n_steps=2),
    "aopc": lambda c: metrics.aopc(c.bn, c.clip, c.rel, target=0, n_regions=2),
    "temporal_sensitivity": lambda c: metrics.temporal_sensitivity(c.bn, c.clip, target=0),
    "VideoTCAV.interpret": lambda c: concept.VideoTCAV(c.bn, "act").interpret(
        c.clips, _sets(c), target=0
    ),
    "ClipVisualization.optimize": lambda c: units.ClipVisualization(c.bn).optimize(
        target=0, n_steps=2, clip_size=(T, S, S)
    ),
    "AggregatedPerturbation": lambda c: attr.AggregatedPerturbation(
        FeatureAblation(c.bn), n_runs=2, mask=(4, 8, 8)
    ).attribute(c.clip, target=0),
    "VideoSimilarityInfluence": lambda c: influence.VideoSimilarityInfluence(
        c.bn, (c.clips, torch.tensor([0, 1]))
    ).most_similar(c.clip, k=1),
    "VideoTracIn": lambda c: influence.VideoTracIn(
        c.bn, (c.clips, torch.tensor([0, 1])), _influence_ckpt(c, c.bn), method="full"
    ).proponents(c.clip, k=1),
}
#: The methods the audit saw changing BatchNorm statistics.
STATE_OBSERVED = {"GradCAMTube", "TemporalOcclusion", "randomization_sanity"}
STATE_COUNTS = {"tried": 0, "unchanged": 0, "changed": 0}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", sorted(STATE))
def test_train_mode_model_is_left_as_it_was(name: str, ctx: Ctx) -> None:
    STATE_COUNTS["tried"] += 1
    before = model_snapshot(ctx.bn)
    tensors = _tensor_state(ctx)
    with pytest.warns(UserWarning, match="eval mode"):
        STATE[name](ctx)
    try:
        assert_model_unchanged(before, ctx.bn)
        for key, (value, req) in tensors.items():
            assert ctx.tensors[key].requires_grad == req and _same(ctx.tensors[key].detach(), value)
    except AssertionError:
        STATE_COUNTS["changed"] += 1
        raise
    STATE_COUNTS["unchanged"] += 1


@pytest.mark.timeout(30)
def test_selective_saliency_restores_requires_grad_after_an_error(ctx: Ctx) -> None:
    """Observed: Captum's Saliency left requires_grad=True on the caller's clip."""
    clip = ctx.clip.clone()

    def failing_model(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("model failed")

    with pytest.raises(RuntimeError, match="model failed"):
        attr.SelectiveRelevance(Saliency(failing_model)).attribute(clip, target=0)
    assert not clip.requires_grad


# -- coverage and counts ------------------------------------------------------------------------


def _public_entries() -> list[str]:
    names = []
    for short, module in MODULES.items():
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isclass(obj) or callable(obj):
                names.append(f"{short}.{name}")
            else:
                names.append(f"{short}.{name}")  # constants must be exempted explicitly
    return names


def test_every_public_entry_point_has_rows() -> None:
    covered = {r.entry for r in ROWS}
    missing = [n for n in _public_entries() if n not in covered and n not in EXEMPT]
    assert not missing, (
        f"public entry points without bad-input rows (add rows or exempt): {missing}"
    )
    stale = [n for n in EXEMPT if n not in _public_entries()]
    assert not stale, f"exemptions of names that are no longer public: {stale}"
    unknown = sorted({r.entry for r in ROWS} - set(_public_entries()))
    assert not unknown, f"rows for names that are not public: {unknown}"


def test_observed_failures_are_rows() -> None:
    assert OBSERVED <= {r.id for r in ROWS}, OBSERVED - {r.id for r in ROWS}
    assert STATE_OBSERVED <= set(STATE)


@pytest.fixture(scope="module", autouse=True)
def _report_counts(request: pytest.FixtureRequest) -> Any:
    yield
    if not COUNTS["tried"]:
        return
    line = (
        f"bad-input suite: {COUNTS['tried']} tried / {COUNTS['clear error']} clear error / "
        f"{COUNTS['other']} other; train-mode state: {STATE_COUNTS['tried']} tried / "
        f"{STATE_COUNTS['unchanged']} unchanged / {STATE_COUNTS['changed']} changed"
    )
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None:
        # Teardown output is captured (and dropped on success): print past the capture.
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line("")
            reporter.write_line(line)
            for other in OTHER:
                reporter.write_line(f"  other: {other}")
    target = os.environ.get("CAPTUM_VIDEO_BAD_INPUT_COUNTS")
    if target:
        Path(target).write_text(
            json.dumps({"rows": COUNTS, "state": STATE_COUNTS, "other": OTHER}, indent=2)
        )


def test_module_list_matches_the_package() -> None:
    for short in MODULES:
        assert importlib.import_module(f"captum_video.{short}") is MODULES[short]

"""Attention rollout and gradient-weighted attention relevance against hand computations.

Oracles are dense: every layer's token mixing matrix is built as the full ``S x S`` matrix
(with Python loops where it is block-structured), the products are taken with plain matrix
multiplication, and the attention probabilities come from a forward written out by hand (the
toy transformer) or from hooks independent of the method's capture (TimeSformer's
``attn_drop`` inputs). Hugging Face models are tiny random configurations saved to a temp
folder and loaded back with ``load_model("hf:<folder>")``.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import _get_current_function_mode_stack
from torchvision.models.video.mvit import MSBlockConfig, MViT

from captum_video.attr import AttentionRollout, GradientWeightedAttention
from captum_video.attr._attention import capture_attention
from captum_video.models import C3DSmall, VideoTransformerSmall
from captum_video.registry import adapt, load_model
from captum_video.registry.attention import (
    AttentionLayout,
    AttentionStep,
    Tokens,
    attention_layout,
)
from tests.helpers import assert_model_unchanged, model_snapshot

METHODS = (AttentionRollout, GradientWeightedAttention)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- a toy transformer whose attention is computed by hand -----------------------------------


class Toy(nn.Module):
    """Class token + a (2, 2, 2) grid of 2x4x4 tubelets, ``layers`` pre-norm blocks."""

    grid = (2, 2, 2)

    def __init__(self, layers: int, dim: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.embed = nn.Conv3d(3, dim, (2, 4, 4), stride=(2, 4, 4))
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.qkv = nn.ModuleList([nn.Linear(dim, 3 * dim) for _ in range(layers)])
        self.mlp = nn.ModuleList([nn.Linear(dim, dim) for _ in range(layers)])
        self.head = nn.Linear(dim, 3)

    def attention(self, i: int, x: Tensor) -> Tensor:
        """Layer ``i``'s probabilities ``(N, heads, S, S)``: softmax(q k^T / sqrt(d))."""
        n, s, d = x.shape
        q, k, _ = self.qkv[i](x).view(n, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = torch.einsum("nhid,nhjd->nhij", q, k) / math.sqrt(d // self.heads)
        return torch.exp(scores) / torch.exp(scores).sum(-1, keepdim=True)

    def run(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1)
        probs = []
        for i in range(len(self.qkv)):
            n, s, d = h.shape
            a = self.attention(i, h)
            v = self.qkv[i](h).view(n, s, 3, self.heads, d // self.heads)[:, :, 2]
            h = h + torch.einsum("nhij,njhd->nihd", a, v).reshape(n, s, d)
            h = h + torch.tanh(self.mlp[i](h))
            probs.append(a)
        return self.head(h[:, 0]), probs

    def forward(self, x: Tensor) -> Tensor:
        return self.run(x)[0]


class ToyAttention(nn.Module):
    """Where the method's capture looks: the toy's forward with each softmax in a module."""

    def __init__(self, toy: Toy) -> None:
        super().__init__()
        self.toy = toy
        self.attn = nn.ModuleList([_Softmax() for _ in toy.qkv])

    def forward(self, x: Tensor) -> Tensor:
        toy = self.toy
        tokens = toy.embed(x).flatten(2).transpose(1, 2)
        h = torch.cat([toy.cls.expand(len(x), -1, -1), tokens], dim=1)
        for i in range(len(toy.qkv)):
            n, s, d = h.shape
            q, k, v = toy.qkv[i](h).view(n, s, 3, toy.heads, d // toy.heads).permute(2, 0, 3, 1, 4)
            a = self.attn[i]((q @ k.transpose(-2, -1)) / math.sqrt(d // toy.heads))
            h = h + (a @ v).transpose(1, 2).reshape(n, s, d)
            h = h + torch.tanh(toy.mlp[i](h))
        return toy.head(h[:, 0])


class _Softmax(nn.Module):
    def forward(self, scores: Tensor) -> Tensor:
        return F.softmax(scores, dim=-1)


def toy_layout(layers: int) -> AttentionLayout:
    tokens = Tokens(Toy.grid, prefix=1)
    return AttentionLayout(
        tuple(AttentionStep(f"attn.{i}", "joint", tokens) for i in range(layers))
    )


def rollout_oracle(mixing: list[Tensor], residual: list[Tensor] | None = None) -> Tensor:
    """Dense rollout ``R = hat A_L ... hat A_1``, ``hat A = rownorm(A / 2 + K / 2)``."""
    total = None
    for i, a in enumerate(mixing):
        k = torch.eye(a.shape[-1]).expand_as(a) if residual is None else residual[i]
        mixed = 0.5 * a + 0.5 * k
        mixed = mixed / mixed.sum(-1, keepdim=True)
        total = mixed if total is None else mixed @ total
    assert total is not None
    return total


def relevance_oracle(weighted: list[Tensor], residual: list[Tensor] | None = None) -> Tensor:
    """Dense ``R <- K R + bar A R`` from ``R = I`` (``K = I`` for square steps)."""
    total = None
    for i, a in enumerate(weighted):
        k = torch.eye(a.shape[-1]).expand_as(a) if residual is None else residual[i]
        step = k + a
        total = step if total is None else step @ total
    assert total is not None
    return total


def to_grid(row: Tensor, grid: tuple[int, int, int], prefix: int = 1) -> Tensor:
    return row[:, prefix:].reshape(row.shape[0], 1, *grid)


@pytest.mark.parametrize("layers", [1, 2])
def test_rollout_equals_the_hand_computation_on_a_toy(layers):
    toy = Toy(layers).eval()
    model = ToyAttention(toy).eval()
    clip = torch.rand(2, 3, 4, 8, 8)
    with torch.no_grad():
        _, probs = toy.run(clip)
    rollout = rollout_oracle([a.mean(1) for a in probs])
    expected = to_grid(rollout[:, 0], Toy.grid)
    method = AttentionRollout(model, layout=toy_layout(layers))
    got = method.attribute(clip, interpolate=False)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    if layers == 1:  # the spec's closed form: 0.5 * A[cls] + 0.5 * e_cls (rows sum to 1)
        torch.testing.assert_close(got, to_grid(0.5 * probs[0].mean(1)[:, 0], Toy.grid))
    up = method.attribute(clip)
    torch.testing.assert_close(up, F.interpolate(expected, size=(4, 8, 8), mode="trilinear"))


@pytest.mark.parametrize("layers", [1, 2])
def test_gradient_weighted_relevance_equals_the_hand_computation_on_a_toy(layers):
    toy = Toy(layers).eval()
    model = ToyAttention(toy).eval()
    clip = torch.rand(2, 3, 4, 8, 8)
    target = [0, 2]
    logits, probs = toy.run(clip)
    grads = torch.autograd.grad(logits[[0, 1], target].sum(), probs)
    weighted = [(g * a).clamp(min=0).mean(1).detach() for g, a in zip(grads, probs, strict=True)]
    expected = to_grid(relevance_oracle(weighted)[:, 0], Toy.grid)
    got = GradientWeightedAttention(model, layout=toy_layout(layers)).attribute(
        clip, target=target, interpolate=False
    )
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    # target=None is each clip's predicted class
    predicted = model(clip).argmax(1)
    method = GradientWeightedAttention(model, layout=toy_layout(layers))
    torch.testing.assert_close(method.attribute(clip), method.attribute(clip, target=predicted))


def test_rollout_of_identity_attention_keeps_every_token_to_itself():
    class Identity(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.ModuleList([_Softmax(), _Softmax()])

        def forward(self, x: Tensor) -> Tensor:
            eye = torch.eye(9).expand(len(x), 2, 9, 9) * 1e4  # softmax of this is ~identity
            for attn in self.attn:
                eye = attn(eye) * 1e4
            return x.flatten(1)[:, :3]

    got = AttentionRollout(Identity().eval(), layout=toy_layout(2)).attribute(
        torch.rand(1, 3, 4, 8, 8), interpolate=False
    )
    torch.testing.assert_close(got, torch.zeros(1, 1, *Toy.grid))  # the class row is e_cls


# -- the registry's layouts on the demo transformer ------------------------------------------


def test_demo_transformer_rollout_through_the_registry_equals_the_dense_product():
    torch.manual_seed(0)
    model = VideoTransformerSmall(depth=2, dim=16, heads=2).eval()
    clip = torch.rand(1, 3, 16, 32, 32)
    assert attention_layout(model, (16, 32, 32)).modules == ["blocks.0.attn", "blocks.1.attn"]
    with capture_attention(model, ["blocks.0.attn", "blocks.1.attn"]) as capture, torch.no_grad():
        model(clip)
    probs = [capture.calls[f"blocks.{i}.attn"][0] for i in range(2)]
    expected = to_grid(rollout_oracle([a.mean(1) for a in probs])[:, 0], model.grid)
    got = AttentionRollout(model).attribute(clip, interpolate=False)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


# -- Hugging Face: TimeSformer's divided space-time attention against dense matrices ---------

CLIP = (4, 32, 32)


def build_hf(root: Path) -> dict[str, Path]:
    """Tiny VideoMAE (mean pooling), TimeSformer, ViViT and X-CLIP vision with 8x8 patches,
    saved."""
    transformers = pytest.importorskip("transformers")
    common = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    t, h, _ = CLIP
    models = {
        "videomae": transformers.VideoMAEForVideoClassification(
            transformers.VideoMAEConfig(
                image_size=h, patch_size=8, num_frames=t, tubelet_size=2, num_labels=3, **common
            )
        ),
        "timesformer": transformers.TimesformerForVideoClassification(
            transformers.TimesformerConfig(
                image_size=h, patch_size=8, num_frames=t, num_labels=3, **common
            )
        ),
        "vivit": transformers.VivitForVideoClassification(
            transformers.VivitConfig(
                image_size=h, tubelet_size=[2, 8, 8], num_frames=t, num_labels=3, **common
            )
        ),
        "xclip": transformers.XCLIPVisionModel(
            transformers.XCLIPVisionConfig(image_size=h, patch_size=8, num_frames=t, **common)
        ),
    }
    folders = {}
    for name, model in models.items():
        folders[name] = root / name
        model.save_pretrained(folders[name])
    return folders


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.manual_seed(0)
    return build_hf(tmp_path_factory.mktemp("hf-attention"))


@pytest.fixture(scope="module")
def hf(hf_folders: dict[str, Path]) -> dict[str, nn.Module]:
    return {name: load_model(f"hf:{folder}") for name, folder in hf_folders.items()}


def timesformer_dense(temporal: Tensor, spatial: Tensor, n: int, products: bool) -> list[Tensor]:
    """The temporal and the spatial step of one layer as full ``(N, S, S)`` matrices, built
    token by token. Tokens: class token, then ``(h, w, t)``. The class token's spatial row is
    the mean over frames of its per-frame rows (the layer averages its ``T`` copies); for
    gradient-times-attention products the mean becomes a sum (the full-matrix entry is
    ``a / T`` and its gradient ``T`` times the per-frame one)."""
    frames = temporal.shape[-1]
    patches = spatial.shape[-1] - 1
    size = 1 + patches * frames
    at = temporal.view(n, patches, frames, frames)
    asp = spatial.view(n, frames, patches + 1, patches + 1)
    full_t, full_s = torch.zeros(n, size, size), torch.zeros(n, size, size)
    cls_weight = 1.0 if products else 1.0 / frames
    for p in range(patches):
        for t in range(frames):
            row = 1 + p * frames + t
            for s in range(frames):
                full_t[:, row, 1 + p * frames + s] = at[:, p, t, s]
            full_s[:, row, 0] = asp[:, t, 1 + p, 0]
            for q in range(patches):
                full_s[:, row, 1 + q * frames + t] = asp[:, t, 1 + p, 1 + q]
    for t in range(frames):
        full_s[:, 0, 0] += cls_weight * asp[:, t, 0, 0]
        for q in range(patches):
            full_s[:, 0, 1 + q * frames + t] = cls_weight * asp[:, t, 0, 1 + q]
    return [full_t, full_s]


def timesformer_probs(model: nn.Module, clip: Tensor, grad: bool) -> tuple[Tensor, list[Tensor]]:
    """Output and the attention probabilities from hooks on ``attn_drop`` (independent of the
    method's capture), in forward order: per layer temporal, then spatial."""
    saved: list[Tensor] = []
    handles = []
    for layer in model.model.timesformer.encoder.layer:
        for attn in (layer.temporal_attention.attention, layer.attention.attention):
            handles.append(attn.attn_drop.register_forward_hook(lambda m, a, o: saved.append(a[0])))
    try:
        with torch.set_grad_enabled(grad):
            out = model(clip)
    finally:
        for handle in handles:
            handle.remove()
    return out, saved


def hwt_to_thw(row: Tensor, grid: tuple[int, int, int]) -> Tensor:
    t, h, w = grid
    return row[:, 1:].reshape(-1, h, w, t).permute(0, 3, 1, 2).unsqueeze(1)


def test_timesformer_divided_attention_equals_dense_block_matrices(hf):
    model = hf["timesformer"]
    clip = torch.rand(2, 3, *CLIP)
    grid = (4, 4, 4)
    _, probs = timesformer_probs(model, clip, grad=False)
    dense = []
    for temporal, spatial in zip(probs[::2], probs[1::2], strict=True):
        dense += timesformer_dense(temporal.mean(1), spatial.mean(1), 2, products=False)
    expected = hwt_to_thw(rollout_oracle(dense)[:, 0], grid)
    got = AttentionRollout(model).attribute(clip, interpolate=False)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-7)

    target = [1, 2]
    out, probs = timesformer_probs(model, clip, grad=True)
    grads = torch.autograd.grad(out[[0, 1], target].sum(), probs)
    bars = [(g * a).clamp(min=0).mean(1).detach() for g, a in zip(grads, probs, strict=True)]
    dense = []
    for temporal, spatial in zip(bars[::2], bars[1::2], strict=True):
        dense += timesformer_dense(temporal, spatial, 2, products=True)
    expected = hwt_to_thw(relevance_oracle(dense)[:, 0], grid)
    got = GradientWeightedAttention(model).attribute(clip, target=target, interpolate=False)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-8)


def xclip_dense(message: Tensor, frame: Tensor, n: int, t: int) -> tuple[list, list]:
    """One X-CLIP layer as dense matrices, token by token: ``(attention, residual)`` of its
    message step (frames' tokens -> frames' tokens + message tokens) and of its frame step
    (back). Frame-major tokens: per frame the class token, its patches (and its message)."""
    size = frame.shape[-1]  # 1 + P + 1
    plain, ext = t * (size - 1), t * size
    frame = frame.view(n, t, size, size)
    a_msg, k_msg = torch.zeros(n, ext, plain), torch.zeros(n, ext, plain)
    a_frame, k_frame = torch.zeros(n, plain, ext), torch.zeros(n, plain, ext)
    for f in range(t):
        for j in range(size - 1):
            k_msg[:, f * size + j, f * (size - 1) + j] = 1.0
            k_frame[:, f * (size - 1) + j, f * size + j] = 1.0
            for i in range(size):
                a_frame[:, f * (size - 1) + j, f * size + i] = frame[:, f, j, i]
        k_msg[:, f * size + size - 1, f * (size - 1)] = 1.0  # message = fc(class token)
        for g in range(t):
            a_msg[:, f * size + size - 1, g * (size - 1)] = message[:, f, g]
    return [a_msg, a_frame], [k_msg, k_frame]


def xclip_probs(model: nn.Module, clip: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Output and, per layer, the message then the frame attention probabilities, read from
    the attention modules' own outputs (an eager model returns them)."""
    saved: list[Tensor] = []
    handles = []
    for layer in model.model.encoder.layers:
        for attn in (layer.message_attn, layer.self_attn):
            handles.append(attn.register_forward_hook(lambda m, a, o: saved.append(o[1])))
    try:
        out = model(clip)
    finally:
        for handle in handles:
            handle.remove()
    return out, saved


def test_xclip_cross_frame_attention_equals_dense_matrices(hf, hf_folders):
    transformers = pytest.importorskip("transformers")
    eager = adapt(
        transformers.XCLIPVisionModel.from_pretrained(
            hf_folders["xclip"], local_files_only=True, attn_implementation="eager"
        ).eval()
    )
    model = hf["xclip"]  # fused sdpa: the method computes the attention explicitly
    layout = attention_layout(model, CLIP)
    assert [s.kind for s in layout.steps] == ["message", "frame_joint"] * 2
    clip, target = torch.rand(2, 3, *CLIP), [1, 5]
    out, probs = xclip_probs(eager, clip)
    grads = torch.autograd.grad(out[[0, 1], target].sum(), probs)
    for weighted, method in ((False, AttentionRollout), (True, GradientWeightedAttention)):
        mixing, residual = [], []
        for i, (a, g) in enumerate(zip(probs, grads, strict=True)):
            fused = (g * a).clamp(min=0).mean(1) if weighted else a.mean(1)
            if i % 2 == 0:
                message = fused
                continue
            pair, skips = xclip_dense(message.detach(), fused.detach(), 2, CLIP[0])
            mixing += pair
            residual += skips
        oracle = relevance_oracle if weighted else rollout_oracle
        rows = oracle(mixing, residual)[:, 0::17].mean(1)  # each frame's class token
        expected = rows.view(2, 4, 17)[:, :, 1:].reshape(2, 1, 4, 4, 4)
        got = method(model).attribute(clip, target=target, interpolate=False)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", ["videomae", "timesformer", "vivit", "xclip"])
@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.__name__)
def test_hf_maps_are_finite_not_constant_and_leave_model_and_clip_alone(name, method, hf):
    model = hf[name]
    clip = torch.rand(2, 3, *CLIP)
    original, snapshot = clip.clone(), model_snapshot(model)
    maps = method(model).attribute(clip, target=[0, 2])
    assert maps.shape == (2, 1, *CLIP) and maps.dtype == clip.dtype
    assert torch.isfinite(maps).all()
    for clip_map in maps:
        assert clip_map.max() > clip_map.min(), "a constant map"
    assert_model_unchanged(snapshot, model)
    assert torch.equal(clip, original)
    assert not _get_current_function_mode_stack()


@pytest.mark.parametrize("name", ["videomae", "vivit"])
def test_fused_sdpa_attention_gives_the_same_maps_as_eager(name, hf, hf_folders):
    transformers = pytest.importorskip("transformers")
    sdpa = hf[name]
    cls = type(sdpa.model)
    eager = adapt(
        cls.from_pretrained(hf_folders[name], local_files_only=True, attn_implementation="eager")
    ).eval()
    assert sdpa.model.config._attn_implementation == "sdpa"
    clip = torch.rand(1, 3, *CLIP)
    for method in METHODS:
        torch.testing.assert_close(
            method(sdpa).attribute(clip, target=1), method(eager).attribute(clip, target=1)
        )
    del transformers


def test_videomae_mean_pooling_explains_the_mean_row(hf):
    model = hf["videomae"]
    layout = attention_layout(model, CLIP)
    assert layout.readout == "mean" and layout.tokens == Tokens((2, 4, 4), prefix=0)
    clip = torch.rand(1, 3, *CLIP)
    with capture_attention(model, layout.modules) as capture, torch.no_grad():
        model(clip)
    probs = [capture.calls[m][0].mean(1) for m in layout.modules]
    expected = rollout_oracle(probs).mean(1).reshape(1, 1, 2, 4, 4)
    got = AttentionRollout(model).attribute(clip, interpolate=False)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


# -- torchvision MViT: pooled attention against dense pooling matrices -----------------------


def tiny_mvit() -> nn.Module:
    blocks = [
        MSBlockConfig(1, 16, 16, [3, 3, 3], [3, 3, 3], [1, 1, 1], [1, 2, 2]),
        MSBlockConfig(1, 16, 32, [3, 3, 3], [3, 3, 3], [1, 2, 2], [1, 1, 1]),
        MSBlockConfig(2, 32, 32, [3, 3, 3], [3, 3, 3], [1, 1, 1], [1, 1, 1]),
    ]
    torch.manual_seed(0)
    return MViT(
        spatial_size=(32, 32),
        temporal_size=8,
        block_setting=blocks,
        residual_pool=True,
        residual_with_cls_embed=False,
        rel_pos_embed=True,
        proj_after_attn=True,
        num_classes=4,
    ).eval()


def dense_pool(grid_in, kernel, stride, padding, out=None) -> Tensor:
    """``(1 + out, 1 + in)``: the class token to itself, each pooled token the uniform
    average of the grid tokens its window covers (loops over the grid). ``out`` defaults to
    convolution arithmetic (patch merging pads odd sizes: pass its grid)."""
    if out is None:
        out = [
            (g + 2 * p - k) // s + 1
            for g, k, s, p in zip(grid_in, kernel, stride, padding, strict=True)
        ]
    n_in, n_out = math.prod(grid_in), math.prod(out)
    m = torch.zeros(1 + n_out, 1 + n_in)
    m[0, 0] = 1.0
    for j in range(n_out):
        jt, jh, jw = j // (out[1] * out[2]), (j // out[2]) % out[1], j % out[2]
        cover = []
        for i in range(n_in):
            it, ih = i // (grid_in[1] * grid_in[2]), (i // grid_in[2]) % grid_in[1]
            iw = i % grid_in[2]
            if all(
                0 <= c - (o * s - p) < k
                for c, o, s, p, k in zip(
                    (it, ih, iw), (jt, jh, jw), stride, padding, kernel, strict=True
                )
            ):
                cover.append(i)
        for i in cover:
            m[1 + j, 1 + i] = 1.0 / len(cover)
    return m


def test_mvit_pooled_attention_equals_dense_pooling_matrices():
    model = tiny_mvit()
    clip = torch.rand(1, 3, 8, 32, 32)
    layout = attention_layout(model, (8, 32, 32))
    assert [s.kind for s in layout.steps] == ["pooled"] * 3
    assert layout.tokens.grid == (4, 8, 8) and layout.steps[-1].out.grid == (4, 4, 4)
    with capture_attention(model, layout.modules) as capture, torch.no_grad():
        model(clip)
    mixing, residual = [], []
    grid = (4, 8, 8)
    for i, block in enumerate(model.blocks):
        a = capture.calls[f"blocks.{i}.attn"][0].mean(1)
        attn = block.attn
        kv = dense_pool(grid, (3, 3, 3), attn.pool_k.pool.stride, (1, 1, 1))
        mixing.append(a @ kv)
        if block.pool_skip is not None:
            pool = block.pool_skip.pool
            skip = dense_pool(grid, pool.kernel_size, pool.stride, pool.padding)
            grid = tuple((g - 1) // s + 1 for g, s in zip(grid, pool.stride, strict=True))
        else:
            skip = torch.eye(1 + math.prod(grid))
        residual.append(skip.expand(1, *skip.shape))
    expected = to_grid(rollout_oracle(mixing, residual)[:, 0], (4, 8, 8))  # the input grid
    got = AttentionRollout(model).attribute(clip, interpolate=False)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-7)
    for method in METHODS:
        maps = method(model).attribute(clip, target=1)
        assert maps.shape == (1, 1, 8, 32, 32) and torch.isfinite(maps).all()
        assert maps.max() > maps.min()


# -- torchvision Swin3D: shifted windows and patch merging -----------------------------------


def tiny_swin() -> nn.Module:
    from torchvision.models.video.swin_transformer import SwinTransformer3d

    torch.manual_seed(0)
    return SwinTransformer3d(
        patch_size=[2, 4, 4],
        embed_dim=8,
        depths=[2, 1],
        num_heads=[2, 2],
        window_size=[2, 3, 3],
        num_classes=3,
    ).eval()


def dense_windows(a: Tensor, grid, window, shift) -> Tensor:
    """The block-diagonal ``(S, S)`` matrix of window attention ``a`` ``(windows, w, w)`` on
    ``grid`` (padded to whole windows at the end, rolled by ``-shift``), padding dropped."""
    padded = [g + (-g) % w for g, w in zip(grid, window, strict=True)]
    counts = [p // w for p, w in zip(padded, window, strict=True)]
    size = math.prod(grid)
    m = torch.zeros(size, size)
    slots = {}
    for t in range(padded[0]):
        for h in range(padded[1]):
            for w in range(padded[2]):
                # position (t, h, w) of the rolled grid holds original (t + shift) % padded
                src = [(c + s) % p for c, s, p in zip((t, h, w), shift, padded, strict=True)]
                win = (t // window[0]) * counts[1] * counts[2] + (h // window[1]) * counts[2]
                win += w // window[2]
                slot = ((t % window[0]) * window[1] + h % window[1]) * window[2] + w % window[2]
                if all(c < g for c, g in zip(src, grid, strict=True)):
                    slots[(win, slot)] = (src[0] * grid[1] + src[1]) * grid[2] + src[2]
    for (win, i), row in slots.items():
        for (win2, j), col in slots.items():
            if win == win2:
                m[row, col] = a[win, i, j]
    return m


def test_swin3d_window_attention_equals_dense_block_diagonal_matrices():
    model = tiny_swin()
    clip = torch.rand(1, 3, 4, 24, 18)  # 2 x 6 x 5 tokens: padding and shifted windows
    layout = attention_layout(model, (4, 24, 18))
    assert [s.kind for s in layout.steps] == ["window", "window", "merge", "window"]
    assert layout.steps[1].shift == (0, 1, 1) and layout.readout == "mean"
    with capture_attention(model, layout.modules) as capture, torch.no_grad():
        model(clip)
    mixing, residual = [], []
    for step in layout.steps:
        size_in = math.prod(step.tokens_in.grid)
        if step.kind == "merge":
            g = step.tokens_in.grid
            out = (g[0], (g[1] + 1) // 2, (g[2] + 1) // 2)
            merge = dense_pool(g, (1, 2, 2), (1, 2, 2), (0, 0, 0), out)[1:, 1:]
            mixing.append(torch.zeros(1, merge.shape[0], size_in))  # no attention: K alone
            residual.append(merge[None])
            continue
        a = capture.calls[step.module][0].mean(1)
        mixing.append(dense_windows(a, step.tokens_in.grid, step.window, step.shift)[None])
        residual.append(torch.eye(size_in)[None])
    expected = rollout_oracle(mixing, residual).mean(1)
    got = AttentionRollout(model).attribute(clip, interpolate=False)
    torch.testing.assert_close(got, expected.reshape(1, 1, 2, 6, 5), rtol=1e-4, atol=1e-7)
    for method in METHODS:
        maps = method(model).attribute(clip, target=0)
        assert maps.shape == (1, 1, 4, 24, 18) and torch.isfinite(maps).all()
        assert maps.max() > maps.min()


# -- errors and hygiene ----------------------------------------------------------------------


def test_a_model_without_attention_gets_a_clear_error():
    model = C3DSmall().eval()
    for method in METHODS:
        with pytest.raises(ValueError, match="no attention layout.*captum-video-demo"):
            method(model).attribute(torch.rand(1, 3, 16, 32, 32))


def test_errors_leave_the_model_as_it_was():
    torch.manual_seed(0)
    model = VideoTransformerSmall(depth=2, dim=16, heads=2).eval()
    snapshot = model_snapshot(model)
    wrong = AttentionLayout((AttentionStep("blocks.0.attn", "joint", Tokens((2, 8, 8), 1)),))
    for method in METHODS:
        with pytest.raises(ValueError, match="does not match"):
            method(model, layout=wrong).attribute(torch.rand(1, 3, 16, 32, 32))
        with pytest.raises(ValueError, match="at least 16|exactly 16x32x32"):
            method(model).attribute(torch.rand(1, 3, 8, 32, 32))
        with pytest.raises(ValueError, match="exactly 16x32x32"):
            method(model).attribute(torch.rand(1, 3, 16, 32, 24))
        with pytest.raises(ValueError, match="5-D"):
            method(model).attribute(torch.rand(3, 16, 32, 32))
        with pytest.raises(ValueError):
            method(model).attribute(torch.rand(1, 3, 16, 32, 32), target=7)
        assert not _get_current_function_mode_stack()
        assert_model_unchanged(snapshot, model)
    with pytest.raises(ValueError, match="head_fusion"):
        AttentionRollout(model).attribute(torch.rand(1, 3, 16, 32, 32), head_fusion="median")


def test_methods_work_inside_noise_tunnel():
    from captum.attr import NoiseTunnel

    torch.manual_seed(0)
    model = VideoTransformerSmall(depth=1, dim=16, heads=2).eval()
    clip = torch.rand(1, 3, 16, 32, 32)
    for method in METHODS:
        smooth = NoiseTunnel(method(model)).attribute(clip, target=0, nt_samples=2, stdevs=0.01)
        assert smooth.shape == (1, 1, 16, 32, 32) and torch.isfinite(smooth).all()


def test_an_error_inside_an_attention_module_leaves_no_hook_or_mode_behind():
    class Raising(nn.Module):
        def forward(self, scores: Tensor) -> Tensor:
            F.softmax(scores, dim=-1)
            raise RuntimeError("boom inside the attention")

    class Failing(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.ModuleList([Raising()])

        def forward(self, x: Tensor) -> Tensor:
            return self.attn[0](torch.rand(len(x), 2, 9, 9))

    model = Failing().eval()
    snapshot = model_snapshot(model)
    for method in METHODS:
        with pytest.raises(RuntimeError, match="boom"):
            method(model, layout=toy_layout(1)).attribute(torch.rand(1, 3, 4, 8, 8), target=0)
        assert not _get_current_function_mode_stack()
        assert_model_unchanged(snapshot, model)

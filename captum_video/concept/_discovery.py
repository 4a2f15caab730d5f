"""Machine-assisted concept discovery for video models (ACE / 3D-ACE style).

Cut clips into spatio-temporal segments, turn every segment into a clip the model can take,
embed the segments with a layer's activations, cluster the embeddings, and score each
cluster with Video-TCAV against random segment sets. Every candidate concept comes with a
*static twin* (each member's middle frame tiled over time), scored against the same random
sets, so "does the model use the motion of this thing or only its look?" can be read off.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from captum._utils.common import _get_module_from_name
from torch import Tensor, nn

from captum_video._model_state import eval_mode_for, module_device
from captum_video._targets import validate_target
from captum_video._validation import validate_video
from captum_video.concept._concept import VideoConcept, static_twin
from captum_video.concept._significance import SignificanceResult
from captum_video.concept._tcav import VideoTCAV, pool_activations
from captum_video.masks import supervoxel_mask

__all__ = ["discover_concepts", "DiscoveredConcept", "kmeans", "tubelet_segments"]

Segmenter = Callable[[Tensor], tuple[Tensor, Tensor]]


@dataclass
class DiscoveredConcept:
    r"""A candidate concept found by :func:`discover_concepts`.

    Args:
        name (str): ``"cluster<k>"``.
        concept (VideoConcept): the dynamic concept (the member segments as clips).
        static_concept (VideoConcept): its static twin (each member's middle frame tiled).
        members (Tensor): ``(n, 2)`` rows of (video index, segment index) of the members.
        cluster_size (int): all segments in the cluster.
        num_videos (int): distinct videos among the members.
        tcav (float): mean TCAV score (sign count) of the dynamic concept over random runs.
        static_tcav (float): the same for the static twin.
        p_value (float): t-test p-value of the dynamic concept (uncorrected).
        static_p_value (float): the same for the static twin.
        significant (bool): dynamic concept significant after correction.
        static_significant (bool): static twin significant after correction.

    Returns:
        A record.

    Example::

        >>> found = discover_concepts(model, "layer2", clips, n_concepts=2)   # doctest: +SKIP
        >>> found[0].tcav, found[0].static_tcav                              # doctest: +SKIP
    """

    name: str
    concept: VideoConcept
    static_concept: VideoConcept
    members: Tensor
    cluster_size: int
    num_videos: int
    tcav: float = float("nan")
    static_tcav: float = float("nan")
    p_value: float = float("nan")
    static_p_value: float = float("nan")
    significant: bool = False
    static_significant: bool = False

    @property
    def clips(self) -> Tensor:
        """The member clips ``(n, C, T, H, W)``."""
        assert self.concept.clips is not None
        return self.concept.clips


def kmeans(
    x: Tensor, k: int, iters: int = 50, n_init: int = 3, seed: int = 0
) -> tuple[Tensor, Tensor]:
    r"""Seeded k-means (k-means++ initialisation, Lloyd iterations) in torch.

    Args:
        x (Tensor): points ``(N, D)``.
        k (int): number of clusters, ``1 <= k <= N``.
        iters (int, optional): Lloyd iterations per run. Default: 50
        n_init (int, optional): runs; the lowest inertia wins. Default: 3
        seed (int, optional): seed of the initialisation. Default: 0

    Returns:
        tuple: ``(labels (N,), centroids (k, D))``.

    Example::

        >>> x = torch.cat([torch.randn(10, 2), torch.randn(10, 2) + 10])
        >>> labels, _ = kmeans(x, 2)
        >>> len(set(labels[:10].tolist())), len(set(labels[10:].tolist()))
        (1, 1)
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor of points (N, D), got {x!r:.80}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or infinite values; kmeans needs finite points")
    if x.dim() != 2 or not 1 <= k <= x.shape[0]:
        raise ValueError(f"kmeans needs points (N, D) and 1 <= k <= N, got {tuple(x.shape)}, k={k}")
    gen = torch.Generator().manual_seed(seed)
    best: tuple[float, Tensor, Tensor] | None = None
    for _ in range(n_init):
        first = int(torch.randint(x.shape[0], (1,), generator=gen))
        centres = [x[first]]
        for _ in range(1, k):
            d2 = torch.cdist(x, torch.stack(centres)).min(1).values.pow(2).cpu()
            probs = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full_like(d2, 1 / len(d2))
            centres.append(x[int(torch.multinomial(probs, 1, generator=gen))])
        cent = torch.stack(centres)
        for _ in range(iters):
            labels = torch.cdist(x, cent).argmin(1)
            sums = torch.zeros_like(cent).index_add_(0, labels, x)
            counts = torch.bincount(labels, minlength=k).to(x.dtype).unsqueeze(1)
            new = torch.where(counts > 0, sums / counts.clamp_min(1), cent)
            if torch.allclose(new, cent):
                break
            cent = new
        labels = torch.cdist(x, cent).argmin(1)
        inertia = float((x - cent[labels]).pow(2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, labels, cent)
    assert best is not None
    return best[1], best[2]


def tubelet_segments(
    videos: Tensor, tubelet: tuple[int, int, int], stride: tuple[int, int, int] | None = None
) -> tuple[Tensor, Tensor]:
    r"""Cut clips into a grid of spatio-temporal boxes (tubelets), each resized to a clip.

    Args:
        videos (Tensor): ``(N, C, T, H, W)``.
        tubelet (tuple of int): ``(t, h, w)`` size of a tubelet.
        stride (tuple of int, optional): grid step; default half the tubelet (50% overlap).

    Returns:
        tuple: ``(segments (S, C, T, H, W), owner (S,))``, the video each segment comes from.

    Example::

        >>> segs, owner = tubelet_segments(torch.rand(2, 3, 16, 32, 32), (16, 16, 16))
        >>> segs.shape, owner.tolist()[:3]
        (torch.Size([18, 3, 16, 32, 32]), [0, 0, 0])
    """
    n, _, t_len, height, width = videos.shape
    t, h, w = tubelet
    if not (0 < t <= t_len and 0 < h <= height and 0 < w <= width):
        raise ValueError(f"tubelet {tubelet} must fit in clips of {(t_len, height, width)}")
    st, sh, sw = stride or (max(t // 2, 1), max(h // 2, 1), max(w // 2, 1))
    segments, owners = [], []
    for t0 in range(0, t_len - t + 1, st):
        for y0 in range(0, height - h + 1, sh):
            for x0 in range(0, width - w + 1, sw):
                box = videos[:, :, t0 : t0 + t, y0 : y0 + h, x0 : x0 + w]
                segments.append(
                    F.interpolate(
                        box, size=(t_len, height, width), mode="trilinear", align_corners=False
                    )
                )
                owners.append(torch.arange(n))
    # Order segments video by video.
    seg = torch.stack(segments, 1).flatten(0, 1)
    owner = torch.stack(owners, 1).flatten()
    return seg, owner


def _supervoxel_segmenter(**kwargs: Any) -> Segmenter:
    """Supervoxel segments from :func:`captum_video.masks.supervoxel_mask`."""
    accepted = inspect.signature(supervoxel_mask).parameters
    options = {k: v for k, v in kwargs.items() if k in accepted}

    def segment(videos: Tensor) -> tuple[Tensor, Tensor]:
        label_map = supervoxel_mask(videos, **options)
        label_map = label_map.reshape(videos.shape[0], -1, *videos.shape[2:])[:, 0].long()
        n, _, t_len, height, width = videos.shape
        segments, owners = [], []
        for i in range(n):
            fill = videos[i].mean(dim=(1, 2, 3), keepdim=True)
            for label in torch.unique(label_map[i]).tolist():
                region = label_map[i] == label  # (T, H, W)
                if region.sum() < 0.01 * region.numel():
                    continue  # too small to mean anything
                ts, ys, xs = (region.any(dim=d) for d in ((1, 2), (0, 2), (0, 1)))
                idx = [torch.nonzero(a).flatten() for a in (ts, ys, xs)]
                sl = [slice(int(a[0]), int(a[-1]) + 1) for a in idx]
                clip = torch.where(region, videos[i], fill)[:, sl[0], sl[1], sl[2]]
                segments.append(
                    F.interpolate(
                        clip[None],
                        size=(t_len, height, width),
                        mode="trilinear",
                        align_corners=False,
                    )[0]
                )
                owners.append(i)
        return torch.stack(segments), torch.tensor(owners)

    return segment


@torch.no_grad()
def _embed(model: nn.Module, layer: str, clips: Tensor, act_pool: str, batch: int) -> Tensor:
    module = _get_module_from_name(model, layer)
    out: list[Tensor] = []
    store: dict[str, Tensor] = {}
    handle = module.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        for start in range(0, len(clips), batch):
            model(clips[start : start + batch])
            out.append(pool_activations(store["a"].detach(), act_pool, layer))
    finally:
        handle.remove()
    return torch.cat(out)


@eval_mode_for("model")
def discover_concepts(
    model: nn.Module,
    layer: str,
    videos: Tensor,
    n_concepts: int = 3,
    *,
    target: int | None = None,
    segments: str | Segmenter = "supervoxel",
    tubelet: tuple[int, int, int] | None = None,
    n_clusters: int | None = None,
    clips_per_concept: int = 12,
    n_random: int = 5,
    random_clips: Tensor | None = None,
    embed_pool: str = "both",
    act_pool: str = "none",
    alpha: float = 0.05,
    seed: int = 0,
    batch_size: int = 32,
) -> list[DiscoveredConcept]:
    r"""Find candidate concepts a video model uses for a class, each with a static twin.

    A model in train mode runs in eval mode for the call (with a warning; each module's mode
    is restored afterwards), so its BatchNorm statistics never change.

    1. Segment every clip: ``"tubelet"`` (a grid of spatio-temporal boxes), ``"supervoxel"``
       (:func:`captum_video.masks.supervoxel_mask`), or any callable
       ``videos -> (segments, owner)`` (e.g. a detector and tracker feeding
       :func:`dynamic_clip`). Each segment becomes a full-size clip.
    2. Embed the segments with ``layer``'s activations (pooled by ``embed_pool``) and cluster
       them with seeded :func:`kmeans` into ``n_clusters`` groups.
    3. Keep clusters with at least ``clips_per_concept // 2`` members; their
       ``clips_per_concept`` segments nearest the centre form a dynamic concept, their
       middle frames tiled over time its static twin.
    4. Score all of them with :class:`VideoTCAV` at ``layer`` on ``videos`` for ``target``
       against ``n_random`` random sets (random segments, or ``random_clips`` when given), and
       test significance (Bonferroni over all candidates).

    Args:
        model (nn.Module): the video classifier.
        layer (str): layer name for embedding and TCAV.
        videos (Tensor): clips ``(N, C, T, H, W)`` of the class under study, pre-processed
            as the model expects.
        n_concepts (int, optional): number of concepts returned (best TCAV first).
            Default: 3
        target (int, optional): the class; default the class predicted most often.
        segments (str or callable, optional): ``"supervoxel"``, ``"tubelet"`` or a
            segmenter. Default: ``"supervoxel"``
        tubelet (tuple of int, optional): ``(t, h, w)``; default ``(T, H // 2, W // 2)``.
        n_clusters (int, optional): k of k-means; default ``2 * n_concepts``.
        clips_per_concept (int, optional): members per concept. Default: 12
        n_random (int, optional): random sets (>= 2). Default: 5
        random_clips (Tensor, optional): a pool of random clips ``(M, C, T, H, W)``.
        embed_pool (str, optional): pooling for clustering. Default: ``"both"``
        act_pool (str, optional): pooling for TCAV. Default: ``"none"``
        alpha (float, optional): significance level. Default: 0.05
        seed (int, optional): seed of clustering and random sets. Default: 0
        batch_size (int, optional): clips per forward pass. Default: 32

    Returns:
        list of DiscoveredConcept: up to ``n_concepts``, sorted by TCAV score.

    Example::

        >>> from captum_video.datasets import MovingShapes
        >>> from captum_video.models import load_demo_model
        >>> clips, labels, _ = MovingShapes("motion", num_samples=16, seed=1).tensors()
        >>> found = discover_concepts(load_demo_model("motion"), "layer2", clips[labels == 0],
        ...                           n_concepts=2, target=0)               # doctest: +SKIP
        >>> [(c.name, round(c.tcav, 2), round(c.static_tcav, 2)) for c in found]  # doctest: +SKIP
    """
    validate_video(videos, name="videos", model=model)
    validate_target(target)
    if n_concepts < 1 or clips_per_concept < 2 or n_random < 2:
        raise ValueError("need n_concepts >= 1, clips_per_concept >= 2 and n_random >= 2")
    device = module_device(model)
    videos = videos.to(device)
    n, _, t_len, height, width = videos.shape
    with torch.no_grad():
        logits = torch.cat([model(videos[s : s + batch_size]) for s in range(0, n, batch_size)])
    if target is None:
        target = int(torch.mode(logits.argmax(1)).values)
    validate_target(target, logits.shape[1], n)

    if callable(segments):
        segmenter = segments
    elif segments == "supervoxel":
        segmenter = _supervoxel_segmenter()
    elif segments == "tubelet":
        size = tubelet or (t_len, max(height // 2, 1), max(width // 2, 1))
        segmenter = lambda v: tubelet_segments(v, size)  # noqa: E731
    else:
        raise ValueError(
            f"segments must be 'supervoxel', 'tubelet' or a callable, got {segments!r}"
        )
    seg, owner = segmenter(videos)
    validate_video(seg, name="segments")
    seg, owner = seg.to(device), owner.to(device)

    emb = _embed(model, layer, seg, embed_pool, batch_size)
    k = min(n_clusters or 2 * n_concepts, len(seg))
    labels, centres = kmeans(emb, k, seed=seed)
    dist = (emb - centres[labels]).norm(dim=1)

    gen = torch.Generator().manual_seed(seed)
    candidates: list[DiscoveredConcept] = []
    for cluster in range(k):
        idx = torch.nonzero(labels == cluster).flatten()
        if len(idx) < max(clips_per_concept // 2, 2):
            continue
        idx = idx[dist[idx].argsort()][:clips_per_concept]
        dyn = VideoConcept(
            2 * len(candidates),
            f"cluster{cluster}",
            clips=seg[idx],
            kind="dynamic",
            batch_size=batch_size,
        )
        sta = VideoConcept(
            2 * len(candidates) + 1,
            f"cluster{cluster}_static",
            clips=static_twin(seg[idx]),
            kind="static",
            batch_size=batch_size,
        )
        candidates.append(
            DiscoveredConcept(
                f"cluster{cluster}",
                dyn,
                sta,
                torch.stack([owner[idx], idx], 1).cpu(),
                int((labels == cluster).sum()),
                len(set(owner[idx].tolist())),
            )
        )
    if not candidates:
        raise ValueError("no cluster has enough members; lower clips_per_concept or n_clusters")

    pool = seg if random_clips is None else validate_video(random_clips, name="random_clips")
    size = min(clips_per_concept, len(pool))
    randoms = [
        VideoConcept(
            10_000 + j,
            f"random{j}",
            kind="random",
            batch_size=batch_size,
            clips=pool[torch.randperm(len(pool), generator=gen)[:size].to(pool.device)],
        )
        for j in range(n_random)
    ]
    tcav = VideoTCAV(model, [layer], act_pool=act_pool, batch_size=batch_size)  # type: ignore
    concepts = [c for cand in candidates for c in (cand.concept, cand.static_concept)]
    scores = tcav.interpret(videos, VideoTCAV.experimental_sets(concepts, randoms), target=target)
    result: SignificanceResult = tcav.significance(scores, alpha=alpha)
    for cand in candidates:
        dyn_row = result.row(cand.concept.id, layer)
        sta_row = result.row(cand.static_concept.id, layer)
        cand.tcav, cand.p_value, cand.significant = (
            dyn_row["mean"],
            dyn_row["p_value"],
            dyn_row["significant"],
        )
        cand.static_tcav, cand.static_p_value, cand.static_significant = (
            sta_row["mean"],
            sta_row["p_value"],
            sta_row["significant"],
        )
    candidates.sort(key=lambda c: (-c.tcav, c.p_value))
    return candidates[:n_concepts]

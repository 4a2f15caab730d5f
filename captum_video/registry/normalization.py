"""Input normalisation presets of video model families, and the input bounds they imply.

A preset is the per-channel ``(mean, std)`` a model family expects for RGB clips in ``[0, 1]``
(``x' = (x - mean) / std``). :func:`captum_video.io.normalize_video` applies a preset;
:func:`bounds_from_normalization` turns one into the lowest and highest values a normalised
input can take, which the z^B rule of deep Taylor decomposition needs for the first layer
(Montavon et al. 2017, "Explaining nonlinear classification decisions with deep Taylor
decomposition").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "NORMALIZATION_PRESETS",
    "bounds_from_normalization",
    "normalization_stats",
    "preset_for_stats",
]

#: Per-channel ``(mean, std)`` in RGB order for inputs in ``[0, 1]``: ``"kinetics"`` is
#: torchvision's Kinetics-400 video ResNets and S3D, ``"mvit"`` its MViTs, ``"swin3d"`` its
#: Video Swin transformers (ImageNet statistics); ``"none"`` is the identity (the demo models
#: take raw ``[0, 1]`` clips). The Hugging Face presets are what the released checkpoints'
#: image processors apply (a saved processor config overrides them, see
#: :func:`~captum_video.registry.load_model`): ``"videomae"`` ImageNet statistics,
#: ``"timesformer"`` 0.45 / 0.225, ``"xclip"`` CLIP's statistics, ``"vivit"`` the ViViT
#: processor's ``x * 2 - 1`` followed by ``(v - 0.5) / 0.5``, i.e. ``(x - 0.75) / 0.25`` on
#: ``[0, 1]`` pixels. ``"pytorchvideo"`` is PyTorchVideo's Kinetics models (X3D, SlowFast,
#: Slow, CSN, R(2+1)D, MViT).
NORMALIZATION_PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "kinetics": ((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)),
    "mvit": ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225)),
    "swin3d": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "videomae": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "timesformer": ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225)),
    "vivit": ((0.75, 0.75, 0.75), (0.25, 0.25, 0.25)),
    "xclip": (
        (0.48145466, 0.4578275, 0.40821073),
        (0.26862954, 0.26130258, 0.27577711),
    ),
    "pytorchvideo": ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225)),
}


def normalization_stats(preset: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The ``(mean, std)`` of a named preset.

    Args:
        preset (str): a key of :data:`NORMALIZATION_PRESETS`.

    Returns:
        tuple: ``(mean, std)``, one float per channel each.

    Raises:
        ValueError: an unknown preset name (the message lists the known ones).

    Example::

        >>> normalization_stats("mvit")[0]
        (0.45, 0.45, 0.45)
    """
    if not isinstance(preset, str) or preset not in NORMALIZATION_PRESETS:
        raise ValueError(
            f"unknown normalisation preset {preset!r}; choose one of "
            f"{sorted(NORMALIZATION_PRESETS)} or pass mean and std"
        )
    return NORMALIZATION_PRESETS[preset]


def preset_for_stats(
    mean: Sequence[float], std: Sequence[float], name: str, prefer: str | None = None
) -> str:
    """The preset holding ``(mean, std)``: ``prefer`` or another equal one, else a new one.

    A model whose saved preprocessing matches a known preset gets that preset's name (so the
    command line's choices and the z^B bounds keep working); other statistics are added to
    :data:`NORMALIZATION_PRESETS` as ``name``.

    Args:
        mean (sequence of float): per-channel mean on ``[0, 1]`` pixels.
        std (sequence of float): per-channel standard deviation.
        name (str): the name for new statistics.
        prefer (str, optional): the preset to check first (the model family's). Default: None

    Returns:
        str: a key of :data:`NORMALIZATION_PRESETS`.

    Example::

        >>> preset_for_stats([0.45] * 3, [0.225] * 3, "my-model", prefer="timesformer")
        'timesformer'
    """
    stats = (tuple(float(m) for m in mean), tuple(float(s) for s in std))
    if len(stats[0]) != len(stats[1]) or not stats[0]:
        raise ValueError(f"mean and std need the same, non-zero length, got {stats}")
    if len(stats[0]) == 1:  # one value for every channel
        stats = (stats[0] * 3, stats[1] * 3)
    candidates = ([prefer] if prefer in NORMALIZATION_PRESETS else []) + list(NORMALIZATION_PRESETS)
    for preset in candidates:
        known = NORMALIZATION_PRESETS[str(preset)]
        if len(known[0]) == len(stats[0]) and all(
            abs(a - b) < 1e-6 for a, b in zip(known[0] + known[1], stats[0] + stats[1], strict=True)
        ):
            return str(preset)
    NORMALIZATION_PRESETS[name] = stats
    return name


def bounds_from_normalization(
    mean: str | Sequence[float] | Tensor,
    std: Sequence[float] | Tensor | None = None,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> tuple[Tensor, Tensor]:
    """Per-channel bounds of normalised inputs, for the z^B rule of the first layer.

    A pixel in ``value_range`` normalised with ``(x - mean_c) / std_c`` lies in
    ``[(lo - mean_c) / std_c, (hi - mean_c) / std_c]``.

    Args:
        mean (str, sequence of float or Tensor): per-channel mean of the normalisation, or a
            preset name of :data:`NORMALIZATION_PRESETS` (then leave ``std`` out).
        std (sequence of float or Tensor, optional): per-channel standard deviation.
        value_range (tuple of float, optional): range of raw pixels. Default: ``(0.0, 1.0)``

    Returns:
        tuple of Tensor: ``(low, high)``, each of shape ``(C,)``.

    Example::

        >>> low, high = bounds_from_normalization([0.5], [0.25])
        >>> low.tolist(), high.tolist()
        ([-2.0], [2.0])
        >>> bounds_from_normalization("none")[1].tolist()
        [1.0, 1.0, 1.0]
    """
    if isinstance(mean, str):
        if std is not None:
            raise ValueError("pass either a preset name or mean and std, not both")
        mean, std = normalization_stats(mean)
    if std is None:
        raise ValueError("std is missing: pass mean and std, or a preset name alone")
    m = torch.as_tensor(mean, dtype=torch.float32).flatten()
    s = torch.as_tensor(std, dtype=torch.float32).flatten()
    if m.shape != s.shape:
        raise ValueError(f"mean and std need the same length, got {m.numel()} and {s.numel()}")
    if bool((s <= 0).any()):
        raise ValueError(f"std must be positive, got {s.tolist()}")
    lo, hi = value_range
    if not lo < hi:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range}")
    return (lo - m) / s, (hi - m) / s

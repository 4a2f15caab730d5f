"""The bundled demo checkpoints: tiny models trained on MovingShapes, loaded with no download."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from captum_video.models.c3d import C3DSmall
from captum_video.models.r2plus1d import R2Plus1DSmall
from captum_video.models.transformer import VideoTransformerSmall
from captum_video.models.two_stream import TwoStreamSmall

__all__ = [
    "ARCHITECTURES",
    "DEMO_FRAMES",
    "DEMO_NAMES",
    "DEMO_SIZE",
    "DEMO_VARIANTS",
    "TWO_STREAM_ARCHITECTURES",
    "demo_checkpoint_path",
    "demo_model_info",
    "load_demo_model",
]

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
DEMO_FRAMES = 16
DEMO_SIZE = 32
#: The MovingShapes variants a demo checkpoint is bundled for.
DEMO_VARIANTS = ("motion", "appearance", "mixed")

#: Architectures a demo checkpoint can name.
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "c3d_small": C3DSmall,
    "r2plus1d_small": R2Plus1DSmall,
    "video_transformer_small": VideoTransformerSmall,
    "two_stream_small": TwoStreamSmall,
}
#: File-name stem of an architecture's bundled checkpoints, ``<stem>_<variant>.pt``.
CHECKPOINT_STEMS = {
    "video_transformer_small": "demo_transformer",
    "two_stream_small": "demo_two_stream",
}
#: Bundled demo models of other architectures, by name: name -> (architecture, variant).
DEMO_NAMES: dict[str, tuple[str, str]] = {
    "transformer": ("video_transformer_small", "motion"),
    "two_stream_motion": ("two_stream_small", "motion"),
    "two_stream_appearance": ("two_stream_small", "appearance"),
}
#: Architectures whose forward takes ``(rgb, flow)``
#: (:func:`~captum_video.models.two_stream.two_stream_inputs` builds them from a clip).
TWO_STREAM_ARCHITECTURES = ("two_stream_small",)


def demo_checkpoint_path(variant: str = "motion", arch: str = "c3d_small") -> Path:
    """Path of the bundled checkpoint trained on ``MovingShapes(variant)``.

    Args:
        variant (str, optional): ``"motion"``, ``"appearance"`` or ``"mixed"``, or a name of
            :data:`DEMO_NAMES` (``"transformer"``: the video transformer on ``"motion"``;
            ``"two_stream_motion"`` / ``"two_stream_appearance"``: the two-stream model).
            Default: ``"motion"``
        arch (str, optional): the architecture (``"video_transformer_small"`` has its own
            files, ``demo_transformer_<variant>.pt``). Default: ``"c3d_small"``

    Returns:
        pathlib.Path: the ``.pt`` file inside the installed package.

    Example::

        >>> demo_checkpoint_path("motion").name
        'demo_c3d_motion.pt'
    """
    if variant in DEMO_NAMES:
        arch, variant = DEMO_NAMES[variant]
    return CHECKPOINT_DIR / f"{CHECKPOINT_STEMS.get(arch, 'demo_c3d')}_{variant}.pt"


def load_demo_model(variant: str = "motion", device: str | torch.device | None = None) -> nn.Module:
    """Load a bundled demo model in eval mode, with no network access.

    The model is a :class:`C3DSmall` trained on ``MovingShapes(variant)`` clips of
    ``3 x 16 x 32 x 32`` in ``[0, 1]`` (``"transformer"``: a
    :class:`~captum_video.models.VideoTransformerSmall` trained on ``"motion"``;
    ``"two_stream_motion"`` and ``"two_stream_appearance"``: a
    :class:`~captum_video.models.TwoStreamSmall` whose ``forward(rgb, flow)`` takes the pair
    :func:`~captum_video.models.two_stream_inputs` builds from a clip); the checkpoint's
    metadata (classes, clip size, held-out accuracy, training command) is
    attached as ``model.demo_info``.

    Args:
        variant (str, optional): ``"motion"`` (label = direction of motion),
            ``"appearance"`` (label = colour), ``"mixed"`` (colour x direction),
            ``"transformer"``, ``"two_stream_motion"`` or ``"two_stream_appearance"``.
            Default: ``"motion"``
        device (str or torch.device, optional): where to put the model. Default: CPU

    Returns:
        torch.nn.Module: the model, in eval mode.

    Example::

        >>> from captum_video.datasets import MovingShapes
        >>> model = load_demo_model("motion")
        >>> clip, label, _ = MovingShapes("motion", num_samples=1, seed=5)[0]
        >>> int(model(clip[None]).argmax()) == label
        True
    """
    ckpt = _load_demo_checkpoint(variant)
    model = ARCHITECTURES[ckpt["arch"]](**ckpt["config"])
    model.load_state_dict({k: v.float() for k, v in ckpt["state_dict"].items()})
    model.demo_info = {k: v for k, v in ckpt.items() if k != "state_dict"}  # type: ignore[assignment]
    return model.eval().to(device or "cpu")


def demo_model_info(variant: str = "motion") -> dict[str, Any]:
    """Metadata of a bundled demo checkpoint: classes, clip size, held-out accuracy, command.

    Args:
        variant (str, optional): a name :func:`load_demo_model` accepts. Default: ``"motion"``

    Returns:
        dict: everything in the checkpoint except the weights.

    Example::

        >>> demo_model_info("motion")["classes"]
        ['right', 'left', 'down', 'up']
    """
    ckpt = _load_demo_checkpoint(variant)
    return {k: v for k, v in ckpt.items() if k != "state_dict"}


def _load_demo_checkpoint(variant: str) -> dict[str, Any]:
    path = demo_checkpoint_path(variant)
    if not path.is_file():
        arch, trained_on = DEMO_NAMES.get(variant, ("c3d_small", variant))
        option = f" --arch {arch}" if arch != "c3d_small" else ""
        raise FileNotFoundError(
            f"no bundled demo checkpoint for variant {variant!r} at {path}; build it with "
            f"`python -m captum_video.models --train --variant {trained_on}{option}`"
        )
    return torch.load(path, map_location="cpu", weights_only=True)

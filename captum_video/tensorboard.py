"""Write relevance clips into TensorBoard event files for the ``captum_video`` plugin.

:func:`add_relevance_clip` stores one clip and its relevance at one step as a single
blob-sequence summary (layout in :mod:`captum_video_tb.metadata`): a JSON header, the original
frames as PNG (or JPEG) and the relevance as 8-bit greyscale PNG frames normalised over the
whole clip. The plugin colour-maps and blends them in the browser, so switching between the
joint, spatial and temporal parts, the colour map and the opacity costs nothing. No TensorFlow
is needed; the summary goes through the ``SummaryWriter``'s own file writer.

View with ``tensorboard --logdir <logdir>`` and open the "Relevance Video" tab.
"""

from __future__ import annotations

import io
import json
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import torch
from PIL import Image
from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from torch import Tensor

from captum_video._scalars import validate_fps
from captum_video._validation import validate_video
from captum_video.relevance import reduce_channels, relevance_per_frame, upsample_to_input
from captum_video_tb import metadata

__all__ = ["add_relevance_clip"]

_PART_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_RESERVED = ("original", "joint")
_TOP_K = 5


def add_relevance_clip(
    writer: Any,
    tag: str,
    video: Tensor,
    attribution: Tensor,
    global_step: int | None = None,
    target: Any = None,
    prediction: Any = None,
    method: Any = None,
    fps: float = 8,
    extra: Mapping[str, Any] | None = None,
    *,
    class_names: Sequence[str] | None = None,
    frame_format: str = "png",
    description: str = "",
    walltime: float | None = None,
) -> dict[str, Any]:
    r"""Log a clip and its relevance for the TensorBoard "Relevance Video" tab.

    The clip, the relevance and the labels of one call are one atomic record (one blob
    sequence datum), so TensorBoard can never show frames of one step beside the curve of
    another. The relevance is summed over channels, brought to the clip's ``(T, H, W)`` with
    trilinear interpolation if needed (layer attributions), and stored as 8-bit frames scaled by
    one ``scale`` shared by all parts of the call (the largest absolute value), so the joint,
    spatial and temporal views are comparable. Per-frame curves (sum and absolute sum of the
    relevance of each frame) are computed before quantisation.

    Args:
        writer (SummaryWriter): a ``torch.utils.tensorboard.SummaryWriter`` (or a
            ``FileWriter``, anything with ``add_summary(summary, global_step, walltime)``).
        tag (str): the series name, e.g. ``"relevance/clip0"``; one tag per clip you follow.
        video (Tensor): the clip ``(C, T, H, W)`` or ``(1, C, T, H, W)`` with ``C`` 1 or 3;
            float in ``[0, 1]`` (``uint8`` clips are refused: pass ``clip.float() / 255``, as
            everywhere in captum-video). Float clips outside ``[0, 1]`` (normalised inputs)
            are min-max rescaled for display and the header says ``video_rescaled: true``;
            un-normalise them yourself for faithful colours.
        attribution (Tensor or SpatioTemporalRelevance): relevance for ``video``:
            ``(C', T', H', W')``, ``(1, C', T', H', W')`` or ``(T', H', W')``. Channels are
            summed; a smaller ``(T', H', W')`` (a layer map, no larger than the clip in any
            dimension and not turned on its side) is up-sampled to the clip; a map with the
            clip's size but H and W swapped is refused, as
            :func:`~captum_video.visualization.write_video` refuses it.
            The named tuple returned by
            :class:`~captum_video.attr.SpatioTemporalSplit` (for one clip) is unpacked: its
            ``joint`` field is the attribution and its ``spatial`` and ``temporal`` fields
            become parts, as if passed in ``extra``.
        global_step (int, optional): the step; ``None`` writes step 0. Default: None
        target (int, str or Tensor, optional): the explained class: an index (int or one-element
            tensor) or a label. Default: None
        prediction (int, str or Tensor, optional): the model's prediction: an index, a label, or
            the score vector ``(K,)`` / ``(1, K)`` (logits or probabilities), from which the
            arg-max, its score and the top-5 are stored. Default: None
        method (str or object, optional): the attribution method; an instance or class is
            stored by its class name (e.g. ``IntegratedGradients``). Default: None
        fps (float, optional): playback speed in frames per second. Default: 8
        extra (mapping, optional): more parts and facts. Tensor values are extra relevance
            parts with the same layouts as ``attribution``, shown as toggles beside "joint"
            (the ``attribution`` itself); the conventional names are ``"spatial"`` and
            ``"temporal"`` (e.g. the two outputs of a spatio-temporal split). Names must match
            ``[A-Za-z0-9_-]+`` and not be ``"original"`` or ``"joint"``. Other values must be
            JSON-serialisable and are shown as an info line. Default: None
        class_names (sequence of str, optional): labels for class indices. Default: None
        frame_format (str, optional): ``"png"`` (lossless) or ``"jpeg"`` for the original
            frames; relevance frames are always PNG. Default: ``"png"``
        description (str, optional): the tag's description (first call of a tag wins).
            Default: ``""``
        walltime (float, optional): event wall time; ``None`` uses the current time.
            Default: None

    Returns:
        dict: the JSON header that was written (sizes, labels, ``scale``, ``encoding``,
        ``curves`` per part, ``blocks`` ...), handy for logging and tests.

    Raises:
        TypeError: ``video``/``attribution``/``extra`` values of the wrong type, or a writer
            without ``add_summary``.
        ValueError: wrong shapes or channel counts, NaN/inf, a batch of more than one clip, a
            bad part name, ``fps <= 0`` or an unknown ``frame_format``.

    Example::

        >>> from torch.utils.tensorboard import SummaryWriter
        >>> writer = SummaryWriter("runs/demo")
        >>> clip = torch.rand(3, 16, 32, 32)
        >>> attr = torch.randn(3, 16, 32, 32)
        >>> header = add_relevance_clip(
        ...     writer, "relevance/clip0", clip, attr, global_step=0, target=1,
        ...     prediction=torch.tensor([0.1, 2.0, -1.0, 0.3]), method="IntegratedGradients",
        ...     extra={"spatial": attr * 0.7, "temporal": attr * 0.3},
        ...     class_names=["right", "left", "down", "up"])
        >>> writer.close()
        >>> header["parts"]
        ['joint', 'spatial', 'temporal']
    """
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"tag must be a non-empty string, got {tag!r}")
    validate_fps(fps)
    if frame_format not in ("png", "jpeg"):
        raise ValueError(f"frame_format must be 'png' or 'jpeg', got {frame_format!r}")
    file_writer = _file_writer(writer)

    frames_u8, rescaled = _video_frames(video)  # (T, H, W, C) uint8
    num_frames, height, width, channels = frames_u8.shape
    size = (num_frames, height, width)
    extra = dict(extra or {})
    fields = getattr(attribution, "_fields", None)
    if isinstance(fields, tuple) and "joint" in fields:  # a SpatioTemporalRelevance
        named = cast(Any, attribution)._asdict()
        extra = {**{k: v for k, v in named.items() if k != "joint"}, **extra}
        attribution = named["joint"]
    parts = {"joint": _relevance_map(attribution, "attribution", size)}
    info: dict[str, Any] = {}
    for key, value in extra.items():
        if isinstance(value, Tensor):
            if not isinstance(key, str) or not _PART_NAME.match(key) or key in _RESERVED:
                raise ValueError(
                    f"extra part names must match [A-Za-z0-9_-]+ and not be {_RESERVED}, "
                    f"got {key!r}"
                )
            parts[key] = _relevance_map(value, f"extra[{key!r}]", size)
        else:
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"extra[{key!r}] must be a tensor (a relevance part) or JSON-serialisable, "
                    f"got {type(value).__name__}"
                ) from exc
            info[str(key)] = value

    stacked = torch.stack(list(parts.values()))  # (P, T, H, W) float64
    max_abs = float(stacked.abs().max())
    scale = max_abs if max_abs > 0 else 1.0
    encoding = "signed" if bool((stacked < 0).any()) else "unsigned"
    codes = _quantise(stacked / scale, encoding)  # (P, T, H, W) uint8

    blocks = {"original": [1, num_frames]}
    for i, name in enumerate(parts):
        blocks[name] = [1 + (i + 1) * num_frames, num_frames]
    target_info = _label(target, class_names, "target")
    prediction_info = _prediction(prediction, class_names)
    correct = None
    if target_info and prediction_info and target_info["index"] is not None:
        correct = target_info["index"] == prediction_info["index"]
    header = {
        "step": int(global_step) if global_step is not None else 0,
        "num_frames": num_frames,
        "height": height,
        "width": width,
        "channels": channels,
        "fps": float(fps),
        "frame_format": frame_format,
        "method": _method_name(method),
        "target": target_info,
        "prediction": prediction_info,
        "correct": correct,
        "parts": list(parts),
        "blocks": blocks,
        "encoding": encoding,
        "scale": scale,
        "part_max_abs": {name: float(m.abs().max()) for name, m in parts.items()},
        "curves": {
            name: {
                key: relevance_per_frame(m[None, None], sign, normalize=None)[0].tolist()
                for key, sign in (("sum", "all"), ("abs_sum", "absolute_value"))
            }
            for name, m in parts.items()
        },
        "video_rescaled": rescaled,
        "info": info,
    }

    blobs = [metadata.encode_header(header)]
    blobs += [_encode_image(frame, frame_format) for frame in frames_u8]
    blobs += [_encode_image(frame, "png") for frame in codes.reshape(-1, height, width)]
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(blobs))]
        ),
        string_val=blobs,
    )
    summary = summary_pb2.Summary(
        value=[
            summary_pb2.Summary.Value(
                tag=tag, metadata=metadata.create_summary_metadata(description), tensor=tensor
            )
        ]
    )
    file_writer.add_summary(summary, global_step, walltime)
    return header


def _file_writer(writer: Any) -> Any:
    # SummaryWriter keeps its FileWriter private; _get_file_writer() is what torch's own add_*
    # methods use and it re-opens the writer after close().
    if hasattr(writer, "_get_file_writer"):
        return writer._get_file_writer()
    if hasattr(writer, "add_summary"):
        return writer
    raise TypeError(
        "writer must be a torch.utils.tensorboard.SummaryWriter (or have add_summary), "
        f"got {type(writer).__name__}"
    )


def _single_clip(x: Any, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 5:
        if x.shape[0] != 1:
            raise ValueError(
                f"{name} holds a batch of {x.shape[0]} clips (shape {tuple(x.shape)}); log one "
                f"clip per call, e.g. {name}[i]"
            )
        x = x[0]
    return x


def _video_frames(video: Any) -> tuple[np.ndarray, bool]:
    """The clip as (T, H, W, C) uint8 frames, and whether it was min-max rescaled."""
    video = _single_clip(video, "video")
    validate_video(video, name="video", channels=(1, 3), batched=False)
    video = video.detach().to("cpu", torch.float64)
    low, high = float(video.min()), float(video.max())
    rescaled = low < -1e-3 or high > 1 + 1e-3
    if rescaled:  # normalised input: stretch to [0, 1] so it is at least visible
        video = (video - low) / max(high - low, 1e-12)
    frames = (video.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 3, 0)
    return frames.numpy(), rescaled


def _relevance_map(attr: Any, name: str, size: tuple[int, int, int]) -> Tensor:
    """Channel-summed relevance at the clip's (T, H, W), float64 on the CPU."""
    attr = _single_clip(attr, name)
    if attr.dim() == 3:
        attr = attr.unsqueeze(0)
    if attr.dim() != 4:
        raise ValueError(
            f"{name} must be (C, T, H, W), (1, C, T, H, W) or (T, H, W), got shape "
            f"{tuple(attr.shape)}"
        )
    if not attr.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {attr.dtype}")
    if attr.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(attr.shape)}")
    if not bool(torch.isfinite(attr).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    reduced = reduce_channels(attr.detach().to("cpu", torch.float64).unsqueeze(0), "sum")
    got = tuple(int(s) for s in reduced.shape[2:])
    if got != size:
        _check_layer_map(got, size, name)
    return upsample_to_input(reduced, size)[0, 0]


def _check_layer_map(got: tuple[int, ...], size: tuple[int, int, int], name: str) -> None:
    """Refuse a relevance that is not the clip's ``(T, H, W)`` and cannot be a layer map of
    it: larger in some dimension, or turned on its side (a map whose H and W are swapped).
    Down-sampling never turns a frame on its side, so a genuine layer map keeps H <= W or
    H >= W as the clip does."""
    t, h, w = size
    if got[1:] == (w, h) or (got[1] > got[2] and h < w) or (got[1] < got[2] and h > w):
        raise ValueError(
            f"{name} covers (T, H, W) = {got} but the video is {size}: its H and W look "
            f"swapped; pass {name}.transpose(-1, -2) if so (relevance is never resampled to "
            "another orientation)"
        )
    if any(a > b for a, b in zip(got, size, strict=True)):
        raise ValueError(
            f"{name} covers (T, H, W) = {got}, more than the video's {size} (frames, height "
            "or width); relevance for this clip must have its size, or be a smaller layer map"
        )


def _quantise(unit: Tensor, encoding: str) -> np.ndarray:
    """Map relevance divided by the scale (in [-1, 1]) to bytes, see metadata.ENCODINGS."""
    if encoding == "signed":
        codes = 127.5 + 127.5 * unit
    else:
        codes = 255.0 * unit
    return codes.round().clamp(0, 255).to(torch.uint8).numpy()


def _encode_image(frame: np.ndarray, fmt: str) -> bytes:
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    buffer = io.BytesIO()
    if fmt == "jpeg":
        Image.fromarray(frame).save(buffer, format="JPEG", quality=92)
    else:
        Image.fromarray(frame).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def _class_label(index: int, class_names: Sequence[str] | None) -> str | None:
    if class_names is not None and 0 <= index < len(class_names):
        return str(class_names[index])
    return None


def _label(value: Any, class_names: Sequence[str] | None, name: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {"index": None, "label": value}
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be one class index, got shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, a str or a one-element tensor, got {value!r}")
    return {"index": int(value), "label": _class_label(int(value), class_names)}


def _prediction(value: Any, class_names: Sequence[str] | None) -> dict[str, Any] | None:
    if isinstance(value, Tensor) and value.numel() > 1:
        scores = value.detach().to("cpu", torch.float64).reshape(-1)
        if value.dim() > 2 or (value.dim() == 2 and value.shape[0] != 1):
            raise ValueError(
                f"prediction scores must be (K,) or (1, K), got shape {tuple(value.shape)}"
            )
        if not bool(torch.isfinite(scores).all()):
            raise ValueError("prediction scores contain NaN or infinite values")
        top = torch.topk(scores, min(_TOP_K, scores.numel()))
        best = int(top.indices[0])
        return {
            "index": best,
            "label": _class_label(best, class_names),
            "score": float(top.values[0]),
            "top": [
                {"index": int(i), "label": _class_label(int(i), class_names), "score": float(s)}
                for s, i in zip(top.values, top.indices, strict=True)
            ],
        }
    return _label(value, class_names, "prediction")


def _method_name(method: Any) -> str | None:
    if method is None or isinstance(method, str):
        return method
    if isinstance(method, type):
        return method.__name__
    return type(method).__name__

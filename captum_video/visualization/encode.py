"""Encoding frames to video files that browsers play, one frame at a time if need be.

MP4 is H.264 (``libx264``, ``yuv420p``) and WebM is VP8 or VP9 (``libvpx``), both through
PyAV, whose wheels bundle FFmpeg with those encoders; OpenCV's pip wheels can only write MP4 as
MPEG-4 Part 2, which browsers do not play, and log a codec warning for every WebM file. AVI is
Motion JPEG (for tools that read nothing else); GIF is written with Pillow and plays anywhere.
:class:`VideoEncoder` takes frames as they come, so a long video or a live stream is written
without holding it in memory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

__all__ = ["DEFAULT_OPTIONS", "VIDEO_FORMATS", "VideoEncoder", "check_fps"]

#: Suffix -> PyAV encoders tried in order (``None`` for GIF, written with Pillow).
VIDEO_FORMATS: dict[str, tuple[str, ...] | None] = {
    ".mp4": ("libx264", "h264"),
    ".webm": ("libvpx", "libvpx-vp9"),
    ".avi": ("mjpeg",),
    ".gif": None,
}
_PIXEL_FORMATS = {"mjpeg": "yuvj420p"}
#: Encoder options used unless the caller gives others: x264's "veryfast" preset encodes
#: overlays several times faster than its default at a quality that does not show here.
DEFAULT_OPTIONS: dict[str, dict[str, str]] = {"libx264": {"preset": "veryfast"}}


def check_fps(fps: Any, name: str = "fps") -> float:
    """A frame rate as a float, or a ValueError naming the argument.

    Args:
        fps (float): frames per second.
        name (str, optional): the argument's name in the message. Default: ``"fps"``

    Returns:
        float: ``fps``.

    Example::

        >>> check_fps(25)
        25.0
    """
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.number)):
        raise TypeError(f"{name} must be a number of frames per second, got {type(fps).__name__}")
    fps = float(fps)
    if not math.isfinite(fps) or fps <= 0 or fps > 1000:
        raise ValueError(f"{name} must be a finite frame rate in (0, 1000], got {fps}")
    return fps


class VideoEncoder:
    r"""Write RGB ``uint8`` frames to ``.mp4`` (H.264), ``.webm`` (VP8), ``.avi`` or ``.gif``.

    Frames may come one at a time or in blocks; the first one fixes the size (odd sizes are
    padded by one edge pixel: the encoders need even sizes). Use it as a context manager: the
    file is complete once the block ends, also when it ends with an error.

    Args:
        path (str or PathLike): the output file; its suffix picks the format. Parent folders
            are created.
        fps (float): frames per second.
        codec (str, optional): a PyAV encoder name to use instead of the defaults of
            :data:`VIDEO_FORMATS` (e.g. ``"libvpx-vp9"``). Default: None
        options (mapping, optional): FFmpeg options of the encoder, e.g.
            ``{"preset": "ultrafast", "tune": "zerolatency"}`` for a live stream.
            Default: :data:`DEFAULT_OPTIONS` of the encoder

    Returns:
        An encoder; :meth:`write` adds frames, :meth:`close` finishes the file.

    Example::

        >>> with VideoEncoder("clip.mp4", fps=8) as encoder:
        ...     encoder.write(np.zeros((16, 64, 64, 3), dtype=np.uint8))
        >>> encoder.frames_written
        16
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float,
        codec: str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.suffix = self.path.suffix.lower()
        if self.suffix not in VIDEO_FORMATS:
            raise ValueError(
                f"cannot tell the format of {self.path.name!r}: use one of "
                f"{', '.join(VIDEO_FORMATS)}"
            )
        self.fps = check_fps(fps)
        if codec is not None and self.suffix == ".gif":
            raise ValueError("codec does not apply to .gif files (written with Pillow)")
        if codec is not None:
            import av

            try:
                av.codec.Codec(codec, "w")
            except (ValueError, TypeError) as err:
                raise ValueError(
                    f"codec {codec!r} is not an encoder of this FFmpeg build ({err}); leave "
                    "codec=None for the format's default"
                ) from None
        self.codec = codec
        self.options = None if options is None else dict(options)
        self.frames_written = 0
        self.codec_name: str | None = None
        self._container: Any = None
        self._stream: Any = None
        self._gif_frames: list[np.ndarray] = []
        self._size: tuple[int, int] | None = None
        self._closed = False
        self._make_folder()

    def _make_folder(self) -> None:
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OSError(f"cannot create the output folder {folder}: {err.strerror}") from err
        if not os.access(folder, os.W_OK):
            raise PermissionError(
                f"cannot write {self.path.name} into {folder}: permission denied (choose a "
                "folder you can write to)"
            )

    def _open(self, height: int, width: int) -> None:
        import av

        candidates = (self.codec,) if self.codec else VIDEO_FORMATS[self.suffix] or ()
        errors = []
        for name in candidates:
            try:
                container = av.open(str(self.path), mode="w")
            except OSError as err:
                raise OSError(f"cannot open {self.path} for writing: {err}") from err
            try:
                stream: Any = container.add_stream(name, rate=self._rate())
            except (ValueError, av.error.FFmpegError) as err:
                container.close()
                errors.append(f"{name}: {err}")
                continue
            stream.width, stream.height = width, height
            chosen = self.options if self.options is not None else DEFAULT_OPTIONS.get(name, {})
            stream.options = {str(k): str(v) for k, v in chosen.items()}
            stream.pix_fmt = _PIXEL_FORMATS.get(name, "yuv420p")
            if name.startswith("libvpx"):
                stream.bit_rate = max(1_000_000, width * height * 8)  # sharp overlays
            self._container, self._stream, self.codec_name = container, stream, name
            return
        self.path.unlink(missing_ok=True)
        raise RuntimeError(
            f"cannot write {self.path.name}: PyAV ({av.__version__}) has no encoder among "
            f"{candidates} ({'; '.join(errors)}); write .webm, .mp4 or .gif instead"
        )

    def _rate(self) -> Any:
        from fractions import Fraction

        return Fraction(self.fps).limit_denominator(1001)

    def write(self, frames: np.ndarray) -> None:
        """Add a frame ``(H, W, 3)`` or frames ``(T, H, W, 3)``, ``uint8`` RGB.

        Args:
            frames (ndarray): the frames; all must have the size of the first.

        Returns:
            None
        """
        if self._closed:
            raise ValueError(f"{self.path.name} is closed")
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(
                f"frames must be uint8 RGB (T, H, W, 3) or (H, W, 3), got {frames.dtype} "
                f"{frames.shape}"
            )
        pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
        if pad_h or pad_w:
            frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        size = (frames.shape[1], frames.shape[2])
        if self._size is None:
            self._size = size
            if self.suffix != ".gif":
                self._open(*size)
        elif size != self._size:
            raise ValueError(f"frame size {size} differs from the first frame's {self._size}")
        if self.suffix == ".gif":
            self._gif_frames.extend(frames)
        else:
            import av

            for frame in frames:
                image = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                for packet in self._stream.encode(image):
                    self._container.mux(packet)
        self.frames_written += len(frames)

    def close(self) -> Path:
        """Finish the file.

        Returns:
            pathlib.Path: the written file.

        Raises:
            ValueError: no frame was written.
        """
        if self._closed:
            return self.path
        self._closed = True
        if self.frames_written == 0:
            if self._container is not None:
                self._container.close()
            self.path.unlink(missing_ok=True)
            raise ValueError(f"nothing to write to {self.path.name}: zero frames")
        if self.suffix == ".gif":
            _write_gif(self._gif_frames, self.path, self.fps)
            self._gif_frames = []
        else:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
        return self.path

    def __enter__(self) -> VideoEncoder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if error is None or self.frames_written:
            self.close()
        elif self._container is not None:
            self._container.close()


def _write_gif(frames: list[np.ndarray], path: Path, fps: float) -> None:
    from PIL import Image

    # Fast-octree palettes: Pillow's default median cut is ~40x slower on video frames.
    images = [
        Image.fromarray(frame).quantize(256, method=Image.Quantize.FASTOCTREE) for frame in frames
    ]
    images[0].save(
        path,
        save_all=True,
        append_images=images[1:],
        duration=max(int(round(1000.0 / fps)), 10),
        loop=0,
    )

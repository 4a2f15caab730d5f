r"""A data set over a folder of video files, decoded one clip at a time.

:class:`VideoFolder` lists video files once and reads a clip only when it is indexed, so a
folder of thousands of videos can be streamed through
:func:`captum_video.pipeline.explain_dataset` (or any DataLoader, with workers decoding in
parallel) without holding more than a batch in memory. With ``labels_from_folders=True`` it
follows torchvision's ``ImageFolder``: ``root/<class>/<video>`` gives the class index of
``<class>`` in sorted order.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from torch import Tensor
from torch.utils.data import Dataset

from captum_video._scalars import validate_positive_int
from captum_video.io import read_video

__all__ = ["VideoFolder", "VIDEO_SUFFIXES", "find_videos"]

#: File suffixes taken for videos (lower case).
VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg")


def find_videos(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    suffixes: Sequence[str] = VIDEO_SUFFIXES,
    recursive: bool = False,
) -> list[Path]:
    r"""Video files among files and folders, folders listed in sorted order.

    Args:
        paths (str, PathLike or iterable of them): video files and/or folders.
        suffixes (sequence of str, optional): suffixes counted as video, lower case.
            Default: :data:`VIDEO_SUFFIXES`
        recursive (bool, optional): also look in sub-folders. Default: False

    Returns:
        list of Path: the files, folders expanded in sorted order, given files as given.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: no video file was found.

    Example::

        >>> find_videos(["clips/", "extra.mp4"])
        [PosixPath('clips/a.mp4'), PosixPath('clips/b.webm'), PosixPath('extra.mp4')]
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    wanted = {s.lower() for s in suffixes}
    found: list[Path] = []
    given = [Path(p) for p in paths]
    for path in given:
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found += sorted(p for p in path.glob(pattern) if p.suffix.lower() in wanted)
        elif path.exists():
            found.append(path)
        else:
            raise FileNotFoundError(f"video file not found: {path}")
    if not found:
        raise ValueError(f"no video files found in {', '.join(map(str, given))}")
    return found


class VideoFolder(Dataset):
    r"""Clips read on demand from video files: ``(clip,)`` or ``(clip, label)`` per file.

    Each item is one clip of ``num_frames`` frames spread evenly over the whole video (see
    :func:`captum_video.io.read_video`), float32 ``(3, T, H, W)`` in ``[0, 1]``.

    Args:
        paths (str, PathLike or iterable of them): a folder, or video files and folders.
        num_frames (int, optional): frames per clip. Default: 16
        size (tuple of int, optional): ``(H, W)`` of the frames; None keeps the native size
            (then all videos must share it to be batched). Default: ``(112, 112)``
        labels_from_folders (bool, optional): label each video by its parent folder, the
            classes being the sorted sub-folder names of the root (``ImageFolder``
            convention); needs a single root folder. Default: False
        suffixes (sequence of str, optional): suffixes counted as video.
            Default: :data:`VIDEO_SUFFIXES`
        recursive (bool, optional): look in sub-folders (implied by
            ``labels_from_folders``). Default: False

    Attributes:
        paths (list of Path): the video files, in item order.
        classes (list of str or None): class names with ``labels_from_folders``.

    Raises:
        FileNotFoundError, ValueError: a missing path, or no video found. An unreadable file
        raises when its item is read, naming the file.

    Example::

        >>> data = VideoFolder("videos/", num_frames=16, size=(112, 112))
        >>> clip = data[0]
        >>> clip.shape
        torch.Size([3, 16, 112, 112])
        >>> data.clip_name(0)
        'a.mp4'
    """

    def __init__(
        self,
        paths: str | os.PathLike | Iterable[str | os.PathLike],
        num_frames: int = 16,
        size: tuple[int, int] | None = (112, 112),
        labels_from_folders: bool = False,
        suffixes: Sequence[str] = VIDEO_SUFFIXES,
        recursive: bool = False,
    ) -> None:
        validate_positive_int(num_frames, "num_frames")
        if size is not None:
            if not isinstance(size, (tuple, list)) or len(size) != 2:
                raise ValueError(f"size must be None or (H, W), got {size!r}")
            for value in size:
                validate_positive_int(value, "size (H, W)")
        self.num_frames = num_frames
        self.size = size
        self.classes: list[str] | None = None
        self._labels: list[int] | None = None
        if labels_from_folders:
            roots = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
            if len(roots) != 1 or not Path(roots[0]).is_dir():
                raise ValueError("labels_from_folders needs one root folder of class folders")
            root = Path(roots[0])
            self.classes = sorted(p.name for p in root.iterdir() if p.is_dir())
            if not self.classes:
                raise ValueError(
                    f"labels_from_folders needs class folders (root/<class>/<video>), but {root} "
                    "has no sub-folders; sort its videos into one folder per class, or pass "
                    "labels_from_folders=False"
                )
            self.paths = find_videos([root / c for c in self.classes], suffixes, recursive=True)
            index = {c: i for i, c in enumerate(self.classes)}
            self._labels = [index[p.relative_to(root).parts[0]] for p in self.paths]
        else:
            self.paths = find_videos(paths, suffixes, recursive)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Tensor | tuple[Tensor, int]:
        clip = read_video(self.paths[index], num_frames=self.num_frames, size=self.size)
        if self._labels is None:
            return clip
        return clip, self._labels[index]

    def clip_name(self, index: int) -> str:
        """The file name of item ``index``, used by reports to name the clip."""
        return self.paths[index].name

    def fingerprint(self) -> str:
        r"""What identifies the clips: files (path, size, modification time) and options.

        :func:`~captum_video.pipeline.explain_dataset` stores it with a run, so resuming on
        a folder whose files were added, removed, replaced or edited, or read with other
        options, is refused instead of mixing old and new clips. Reading the file system's
        metadata only, it costs a ``stat`` per file, not a decode.

        Returns:
            str: the sha256 of the description, hex.

        Example::

            >>> VideoFolder("videos/").fingerprint() == VideoFolder("videos/").fingerprint()
            True
        """
        files = []
        for path in self.paths:
            try:
                info = path.stat()
                files.append([str(path.resolve()), info.st_size, info.st_mtime_ns])
            except OSError:  # a file gone since it was listed: fails when read, not here
                files.append([str(path.absolute()), None, None])
        description = {
            "files": files,
            "num_frames": self.num_frames,
            "size": list(self.size) if self.size is not None else None,
            "classes": self.classes,
            "labels": self._labels,
        }
        return hashlib.sha256(json.dumps(description).encode()).hexdigest()

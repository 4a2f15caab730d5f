r"""Clips that could not be explained: how a failure is told apart from a caller's mistake,
recorded, and listed in ``out_dir/failures.json``.

One unreadable video must not cost the other clips of a data set, so the pipeline isolates
per-clip errors: an exception raised while a clip is *loaded* (the data set's
``__getitem__``, also inside DataLoader workers) or *explained* (the model, a method, the
metrics) becomes a failure record of that clip and the run goes on. Errors that are the
caller's for every clip alike (a method name that does not exist, a model returning scores
of the wrong shape, a class index out of range) are :class:`ConfigurationError`\ s and raise
at once: recording them for each clip would only hide them.

A failure record is a plain dict::

    {"index": 3, "name": "broken.mp4", "stage": "load", "error": "ValueError",
     "message": "video file .../broken.mp4 is empty or unreadable"}

``stage`` is ``"load"``, ``"explain"`` (the model's scores, temporal sensitivity) or the name
of the method whose explanation (or its metrics) raised.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigurationError",
    "LoadFailure",
    "StageFailed",
    "describe_failures",
    "failure_record",
    "load_failures",
    "FAILURES_FILE",
]

#: The failures of a run, merged from its shards (written by the merge, also when empty).
FAILURES_FILE = "failures.json"
_MAX_MESSAGE = 2000  # a decoder's message can be a whole log; keep the head


class ConfigurationError(ValueError):
    """A mistake of the run's configuration, the same for every clip: raised, never recorded.

    Example::

        >>> raise ConfigurationError("the model must return (N, K) scores, got (4,)")
    """


class StageFailed(Exception):
    """An error of one stage of a batch (a method's name, or ``"explain"``), wrapping it.

    Args:
        stage (str): where the error happened.
        error (Exception): the original error.

    Example::

        >>> StageFailed("gradcam_tube", RuntimeError("boom")).stage
        'gradcam_tube'
    """

    def __init__(self, stage: str, error: BaseException) -> None:
        super().__init__(f"{stage}: {type(error).__name__}: {error}")
        self.stage, self.error = stage, error


@dataclass(frozen=True)
class LoadFailure:
    """Stands in for an item whose loading raised (picklable: it crosses worker processes).

    Attributes:
        error (str): the exception's type name.
        message (str): its message.
    """

    error: str
    message: str

    @classmethod
    def of(cls, error: BaseException) -> LoadFailure:
        """The failure of ``error``.

        Args:
            error (BaseException): what loading raised.

        Returns:
            LoadFailure: its type name and (shortened) message.

        Example::

            >>> LoadFailure.of(ValueError("too short")).error
            'ValueError'
        """
        return cls(type(error).__name__, str(error)[:_MAX_MESSAGE])


def failure_record(index: int, name: str, stage: str, error: BaseException | LoadFailure) -> dict:
    r"""The record of one clip that failed.

    Args:
        index (int): the clip's index in the data set.
        name (str): the clip's name (its file for a
            :class:`~captum_video.video_folder.VideoFolder`).
        stage (str): ``"load"``, ``"explain"`` or the method's name.
        error (BaseException or LoadFailure): what was raised.

    Returns:
        dict: ``{"index", "name", "stage", "error", "message"}``.

    Example::

        >>> failure_record(3, "b.mp4", "load", ValueError("unreadable"))["error"]
        'ValueError'
    """
    if not isinstance(error, LoadFailure):
        error = LoadFailure.of(error)
    return {
        "index": int(index),
        "name": str(name),
        "stage": stage,
        "error": error.error,
        "message": error.message,
    }


def load_failures(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    r"""The failures of a finished run (``out_dir/failures.json``), ordered by clip index.

    Args:
        out_dir (str or PathLike): the ``out_dir`` of
            :func:`~captum_video.pipeline.explain_dataset`.

    Returns:
        list of dict: failure records (see the module docstring); empty when none failed.

    Raises:
        FileNotFoundError: the run was not merged yet.

    Example::

        >>> [f["name"] for f in load_failures("runs/videos")]
        ['broken.mp4', 'short.avi']
    """
    path = Path(out_dir) / FAILURES_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; run explain_dataset to the end first")
    return json.loads(path.read_text())


def describe_failures(failures: Sequence[dict[str, Any]], limit: int = 3) -> str:
    """One line naming the first ``limit`` failures (for error messages).

    Args:
        failures (sequence of dict): failure records.
        limit (int, optional): how many to name. Default: 3

    Returns:
        str: e.g. ``"broken.mp4 (load: ValueError: unreadable); ..."``.

    Example::

        >>> describe_failures([failure_record(0, "a.mp4", "load", ValueError("x"))])
        'a.mp4 (load: ValueError: x)'
    """
    named = [f"{f['name']} ({f['stage']}: {f['error']}: {f['message']})" for f in failures]
    more = f"; and {len(named) - limit} more" if len(named) > limit else ""
    return "; ".join(named[:limit]) + more

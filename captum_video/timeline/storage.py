"""Writing a long array to a ``.npy`` file frame by frame, without knowing its length first."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import TracebackType

import numpy as np

__all__ = ["NpyAppender"]


class NpyAppender:
    r"""Append equally shaped arrays to a ``.npy`` file; ``np.load`` reads the result.

    Rows go to a raw side file as they come; :meth:`close` writes the ``.npy`` header for the
    final length and copies the rows after it in blocks, so memory stays at one block whatever
    the length (``np.load(path, mmap_mode="r")`` then reads it without loading it either).

    Args:
        path (str or PathLike): the ``.npy`` file.
        dtype (numpy dtype): the stored type, e.g. ``np.float16``.

    Returns:
        An appender, usable as a context manager.

    Example::

        >>> with NpyAppender("/tmp/rows.npy", np.float16) as rows:
        ...     rows.append(np.zeros((2, 3)))
        ...     rows.append(np.ones((2, 3)))
        >>> np.load("/tmp/rows.npy").shape
        (2, 2, 3)
    """

    def __init__(self, path: str | os.PathLike, dtype: np.dtype | type = np.float32) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self.row_shape: tuple[int, ...] | None = None
        self._raw_path = self.path.with_name(self.path.name + ".rows")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._raw = open(self._raw_path, "wb")  # noqa: SIM115 - closed in close()

    def append(self, row: np.ndarray) -> None:
        """Add one row (all rows share the first row's shape).

        Args:
            row (ndarray): the row.

        Returns:
            None
        """
        row = np.asarray(row, dtype=self.dtype)
        if self.row_shape is None:
            self.row_shape = row.shape
        elif row.shape != self.row_shape:
            raise ValueError(f"row of shape {row.shape} differs from {self.row_shape}")
        self._raw.write(np.ascontiguousarray(row).tobytes())
        self.rows += 1

    def close(self) -> Path:
        """Write the ``.npy`` file and remove the side file.

        Returns:
            pathlib.Path: the ``.npy`` file.
        """
        if self._raw.closed:
            return self.path
        self._raw.close()
        shape = (self.rows, *(self.row_shape or ()))
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                  "shape": shape}  # fmt: skip
        with open(self.path, "wb") as out, open(self._raw_path, "rb") as raw:
            np.lib.format.write_array_header_1_0(out, header)
            shutil.copyfileobj(raw, out, length=1 << 24)
        self._raw_path.unlink()
        return self.path

    def __enter__(self) -> NpyAppender:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

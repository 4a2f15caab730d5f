"""Checks of scalar arguments shared by every captum-video entry point: frame rates and counts.

Each returns the value in its canonical type or raises a ``ValueError`` / ``TypeError`` whose
message names the argument and what it must be.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["validate_fps", "validate_positive_int"]


def validate_fps(fps: Any, name: str = "fps") -> float:
    """A frame rate as a finite positive float.

    Args:
        fps (float): frames per second.
        name (str, optional): the argument's name. Default: ``"fps"``

    Returns:
        float

    Raises:
        TypeError: not a real number.
        ValueError: zero, negative, NaN or infinite.

    Example::

        >>> validate_fps(25)
        25.0
    """
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real):
        raise TypeError(f"{name} must be a number of frames per second, got {type(fps).__name__}")
    value = float(fps)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0 (frames per second), got {fps!r}")
    return value


def validate_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """An int argument ``>= minimum`` (a count, a size or a stride).

    Args:
        value (int): the value.
        name (str): the argument's name.
        minimum (int, optional): the smallest value allowed. Default: 1

    Returns:
        int

    Raises:
        TypeError: not an int (a bool, a float or a string).
        ValueError: below ``minimum``.

    Example::

        >>> validate_positive_int(2, "frame_stride")
        2
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)

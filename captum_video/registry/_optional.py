"""Families of optional libraries (Hugging Face ``transformers``, PyTorchVideo), registered lazily.

Importing ``transformers`` or ``pytorchvideo`` costs seconds, so ``import captum_video`` does
not. Their families are registered the first time the registry is asked about a model after
the library was imported (a model of that library implies it was), or when
:func:`~captum_video.registry.load_model` is given one of their names.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings
from types import ModuleType

__all__ = [
    "OPTIONAL_LIBRARIES",
    "PYTORCHVIDEO_MODELS",
    "installed",
    "optional_family_modules",
]

#: library -> (the registry module that registers its families, the pip extra that installs it)
OPTIONAL_LIBRARIES: dict[str, tuple[str, str]] = {
    "transformers": ("captum_video.registry.huggingface", "hf"),
    "pytorchvideo": ("captum_video.registry.pytorchvideo", "pytorchvideo"),
}

#: PyTorchVideo hub builders that :func:`~captum_video.registry.load_model` accepts as
#: ``"pytorchvideo:<name>"`` (Kinetics-400 video classifiers; weights from a local file).
PYTORCHVIDEO_MODELS: tuple[str, ...] = (
    "x3d_xs",
    "x3d_s",
    "x3d_m",
    "x3d_l",
    "slow_r50",
    "c2d_r50",
    "i3d_r50",
    "slowfast_r50",
    "slowfast_r101",
    "slowfast_16x8_r101_50_50",
    "csn_r101",
    "r2plus1d_r50",
    "mvit_base_16x4",
    "mvit_base_32x3",
)

_failed: set[str] = set()


def installed(library: str) -> bool:
    """Whether ``library`` can be imported (without importing it)."""
    return importlib.util.find_spec(library) is not None


def optional_family_modules(library: str | None = None) -> list[ModuleType]:
    """Import the registry modules of every optional library already imported (and of
    ``library``); each defines its entries in ``FAMILIES``.

    Importing a registry module registers its families; :func:`register_optional_families`
    puts them back if the table was swapped since (tests use a scratch registry).

    Args:
        library (str, optional): a key of :data:`OPTIONAL_LIBRARIES` to import now if needed.

    Returns:
        list of module: the registry modules imported so far.

    Raises:
        ImportError: ``library`` is not installed (the message names the pip extra), or its
            registry module cannot be imported.
    """
    if library is not None and library not in OPTIONAL_LIBRARIES:
        raise ValueError(
            f"library must be one of {sorted(OPTIONAL_LIBRARIES)} or None, got {library!r}"
        )
    modules = []
    for name, (module, extra) in OPTIONAL_LIBRARIES.items():
        if name != library and (name in _failed or name not in sys.modules):
            continue
        if name == library and not installed(name):
            raise ImportError(
                f"{name} is not installed: pip install 'captum-video[{extra}]' to use its models"
            )
        try:
            modules.append(importlib.import_module(module))
        except ImportError as err:
            if name == library:
                raise
            _failed.add(name)
            warnings.warn(
                f"captum-video cannot register the {name} model families: {err}",
                RuntimeWarning,
                stacklevel=3,
            )
    return modules

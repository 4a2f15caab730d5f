r"""What a run computes, written down so a resumed run can tell whether it is the same run.

A run of :func:`~captum_video.pipeline.explain_dataset` is identified by everything that
decides its results: the model's weights (:func:`model_sha256`), the explained layer
(:func:`layer_name`), each method and its arguments (:func:`method_identity`), the data
(:func:`data_fingerprint`), the options, and the package version. ``run.json`` holds this
configuration and every shard carries its :func:`run_key`, so resuming with other weights
is refused instead of silently mixing two runs' results (:class:`ConfigurationChanged`),
and a shard left by another run is recognised even when ``run.json`` is gone.

Hashing a state dict reads every byte of it: about 0.17 s for 30 M float32 parameters
(120 MB) on one core with SHA-NI, which is small beside explaining even one batch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

import captum_video
from captum_video._hashing import model_sha256, update_tensor

__all__ = [
    "ConfigurationChanged",
    "changed_keys",
    "data_fingerprint",
    "file_sha256",
    "layer_name",
    "method_identity",
    "model_sha256",
    "package_version",
    "plain",
    "run_key",
]

_PLAIN = (str, int, float, bool, type(None), Path)


def file_sha256(path: str | os.PathLike) -> str:
    r"""The sha256 of a file's bytes, read in chunks.

    Args:
        path (str or PathLike): the file.

    Returns:
        str: the hex digest.

    Example::

        >>> file_sha256("out/shards/shard-00000.npz")[:8]
        '3f1c9a0b'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(functools.partial(f.read, 1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def layer_name(model: nn.Module, layer: nn.Module) -> str:
    r"""The dotted name of ``layer`` in ``model`` (what identifies it across processes).

    Args:
        model (nn.Module): the model.
        layer (nn.Module): one of its modules.

    Returns:
        str: e.g. ``"layer3"``; ``"<model>"`` for the model itself and
        ``"<Conv3d outside the model>"`` for a module the model does not hold.

    Example::

        >>> from captum_video.models import load_demo_model
        >>> model = load_demo_model()
        >>> layer_name(model, model.layer2)
        'layer2'
    """
    for name, module in model.named_modules():
        if module is layer:
            return name or "<model>"
    return f"<{type(layer).__name__} outside the model>"


def _qualified(obj: Any) -> str:
    if isinstance(obj, functools.partial):
        return f"partial({_qualified(obj.func)}, {plain(obj.args)}, {plain(obj.keywords)})"
    module = getattr(obj, "__module__", None) or "?"
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}.{name}"


def plain(value: Any) -> Any:
    r"""A JSON-able description of an argument that is the same in every process.

    Numbers, strings, lists and mappings stay as they are; tensors and arrays become their
    sha256, shape and dtype; functions and classes their qualified name; other objects their
    type's qualified name (never ``repr``, whose memory addresses change between runs).

    Args:
        value: an argument of a method.

    Returns:
        a JSON-able value.

    Example::

        >>> plain({"window": (4, 2), "baseline": torch.zeros(2)})["window"]
        [4, 2]
    """
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (Tensor, np.ndarray)):
        digest = hashlib.sha256()
        update_tensor(digest, "", value)
        return {"tensor_sha256": digest.hexdigest()}
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value)
    if callable(value):
        return _qualified(value)
    return f"<{_qualified(type(value))}>"


def method_identity(
    name: str, method: Any, kwargs: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    r"""What identifies one method of a run.

    Args:
        name (str): the method's name in the run.
        method: a name of :data:`captum_video.explainers.EXPLAINERS`, or the user's
            ``explain(clips, target)`` callable.
        kwargs (mapping, optional): for registry methods, the ``attribute`` keywords they
            run with (the entry's, with the caller's overrides). Default: None

    Returns:
        dict: ``{"registry": name, "kwargs": {...}}`` or ``{"callable": qualified name}``
        (a callable's code is not hashed: pass ``fingerprint=`` to explain_dataset when it
        changes).

    Example::

        >>> method_identity("ig", "integrated_gradients", {"n_steps": 16})
        {'registry': 'integrated_gradients', 'kwargs': {'n_steps': 16}}
    """
    if isinstance(method, str):
        return {"registry": method, "kwargs": plain(dict(kwargs or {}))}
    return {"callable": _qualified(method)}


def _is_plain(value: Any) -> bool:
    return isinstance(value, _PLAIN)


def _feed_dataset(digest: Any, dataset: Any, depth: int) -> None:
    """Feed the plain attributes, tensors and nested data sets of ``dataset`` to ``digest``."""
    digest.update(f"<{_qualified(type(dataset))}>".encode())
    for key, value in sorted(vars(dataset).items()):
        if key.startswith("__"):
            continue
        values = value if isinstance(value, (list, tuple)) else None
        if isinstance(value, _PLAIN) or (values is not None and all(map(_is_plain, values))):
            digest.update(json.dumps([key, value], default=str).encode())
        elif isinstance(value, (Tensor, np.ndarray)):
            update_tensor(digest, key, value)
        elif values is not None and all(isinstance(v, (Tensor, np.ndarray)) for v in values):
            for i, v in enumerate(values):  # e.g. TensorDataset.tensors
                update_tensor(digest, f"{key}[{i}]", v)
        elif isinstance(value, Dataset) and depth < 4:  # e.g. Subset.dataset
            digest.update(key.encode())
            _feed_dataset(digest, value, depth + 1)


def data_fingerprint(dataset: Dataset) -> dict[str, Any]:
    r"""What identifies the items of a data set.

    A data set with a ``fingerprint()`` method describes itself (e.g.
    :meth:`~captum_video.video_folder.VideoFolder.fingerprint`: file paths, sizes, modification
    times and options). Otherwise its class and attributes are hashed: plain values (a
    :class:`~captum_video.datasets.MovingShapes`' seed and sizes), tensors and arrays byte by
    byte (a ``TensorDataset``'s tensors), and nested data sets (a ``Subset``'s).

    Args:
        dataset (Dataset): the data set.

    Returns:
        dict: ``{"type", "fingerprint"}`` or ``{"type", "sha256"}``.

    Example::

        >>> from captum_video.datasets import MovingShapes
        >>> data_fingerprint(MovingShapes(seed=1)) != data_fingerprint(MovingShapes(seed=2))
        True
    """
    kind = _qualified(type(dataset))
    own = getattr(dataset, "fingerprint", None)
    if callable(own):
        return {"type": kind, "fingerprint": str(own())}
    digest = hashlib.sha256()
    if hasattr(dataset, "__dict__"):
        _feed_dataset(digest, dataset, 0)
    return {"type": kind, "sha256": digest.hexdigest()}


def package_version() -> str:
    """``captum_video.__version__`` (read at call time: results may change between versions)."""
    return str(captum_video.__version__)


def run_key(config: Mapping[str, Any]) -> str:
    r"""The sha256 of a run's configuration: the identity every shard of the run carries.

    Args:
        config (mapping): the configuration (``run.json`` without its ``run_key``).

    Returns:
        str: the hex digest of the configuration as sorted JSON.

    Example::

        >>> run_key({"num_clips": 8}) == run_key({"num_clips": 8})
        True
    """
    body = {k: v for k, v in config.items() if k != "run_key"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def changed_keys(previous: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    """The configuration keys whose values differ (``run_key`` aside), sorted.

    Args:
        previous (mapping): the stored configuration.
        config (mapping): the new one.

    Returns:
        list of str: the keys that differ.

    Example::

        >>> changed_keys({"seed": 0, "run_key": "a"}, {"seed": 1})
        ['seed']
    """
    # Compare through JSON: tuples and lists are the same once stored.
    a, b = (json.loads(json.dumps(dict(c), default=str)) for c in (previous, config))
    return sorted(k for k in (set(a) | set(b)) - {"run_key"} if a.get(k) != b.get(k))


#: How a refusal names a changed configuration key.
_WHAT = {
    "model_sha256": "other model weights",
    "model": "another model class",
    "layer": "another layer",
    "methods": "other methods",
    "method_args": "other method arguments",
    "data": "other data",
    "num_clips": "another number of clips",
    "version": "another captum_video version",
    "fingerprint": "another fingerprint",
    "format": "another shard format",
    "class_names": "other class names",
}


class ConfigurationChanged(ValueError):
    r"""``out_dir`` holds a run that computed something else; resuming would mix two runs.

    Args:
        out_dir (str or Path): the folder.
        changed (iterable of str): the configuration keys that differ.
        option (str, optional): how the caller spells "start over" in the message.
            Default: ``"overwrite=True"``

    Example::

        >>> str(ConfigurationChanged("out", ["model_sha256"], "--overwrite"))[:58]
        'out holds a run of other model weights (model_sha256 differs)'
    """

    def __init__(
        self, out_dir: str | Path, changed: Iterable[str], option: str = "overwrite=True"
    ) -> None:
        self.out_dir, self.changed, self.option = str(out_dir), list(changed), option
        what = ", ".join(f"{_WHAT.get(k, f'another {k}')} ({k} differs)" for k in self.changed)
        super().__init__(
            f"{self.out_dir} holds a run of {what}, a different configuration: resuming would "
            f"mix two runs. Use another output folder, or {option} to delete it and start over"
        )

    def __reduce__(self) -> tuple[Any, ...]:  # rank 0 sends it to the other ranks pickled
        return (type(self), (self.out_dir, self.changed, self.option))

    def with_option(self, option: str) -> ConfigurationChanged:
        """The same refusal naming ``option`` (e.g. the CLI's ``--overwrite``).

        Args:
            option (str): the caller's spelling of overwriting.

        Returns:
            ConfigurationChanged: a new error.

        Example::

            >>> "--overwrite" in str(ConfigurationChanged("out", ["layer"]).with_option(
            ...     "--overwrite"))
            True
        """
        return type(self)(self.out_dir, self.changed, option)

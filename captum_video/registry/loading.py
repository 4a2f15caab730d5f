"""Build a registered model by name and load its weights from a local file (no download).

Names: the registered constructors (``"r3d_18"``, ``"demo"``, ...; see
:func:`~captum_video.registry.model_names`), ``"pytorchvideo:<hub builder>"`` (e.g.
``"pytorchvideo:x3d_xs"``, built with ``pretrained=False``) and ``"hf:<folder>"`` (a local
Hugging Face ``save_pretrained`` folder). Models that do not take ``(N, C, T, H, W)`` clips
come back wrapped in their forward adapter (:func:`~captum_video.registry.adapt`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from captum_video.registry._family import families, register_optional_families
from captum_video.registry._queries import model_names
from captum_video.registry.adapters import adapt

__all__ = ["load_model", "needs_weights_file", "parse_model_name", "read_state_dict"]

#: Name prefixes of models from optional libraries -> the library.
_SCHEMES = {"hf": "transformers", "pytorchvideo": "pytorchvideo"}


def parse_model_name(name: str) -> tuple[str, str]:
    """Split a model name into ``(scheme, rest)``: ``("hf", folder)``,
    ``("pytorchvideo", builder)`` or ``("", name)`` for the registered names.

    Args:
        name (str): a model name.

    Returns:
        tuple of str: the scheme (``""`` for plain names) and the rest.

    Raises:
        ValueError: an unknown scheme, or an empty folder / builder.

    Example::

        >>> parse_model_name("hf:/models/videomae-k400")
        ('hf', '/models/videomae-k400')
        >>> parse_model_name("r3d_18")
        ('', 'r3d_18')
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a model name must be a non-empty string, got {name!r}")
    scheme, sep, rest = name.partition(":")
    if not sep or (len(scheme) == 1 and os.name == "nt"):  # a Windows drive is no scheme
        return "", name
    if scheme not in _SCHEMES:
        raise ValueError(
            f"unknown model scheme {scheme!r} in {name!r}; use 'hf:<folder>', "
            "'pytorchvideo:<builder>' or one of model_names()"
        )
    if not rest:
        raise ValueError(f"{name!r} names no {'folder' if scheme == 'hf' else 'builder'}")
    return scheme, rest


def needs_weights_file(name: str) -> bool:
    """Whether the model ``name`` has random weights unless a weights file is given.

    Registered names of families that bundle their weights (the demo models) and
    ``"hf:<folder>"`` (the folder holds them) need none; torchvision and PyTorchVideo names
    do: nothing is downloaded.

    Args:
        name (str): a model name.

    Returns:
        bool: True when a weights file is needed for trained weights.

    Example::

        >>> needs_weights_file("r3d_18"), needs_weights_file("demo")
        (True, False)
    """
    scheme, rest = parse_model_name(name)
    if scheme == "hf":
        return False
    if scheme:
        return True
    family = next((f for f in families() if rest in f.constructors), None)
    if family is None:
        raise ValueError(f"unknown model {name!r}; choose one of {model_names()}")
    return not family.weights_included


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a state dict from a local checkpoint file.

    Checkpoints that wrap the state dict under ``"state_dict"``, ``"model"`` or
    ``"model_state"`` (PyTorchVideo's model zoo) and
    ``DataParallel`` / ``DistributedDataParallel`` ``module.`` prefixes are accepted.

    Args:
        path (str or PathLike): the file.

    Returns:
        dict: parameter name -> tensor.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a (wrapped) state dict; the message names the file.

    Example::

        >>> torch.save(nn.Linear(2, 3).state_dict(), "/tmp/linear.pt")
        >>> sorted(read_state_dict("/tmp/linear.pt"))
        ['bias', 'weight']
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"weights file not found: {file}")
    try:
        loaded: Any = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file's name
        raise ValueError(f"cannot read weights file {file}: {err}") from err
    for key in ("state_dict", "model", "model_state"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise ValueError(f"weights file {file} does not hold a state dict of tensors")
    return {str(k).removeprefix("module."): v for k, v in loaded.items()}


def _num_outputs(state: dict[str, Tensor]) -> int | None:
    """Outputs of the last weight matrix (or 1x1x1 convolution) in a state dict."""
    heads = [v for k, v in state.items() if k.endswith("weight") and v.dim() in (2, 5)]
    return int(heads[-1].shape[0]) if heads else None


def _mismatch(name: str, file: Path, model: nn.Module, state: dict[str, Tensor]) -> str | None:
    """One sentence naming how ``state`` differs from ``model``'s parameters, or None."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} expects {tuple(expected[k].shape)}, file has {tuple(state[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if not (missing or unexpected or wrong):
        return None
    parts = []
    if wrong:
        parts.append(f"{len(wrong)} shapes differ ({wrong[0]})")
    if missing:
        parts.append(f"{len(missing)} parameters missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    return (
        f"weights file {file} does not fit {name}: {'; '.join(parts)}; is it a checkpoint of "
        "another architecture?"
    )


def load_model(
    name: str,
    weights: str | os.PathLike | None = None,
    num_classes: int | None = None,
    device: str | torch.device | None = None,
) -> nn.Module:
    """Build the registered model ``name`` and load its weights from a local file.

    Pretrained weights are never downloaded: pass the path of a state dict (for instance one
    saved from ``torchvision.models.video.r3d_18(weights="DEFAULT").state_dict()`` on a
    machine with network access, or a PyTorchVideo model-zoo checkpoint). Without ``weights``
    torchvision and PyTorchVideo models keep random weights; the demo names load their
    bundled checkpoints; ``"hf:<folder>"`` loads the folder's own weights
    (``local_files_only=True``) and its processor's normalisation. Models that do not take
    ``(N, C, T, H, W)`` clips (Hugging Face, SlowFast) come back in their forward adapter
    (:func:`~captum_video.registry.adapt`).

    Args:
        name (str): one of :func:`~captum_video.registry.model_names` (``"r3d_18"``,
            ``"mvit_v2_s"``, ``"demo-appearance"``, ``"pytorchvideo:x3d_xs"``, ...) or
            ``"hf:<folder>"``.
        weights (str or PathLike, optional): local state-dict file. Default: None
        num_classes (int, optional): outputs of the classifier; inferred from the weights when
            given, else the family's default (400 for torchvision's Kinetics models).
        device (str or torch.device, optional): where to put the model. Default: CPU

    Returns:
        torch.nn.Module: the model, in eval mode.

    Raises:
        ValueError: an unknown name, an unreadable file, or weights of another architecture
            (one sentence naming the first differing parameter and both shapes).

    Example::

        >>> model = load_model("r3d_18", num_classes=4)
        >>> model(torch.rand(1, 3, 8, 64, 64)).shape
        torch.Size([1, 4])
    """
    scheme, rest = parse_model_name(name)
    if scheme:
        register_optional_families(_SCHEMES[scheme])
    if scheme == "hf":
        from captum_video.registry.huggingface import load_hf_model

        model = load_hf_model(rest, num_classes=num_classes)
        if weights is not None:
            inner = model.get_submodule("model")
            state = read_state_dict(weights)
            problem = _mismatch(name, Path(weights), inner, state)
            if problem:
                raise ValueError(problem)
            inner.load_state_dict(state)
        return model.to(device or "cpu")
    constructor = next((f.constructors[name] for f in families() if name in f.constructors), None)
    if constructor is None:
        raise ValueError(f"unknown model {name!r}; choose one of {model_names()}")
    state = None
    if weights is not None:
        state = read_state_dict(weights)
        if num_classes is None:
            num_classes = _num_outputs(state)
    model = constructor(num_classes=num_classes) if num_classes else constructor()
    if state is not None:
        problem = _mismatch(name, Path(weights), model, state)  # type: ignore[arg-type]
        if problem:
            raise ValueError(problem)
        model.load_state_dict(state)
    return adapt(model.eval()).to(device or "cpu")

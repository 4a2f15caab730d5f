"""What the rest of the package asks the registry about a model (its family's answers)."""

from __future__ import annotations

from typing import Any

from torch import nn

from captum_video.registry._family import (
    GENERIC,
    ResidualForward,
    families,
    family_of,
    find_family,
)
from captum_video.registry._optional import PYTORCHVIDEO_MODELS, installed
from captum_video.registry.adapters import VideoAdapter

__all__ = [
    "class_names_of",
    "classifier_of",
    "default_layer",
    "head_layer",
    "input_size_of",
    "min_frames_of",
    "model_names",
    "normalization_of",
    "reshape_for",
    "residual_block_forwards",
]


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def _adapter_says(model: Any, attribute: str) -> Any:
    """What the first forward adapter in ``model`` records about it (None if nothing)."""
    if isinstance(model, nn.Module):
        for module in model.modules():
            if isinstance(module, VideoAdapter) and getattr(module, attribute, None) is not None:
                return getattr(module, attribute)
    return None


def _layer(model: nn.Module, field_name: str, what: str) -> tuple[str, nn.Module]:
    family, root, prefix = find_family(model)
    choice = getattr(family, field_name)
    if choice is None and field_name == "head_layer":
        choice = family.default_layer
    name = choice(root) if callable(choice) and root is not None else choice
    if not isinstance(name, str) or root is None:
        raise ValueError(f"no {what} known for {type(model).__name__}; pass the layer to explain")
    full = _join(prefix, name)
    return full, model.get_submodule(full)


def default_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """The layer tube methods explain by default, as ``(dotted name, module)``.

    The registry's choice for the model's family: the deepest stage that still keeps at
    least a quarter of the time steps of the family's clips, so the tube resolves time and the
    coarse-time warning of the tube methods never fires for the library's own default
    (``layer3`` for the demo models and torchvision's video ResNets, ``features[12]`` for
    S3D, ``features[-1]`` for Swin3D, ``blocks[-2]`` for MViT, whose head reads only the
    class token of the last block).

    Args:
        model (nn.Module): the classifier.

    Returns:
        tuple: the dotted module name (relative to ``model``) and the module.

    Raises:
        ValueError: no default is known; the message says what to pass instead.

    Example::

        >>> from captum_video.models import C3DSmall
        >>> default_layer(C3DSmall())[0]
        'layer3'
    """
    try:
        return _layer(model, "default_layer", "default layer")
    except ValueError:
        raise ValueError(
            f"no default layer known for {type(model).__name__}; pass the layer to explain "
            "(the last 3-D conv block that keeps several time steps)"
        ) from None


def head_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """The layer whose output the classifier head pools, as ``(dotted name, module)``.

    Class activation maps with the head's own weights (:class:`~captum_video.attr.SaliencyTube`)
    need this layer (``layer4`` of torchvision's video ResNets, the last feature stage of
    S3D); families that do not say use their :func:`default_layer`.

    Args:
        model (nn.Module): the classifier.

    Returns:
        tuple: the dotted module name (relative to ``model``) and the module.

    Raises:
        ValueError: no such layer is known for the model.

    Example::

        >>> from torchvision.models.video import r3d_18
        >>> head_layer(r3d_18())[0]
        'layer4'
    """
    return _layer(model, "head_layer", "layer before the classifier head")


def reshape_for(model: Any, layer: nn.Module) -> Any:
    """Name the reshape preset that reads ``layer``'s output as ``(N, K, T', H', W')``.

    Args:
        model (nn.Module or callable): the model (or forward function) ``layer`` belongs to.
        layer (nn.Module): the explained layer.

    Returns:
        str or callable: a key of :data:`~captum_video.registry.RESHAPE_PRESETS`, or a reshape
        function for layouts that depend on the model's config (a
        :class:`~captum_video.registry.TokenReshape` for Hugging Face transformers).

    Example::

        >>> from torchvision.models.video import swin3d_t
        >>> net = swin3d_t()
        >>> reshape_for(net, net.features[-1])
        'swin3d'
    """
    if not isinstance(layer, nn.Module):
        raise TypeError(f"layer must be an nn.Module of the model, got {type(layer).__name__}")
    for family in [*families(), GENERIC]:
        if isinstance(model, nn.Module):
            for module in model.modules():
                if family.owns(module) and any(m is layer for m in module.modules()):
                    return family.layer_reshape(module, layer)
    for family in families():
        for layer_type, preset in family.reshape_layer_types.items():
            # A layer of such a type, or a stage made of them (a Sequential of Swin blocks).
            stage = isinstance(layer, nn.Sequential) and len(layer) > 0
            if isinstance(layer, layer_type) or (
                stage and all(isinstance(m, layer_type) for m in layer.children())
            ):
                return preset
    return "identity"


def normalization_of(model: Any) -> str:
    """The normalisation preset ``model``'s family expects (``"none"``: raw ``[0, 1]``).

    A forward adapter that records its own preset (a Hugging Face model loaded with its saved
    image processor, :func:`~captum_video.registry.load_model`) overrides the family's.

    Args:
        model (nn.Module): the model.

    Returns:
        str: a key of :data:`~captum_video.registry.NORMALIZATION_PRESETS`.

    Example::

        >>> from torchvision.models.video import r3d_18
        >>> normalization_of(r3d_18())
        'kinetics'
    """
    recorded = _adapter_says(model, "normalization")
    return str(recorded) if recorded is not None else family_of(model).normalization


def classifier_of(model: nn.Module) -> nn.Module:
    """The linear classifier head of ``model`` (what Saliency Tubes weight channels with).

    Args:
        model (nn.Module): the model.

    Returns:
        nn.Module: the head (``nn.Linear``, a 1x1x1 convolution or a ``Sequential`` ending in
        one).

    Raises:
        ValueError: the family has no known head.

    Example::

        >>> from captum_video.models import C3DSmall
        >>> net = C3DSmall()
        >>> classifier_of(net) is net.fc
        True
    """
    family, root, prefix = find_family(model)
    head = family.head
    module: nn.Module | None = None
    if callable(head) and root is not None:
        module = head(root)
    elif isinstance(head, str) and root is not None:
        module = model.get_submodule(_join(prefix, head))
    if not isinstance(module, nn.Module):
        raise ValueError(
            f"no classifier head known for {type(model).__name__}; pass classifier= (the "
            "linear layer after global pooling)"
        )
    return module


def class_names_of(model: Any) -> list[str] | None:
    """The names of ``model``'s outputs where its family knows them.

    Args:
        model (nn.Module): the model.

    Returns:
        list of str or None: one name per output, or None when unknown or when the model's
        number of outputs differs from the family's list.

    Example::

        >>> from captum_video.models import load_demo_model
        >>> class_names_of(load_demo_model("motion"))
        ['right', 'left', 'down', 'up']
    """
    family, root, _ = find_family(model)
    names = family.class_names
    if callable(names):
        names = names(root) if root is not None else None
    if names is None:
        return None
    return [str(n) for n in names]


def min_frames_of(model: Any) -> int:
    """The fewest frames ``model`` can take (its family's temporal receptive field floor).

    Args:
        model (nn.Module): the model.

    Returns:
        int: at least 1.

    Example::

        >>> from captum_video.models import C3DSmall
        >>> min_frames_of(C3DSmall())
        4
    """
    family, root, _ = find_family(model)
    frames = family.min_frames
    if callable(frames):
        frames = frames(root) if root is not None else 1
    return max(1, int(frames))


def input_size_of(
    model: Any, default: tuple[int, int, int] = (16, 112, 112)
) -> tuple[int, int, int]:
    """The ``(T, H, W)`` clips ``model``'s family was trained on.

    A forward adapter's ``input_size`` (a fixed-size transformer's config) comes first, then
    the family's (read from the model where the family says how).

    Args:
        model (nn.Module): the model.
        default (tuple of int, optional): for families that do not say.
            Default: ``(16, 112, 112)``

    Returns:
        tuple of int: ``(T, H, W)``.

    Example::

        >>> from captum_video.models import C3DSmall
        >>> input_size_of(C3DSmall())
        (16, 32, 32)
    """
    if not (
        isinstance(default, (tuple, list))
        and len(default) == 3
        and all(isinstance(s, int) and s >= 1 for s in default)
    ):
        raise ValueError(f"default must be (T, H, W) of three ints >= 1, got {default!r}")
    size = _adapter_says(model, "input_size")
    if size is None:
        family, root, _ = find_family(model)
        size = family.input_size
        if callable(size):
            size = size(root) if root is not None else None
    return tuple(int(s) for s in size) if size is not None else default  # type: ignore[return-value]


def residual_block_forwards() -> dict[type, ResidualForward]:
    """Every registered residual block class with its explicit-sum forward.

    Returns:
        dict: ``{block class: ResidualForward}`` over all families.

    Example::

        >>> from torchvision.models.video.resnet import BasicBlock
        >>> BasicBlock in residual_block_forwards()
        True
    """
    table: dict[type, ResidualForward] = {}
    for family in families():
        table.update(family.residual_blocks)
    return table


def model_names() -> list[str]:
    """The model names :func:`~captum_video.registry.load_model` and the CLI accept.

    Besides these, ``"hf:<folder>"`` names a Hugging Face ``save_pretrained`` folder
    (:func:`~captum_video.registry.parse_model_name`). The ``"pytorchvideo:<builder>"`` names
    are listed when PyTorchVideo is installed (without importing it).

    Returns:
        list of str: in registration order.

    Example::

        >>> "r3d_18" in model_names()
        True
    """
    names = [name for family in families() for name in family.constructors]
    if installed("pytorchvideo"):
        names += [f"pytorchvideo:{name}" for name in PYTORCHVIDEO_MODELS]
    return list(dict.fromkeys(names))

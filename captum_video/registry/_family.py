"""The architecture registry: one :class:`ModelFamily` entry per family of video models.

Everything captum-video knows about a family lives in its entry: the input layout, the
default layer of the tube methods, how a layer's output reads as a ``(N, K, T', H', W')``
volume, the input normalisation, the classifier head, the residual blocks LRP canonizers must
rewrite, the class names, the constructors behind the names the command line accepts, and the
fewest frames the model can take. Methods, the data-set pipeline and the command line ask the
registry through the functions below; supporting a new family means registering an entry, not
editing the methods.

A model belongs to a family when it is an instance of one of the family's ``model_types``; a
model that *wraps* a registered one (``nn.Sequential(normalize, r3d_18)``) is looked up through
its first registered sub-module, and layer names are given relative to the outer model.
Models that match nothing get :data:`GENERIC`, which guesses like a person would (the last
``layer4`` / ``layer3`` / ``features`` stage, a head at ``fc`` / ``head`` / ``classifier``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import Tensor, nn

__all__ = [
    "GENERIC",
    "Layout",
    "ModelFamily",
    "ResidualForward",
    "class_names_of",
    "classifier_of",
    "default_layer",
    "families",
    "family_of",
    "find_family",
    "input_size_of",
    "min_frames_of",
    "model_names",
    "normalization_of",
    "register_family",
    "reshape_for",
    "residual_block_forwards",
]

#: How a family takes a clip: ``"NCTHW"`` (torchvision, most 3-D CNNs), ``"NTCHW"`` (Hugging
#: Face video transformers) or ``"pathways"`` (a list of clips at several frame rates).
Layout = Literal["NCTHW", "NTCHW", "pathways"]

#: ``forward(block, x, add)``: a residual block's forward with its residual sum written as
#: ``add(out, residual)``, so an LRP canonizer can route the sum through a module of its own.
ResidualForward = Callable[[nn.Module, Tensor, Callable[[Tensor, Tensor], Tensor]], Tensor]


def _identity_reshape(_root: nn.Module, _layer: nn.Module) -> str:
    return "identity"


@dataclass(frozen=True)
class ModelFamily:
    r"""What captum-video knows about one family of video models.

    Args:
        name (str): a short unique name, e.g. ``"torchvision-video-resnet"``.
        model_types (tuple of type): classes whose instances belong to the family.
        default_layer (str or callable, optional): dotted name of the layer the tube methods
            explain by default, or ``root -> name``. Default: None (no default)
        layer_reshape (callable, optional): ``(root, layer) -> preset`` naming the reshape
            preset of :data:`~captum_video.registry.RESHAPE_PRESETS` that reads ``layer``'s
            output as a volume. Default: always ``"identity"``
        reshape_layer_types (mapping, optional): layer classes that imply a preset wherever
            they appear (used when the model is a plain function). Default: empty
        normalization (str, optional): the preset of
            :data:`~captum_video.registry.NORMALIZATION_PRESETS` the family's weights expect.
            Default: ``"none"``
        head (str or callable, optional): dotted name of the linear classifier (or
            ``root -> module``). Default: None
        layout (str, optional): see :data:`Layout`. Default: ``"NCTHW"``
        residual_blocks (mapping, optional): ``{block class: ResidualForward}``.
            Default: empty
        class_names (sequence of str or callable, optional): the names of the outputs, or
            ``root -> names or None``. Default: None
        constructors (mapping, optional): ``{model name: factory(num_classes=...)}`` for the
            names :func:`~captum_video.registry.load_model` and the command line accept.
            Default: empty
        min_frames (int, optional): the fewest frames the model can take. Default: 1
        input_size (tuple of int, optional): the ``(T, H, W)`` clips the family's weights
            were trained on (the command line's default clip). Default: None

    Returns:
        A family, to pass to :func:`register_family`.

    Example::

        >>> family = ModelFamily("my-c3d", (nn.Conv3d,), default_layer="layer3", head="fc")
        >>> family.normalization
        'none'
    """

    name: str
    model_types: tuple[type, ...]
    default_layer: str | Callable[[nn.Module], str] | None = None
    layer_reshape: Callable[[nn.Module, nn.Module], str] = _identity_reshape
    reshape_layer_types: Mapping[type, str] = field(default_factory=dict)
    normalization: str = "none"
    head: str | Callable[[nn.Module], nn.Module | None] | None = None
    layout: Layout = "NCTHW"
    residual_blocks: Mapping[type, ResidualForward] = field(default_factory=dict)
    class_names: Sequence[str] | Callable[[nn.Module], Sequence[str] | None] | None = None
    constructors: Mapping[str, Callable[..., nn.Module]] = field(default_factory=dict)
    min_frames: int = 1
    input_size: tuple[int, int, int] | None = None


_FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily, *, replace: bool = False) -> ModelFamily:
    """Add ``family`` to the registry (later lookups see it).

    Args:
        family (ModelFamily): the entry.
        replace (bool, optional): allow replacing an entry of the same name. Default: False

    Returns:
        ModelFamily: ``family``, so the call can be used as an expression.

    Raises:
        ValueError: the name is taken (and ``replace`` is off) or a model name is claimed by
            another family.

    Example::

        >>> fam = register_family(ModelFamily("doc-example", (nn.Identity,)), replace=True)
    """
    if not isinstance(family, ModelFamily):
        raise TypeError(f"family must be a ModelFamily, got {type(family).__name__}")
    if family.name in _FAMILIES and not replace:
        raise ValueError(f"a model family named {family.name!r} is already registered")
    for other in _FAMILIES.values():
        clash = set(other.constructors) & set(family.constructors)
        if other.name != family.name and clash:
            raise ValueError(f"model names {sorted(clash)} already belong to {other.name!r}")
    _FAMILIES[family.name] = family
    return family


def families() -> list[ModelFamily]:
    """Every registered family, in registration order.

    Returns:
        list of ModelFamily: the entries (without :data:`GENERIC`).

    Example::

        >>> "torchvision-video-resnet" in [f.name for f in families()]
        True
    """
    return list(_FAMILIES.values())


def find_family(model: Any) -> tuple[ModelFamily, nn.Module | None, str]:
    """The family of ``model``, the (sub-)module that belongs to it, and that module's name.

    Args:
        model (nn.Module or callable): the model, or a module wrapping a registered one.

    Returns:
        tuple: ``(family, root, prefix)``; ``root`` is ``model`` itself or its first
        registered sub-module (``prefix`` is its dotted name, ``""`` for the model itself).
        Unknown models give ``(GENERIC, model, "")``; a plain function ``(GENERIC, None, "")``.

    Example::

        >>> from captum_video.models import C3DSmall
        >>> family, root, prefix = find_family(nn.Sequential(nn.Identity(), C3DSmall()))
        >>> family.name, prefix
        ('captum-video-demo', '1')
    """
    if not isinstance(model, nn.Module):
        return GENERIC, None, ""
    for prefix, module in model.named_modules():
        for family in _FAMILIES.values():
            if isinstance(module, family.model_types):
                return family, module, prefix
    return GENERIC, model, ""


def family_of(model: Any) -> ModelFamily:
    """The :class:`ModelFamily` of ``model`` (:data:`GENERIC` when none is registered).

    Args:
        model (nn.Module or callable): the model.

    Returns:
        ModelFamily: its entry.

    Example::

        >>> from captum_video.models import C3DSmall
        >>> family_of(C3DSmall()).name
        'captum-video-demo'
    """
    return find_family(model)[0]


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def default_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """The layer tube methods explain by default, as ``(dotted name, module)``.

    The registry's choice for the model's family: the last stage that still keeps several
    time steps (``layer3`` for the demo models, ``layer4`` for torchvision's video ResNets,
    ``features[-1]`` for S3D and Swin3D, ``blocks[-2]`` for MViT, whose head reads only the
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
    family, root, prefix = find_family(model)
    choice = family.default_layer
    name = choice(root) if callable(choice) and root is not None else choice
    if not isinstance(name, str) or root is None:
        raise ValueError(
            f"no default layer known for {type(model).__name__}; pass the layer to explain "
            "(the last 3-D conv block that keeps several time steps)"
        )
    full = _join(prefix, name)
    return full, model.get_submodule(full)


def reshape_for(model: Any, layer: nn.Module) -> str:
    """Name the reshape preset that reads ``layer``'s output as ``(N, K, T', H', W')``.

    Args:
        model (nn.Module or callable): the model (or forward function) ``layer`` belongs to.
        layer (nn.Module): the explained layer.

    Returns:
        str: a key of :data:`~captum_video.registry.RESHAPE_PRESETS`.

    Example::

        >>> from torchvision.models.video import swin3d_t
        >>> net = swin3d_t()
        >>> reshape_for(net, net.features[-1])
        'swin3d'
    """
    for family in [*_FAMILIES.values(), GENERIC]:
        if isinstance(model, nn.Module):
            for module in model.modules():
                if isinstance(module, family.model_types) and any(
                    m is layer for m in module.modules()
                ):
                    return family.layer_reshape(module, layer)
    for family in _FAMILIES.values():
        for layer_type, preset in family.reshape_layer_types.items():
            # A layer of such a type, or a stage made of them (a Sequential of Swin blocks).
            stage = isinstance(layer, nn.Sequential) and len(layer) > 0
            if isinstance(layer, layer_type) or (
                stage and all(isinstance(m, layer_type) for m in layer)
            ):
                return preset
    return "identity"


def normalization_of(model: Any) -> str:
    """The normalisation preset ``model``'s family expects (``"none"``: raw ``[0, 1]``).

    Args:
        model (nn.Module): the model.

    Returns:
        str: a key of :data:`~captum_video.registry.NORMALIZATION_PRESETS`.

    Example::

        >>> from torchvision.models.video import r3d_18
        >>> normalization_of(r3d_18())
        'kinetics'
    """
    return family_of(model).normalization


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
    return max(1, int(family_of(model).min_frames))


def input_size_of(
    model: Any, default: tuple[int, int, int] = (16, 112, 112)
) -> tuple[int, int, int]:
    """The ``(T, H, W)`` clips ``model``'s family was trained on.

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
    size = family_of(model).input_size
    return tuple(size) if size is not None else default  # type: ignore[return-value]


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
    for family in _FAMILIES.values():
        table.update(family.residual_blocks)
    return table


def model_names() -> list[str]:
    """The model names :func:`~captum_video.registry.load_model` and the CLI accept.

    Returns:
        list of str: in registration order.

    Example::

        >>> "r3d_18" in model_names()
        True
    """
    return [name for family in _FAMILIES.values() for name in family.constructors]


def _generic_layer(model: nn.Module) -> str:
    for name in ("layer4", "layer3"):
        if isinstance(getattr(model, name, None), nn.Module):
            return name
    features = getattr(model, "features", None)
    if isinstance(features, nn.Sequential) and len(features) > 0:
        return f"features.{len(features) - 1}"
    raise ValueError(
        f"no default layer known for {type(model).__name__}; pass the last 3-D conv block"
    )


def _generic_head(model: nn.Module) -> nn.Module | None:
    for name in ("fc", "head", "classifier"):
        module = getattr(model, name, None)
        if isinstance(module, nn.Module):
            return module
    return None


#: The fallback for unregistered models: a guess from common attribute names.
GENERIC = ModelFamily(
    name="generic",
    model_types=(nn.Module,),
    default_layer=_generic_layer,
    head=_generic_head,
)

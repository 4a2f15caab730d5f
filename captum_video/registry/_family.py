"""The architecture registry: one :class:`ModelFamily` entry per family of video models.

Everything captum-video knows about a family lives in its entry: the input layout, the
default layer of the tube methods, how a layer's output reads as a ``(N, K, T', H', W')``
volume, the input normalisation, the classifier head, the residual blocks LRP canonizers must
rewrite, the class names, the constructors behind the names the command line accepts, and the
fewest frames the model can take. Methods, the data-set pipeline and the command line ask the
registry through the functions below; supporting a new family means registering an entry, not
editing the methods.

A model belongs to a family when it is an instance of one of the family's ``model_types`` (and,
where the family says, passes its ``matches`` test: PyTorchVideo builds X3D, SlowFast and its
ResNets all as a ``Net``); a model that *wraps* a registered one (``nn.Sequential(normalize,
r3d_18)``, or the forward adapter of :func:`~captum_video.registry.adapt`) is looked up through
its first registered sub-module, and layer names are given relative to the outer model.
Families of optional libraries (Hugging Face ``transformers``, PyTorchVideo) are registered the
first time the registry is asked after the library was imported.
Models that match nothing get :data:`GENERIC`, which guesses like a person would (the last
``layer4`` / ``layer3`` / ``features`` stage, a head at ``fc`` / ``head`` / ``classifier``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from torch import Tensor, nn

from captum_video.registry._optional import optional_family_modules

__all__ = [
    "GENERIC",
    "Layout",
    "ModelFamily",
    "ResidualForward",
    "families",
    "family_of",
    "find_family",
    "register_family",
    "register_optional_families",
]

#: How a family takes a clip: ``"NCTHW"`` (torchvision, most 3-D CNNs), ``"NTCHW"`` (Hugging
#: Face video transformers), ``"frames"`` (the frames as a batch of images ``(N * T, C, H, W)``,
#: X-CLIP's vision tower) or ``"pathways"`` (a list of clips at several frame rates, SlowFast).
Layout = Literal["NCTHW", "NTCHW", "frames", "pathways"]

#: ``forward(block, x, add)``: a residual block's forward with its residual sum written as
#: ``add(out, residual)``, so an LRP canonizer can route the sum through a module of its own.
ResidualForward = Callable[[nn.Module, Tensor, Callable[[Tensor, Tensor], Tensor]], Tensor]

#: ``root -> (T, H, W)`` (or None): a family's clip size read from the model itself.
SizeOf = Callable[[nn.Module], "tuple[int, int, int] | None"]


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
            output as a volume, or returning a reshape function (a
            :class:`~captum_video.registry.TokenReshape` on the model's token grid).
            Default: always ``"identity"``
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
        head_layer (str or callable, optional): dotted name (or ``root -> name``) of the layer
            whose output the classifier head pools, the layer class activation maps with the
            head's weights need (:class:`~captum_video.attr.SaliencyTube`); default the
            ``default_layer``. Default: None
        weights_included (bool, optional): the constructors load trained weights themselves
            (bundled checkpoints); otherwise they build random weights and a weights file is
            needed (the command line refuses to explain random weights silently).
            Default: False
        min_frames (int or callable, optional): the fewest frames the model can take, or
            ``root -> int``. Default: 1
        input_size (tuple of int or callable, optional): the ``(T, H, W)`` clips the family's
            weights were trained on (the command line's default clip), or
            ``root -> (T, H, W) or None`` for families whose size is in the model's config.
            Default: None
        matches (callable, optional): ``root -> bool``, a further test for instances of
            ``model_types`` (families that share a class). Default: None (every instance)
        adapter (callable, optional): ``(root, **options) -> nn.Module``, the forward adapter
            that makes the model take ``(N, C, T, H, W)`` clips and return ``(N, classes)``
            scores (:func:`~captum_video.registry.adapt`). Default: None (the model already
            does)
        attention (callable, optional): ``(root, clip_size) -> AttentionLayout``, the
            family's attention as token mixing for clips of ``clip_size`` ``(T, H, W)``
            (:func:`~captum_video.registry.attention.attention_layout`): which modules compute
            attention probabilities, over which tokens, how each sits in its layer's token
            mixing matrix (joint, divided space-time, pooled, shifted windows) and which token
            the classifier reads. Used by the attention methods (rollout, gradient-weighted
            attention relevance). Default: None (no attention description)

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
    layer_reshape: Callable[[nn.Module, nn.Module], Any] = _identity_reshape
    reshape_layer_types: Mapping[type, str] = field(default_factory=dict)
    normalization: str = "none"
    head: str | Callable[[nn.Module], nn.Module | None] | None = None
    layout: Layout = "NCTHW"
    residual_blocks: Mapping[type, ResidualForward] = field(default_factory=dict)
    class_names: Sequence[str] | Callable[[nn.Module], Sequence[str] | None] | None = None
    constructors: Mapping[str, Callable[..., nn.Module]] = field(default_factory=dict)
    weights_included: bool = False
    head_layer: str | Callable[[nn.Module], str] | None = None
    min_frames: int | Callable[[nn.Module], int] = 1
    input_size: tuple[int, int, int] | SizeOf | None = None
    matches: Callable[[nn.Module], bool] | None = None
    adapter: Callable[..., nn.Module] | None = None
    attention: Callable[[nn.Module, tuple[int, int, int]], Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty str, got {self.name!r}")
        if not isinstance(self.model_types, tuple) or not all(
            isinstance(t, type) for t in self.model_types
        ):
            raise TypeError(f"model_types must be a tuple of classes, got {self.model_types!r}")

    def owns(self, module: Any) -> bool:
        """Whether ``module`` itself belongs to this family (type, then ``matches``)."""
        if not isinstance(module, self.model_types):
            return False
        return self.matches is None or bool(self.matches(cast(nn.Module, module)))


_FAMILIES: dict[str, ModelFamily] = {}


def register_optional_families(library: str | None = None) -> None:
    """Register the families of the optional libraries already imported (and of ``library``).

    Called by every lookup, so a model of ``transformers`` or PyTorchVideo finds its family
    without ``import captum_video`` importing those libraries; cheap once done.

    Args:
        library (str, optional): ``"transformers"`` or ``"pytorchvideo"``, imported if needed.

    Raises:
        ImportError: ``library`` is not installed; the message names the pip extra.

    Example::

        >>> register_optional_families()   # nothing to do unless transformers was imported
    """
    for module in optional_family_modules(library):
        for family in getattr(module, "FAMILIES", ()):
            if family.name not in _FAMILIES:
                _FAMILIES[family.name] = family


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
    register_optional_families()
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
        if not callable(model):
            raise TypeError(
                f"model must be an nn.Module or a forward function, got {type(model).__name__}"
            )
        return GENERIC, None, ""
    register_optional_families()
    for prefix, module in model.named_modules():
        for family in _FAMILIES.values():
            if family.owns(module):
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

"""The architecture registry: the one place that knows each family of video models.

Per family (a :class:`ModelFamily`): input layout, default layer of the tube methods, token
reshape of layer outputs, normalisation preset, classifier head, residual blocks for LRP
canonizers, class names, the model names the command line accepts, and the fewest frames the
model takes. Registered here: torchvision's video models (:mod:`.torchvision`) and
captum-video's demo models (:mod:`.demo`); Hugging Face's VideoMAE, TimeSformer, ViViT and
X-CLIP vision (:mod:`.huggingface`) and PyTorchVideo's X3D, SlowFast, ResNets and MViT
(:mod:`.pytorchvideo`) once their library is imported. :func:`adapt` wraps models that do not
take ``(N, C, T, H, W)`` clips and return scores (Hugging Face, SlowFast). Register your own
family with :func:`register_family`; everything that asks the registry (the tube methods,
DeepTaylor3D's bounds and canonizers, the data-set pipeline, the command line) then knows it.

Example::

    >>> from captum_video.registry import default_layer, load_model, normalization_of
    >>> model = load_model("demo")
    >>> default_layer(model)[0], normalization_of(model)
    ('layer3', 'none')
"""

from captum_video._validation import register_min_frames_query
from captum_video.registry import demo, torchvision  # noqa: F401 - registers the entries
from captum_video.registry._family import (
    GENERIC,
    Layout,
    ModelFamily,
    ResidualForward,
    families,
    family_of,
    find_family,
    register_family,
    register_optional_families,
)
from captum_video.registry._queries import (
    class_names_of,
    classifier_of,
    default_layer,
    head_layer,
    input_size_of,
    min_frames_of,
    model_names,
    normalization_of,
    reshape_for,
    residual_block_forwards,
)
from captum_video.registry.adapters import (
    FramesAsBatchAdapter,
    HFVideoAdapter,
    PathwayAdapter,
    VideoAdapter,
    adapt,
    pack_pathways,
)
from captum_video.registry.loading import (
    load_model,
    needs_weights_file,
    parse_model_name,
    read_state_dict,
)
from captum_video.registry.normalization import (
    NORMALIZATION_PRESETS,
    bounds_from_normalization,
    normalization_stats,
    preset_for_stats,
)
from captum_video.registry.reshape import (
    RESHAPE_PRESETS,
    ReshapeFn,
    TokenReshape,
    channels_first,
    channels_last_to_channels_first,
    first_tensor,
    mvit_tokens_to_volume,
    pathways_to_volumes,
    resolve_reshape,
    token_grid_to_volume,
    tokens_to_volume,
)
from captum_video.registry.torchvision import KINETICS400_CLASSES

# The shared input checks (below the registry) ask it for a model's fewest frames.
register_min_frames_query(min_frames_of)

__all__ = [
    "GENERIC",
    "KINETICS400_CLASSES",
    "FramesAsBatchAdapter",
    "HFVideoAdapter",
    "Layout",
    "ModelFamily",
    "NORMALIZATION_PRESETS",
    "PathwayAdapter",
    "RESHAPE_PRESETS",
    "ReshapeFn",
    "ResidualForward",
    "TokenReshape",
    "VideoAdapter",
    "adapt",
    "bounds_from_normalization",
    "channels_first",
    "channels_last_to_channels_first",
    "class_names_of",
    "classifier_of",
    "default_layer",
    "head_layer",
    "families",
    "family_of",
    "find_family",
    "input_size_of",
    "first_tensor",
    "load_model",
    "needs_weights_file",
    "min_frames_of",
    "model_names",
    "mvit_tokens_to_volume",
    "normalization_of",
    "normalization_stats",
    "pack_pathways",
    "parse_model_name",
    "pathways_to_volumes",
    "preset_for_stats",
    "read_state_dict",
    "register_family",
    "register_optional_families",
    "reshape_for",
    "residual_block_forwards",
    "resolve_reshape",
    "token_grid_to_volume",
    "tokens_to_volume",
]

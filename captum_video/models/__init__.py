"""Small reference 3-D CNNs and the bundled demo checkpoints.

The demo models are tiny (tens of thousands of parameters), train in minutes on a CPU on
:class:`~captum_video.datasets.MovingShapes`, and ship inside the package, so examples, tests
and ``captum-video demo`` run with no download. Rebuild them with::

    python -m captum_video.models --train --variant motion
    python -m captum_video.models --train --variant appearance
    python -m captum_video.models --train --variant mixed
    python -m captum_video.models --train --variant motion --arch video_transformer_small
    python -m captum_video.models --train --variant motion --arch two_stream_small
    python -m captum_video.models --train --variant appearance --arch two_stream_small

Models of other families (torchvision, with weights from a local file) are built by
:func:`captum_video.registry.load_model`.
"""

from captum_video.models.c3d import C3DSmall
from captum_video.models.demo import (
    DEMO_VARIANTS,
    demo_checkpoint_path,
    demo_model_info,
    load_demo_model,
)
from captum_video.models.r2plus1d import BasicBlock, Conv2Plus1D, R2Plus1DSmall
from captum_video.models.training import evaluate, fit_classifier, train_demo_model
from captum_video.models.transformer import VideoTransformerSmall
from captum_video.models.two_stream import (
    FLOW_SCALE,
    FrameStream,
    TwoStreamSmall,
    two_stream_inputs,
)

__all__ = [
    "C3DSmall",
    "R2Plus1DSmall",
    "VideoTransformerSmall",
    "TwoStreamSmall",
    "FrameStream",
    "two_stream_inputs",
    "FLOW_SCALE",
    "BasicBlock",
    "Conv2Plus1D",
    "DEMO_VARIANTS",
    "load_demo_model",
    "demo_model_info",
    "demo_checkpoint_path",
    "train_demo_model",
    "fit_classifier",
    "evaluate",
]

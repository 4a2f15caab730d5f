"""captum-video: explain video models with Captum.

Sub-packages: :mod:`captum_video.attr` (attribution methods), :mod:`captum_video.metrics`,
:mod:`captum_video.visualization`, :mod:`captum_video.concept`; modules
:mod:`captum_video.io`, :mod:`captum_video.datasets`, :mod:`captum_video.models`,
:mod:`captum_video.baselines`, :mod:`captum_video.masks`, :mod:`captum_video.tensorboard`.
"""

__version__ = "0.1.0"

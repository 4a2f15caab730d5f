r"""LRP rules for layers without weights: pooling, residual sums and element-wise layers.

In the modified-gradient picture of :mod:`captum_video.attr._lrp.rules`, average pooling,
residual sums, ReLU and winner-take-all max pooling need no hook at all (their plain gradient
is the rule); proportional max pooling and non-ReLU activations swap in a rescaled output.
"""

from __future__ import annotations

from typing import Any, cast

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from captum_video.attr._lrp.rules import (
    _ADAPTIVE_MAX_POOLS,
    _MAX_POOLS,
    VideoLRPRule,
    _rescaled,
)

__all__ = ["ProportionalRule", "WinnerTakeAllRule", "PassRule"]


class ProportionalRule(VideoLRPRule):
    r"""Pooling and sums: relevance goes to the inputs in proportion to their values.

    For max pooling, ``R_i = x_i / sum_{i' in window(j)} x_i' * R_j`` over each window (the
    2020+ torchexplain and iNNvestigate form). For average pooling, adaptive average pooling and
    additions (Captum's ``Addition_Module`` of a canonized residual block) that is the plain
    gradient, so no hook is needed there.

    Args:
        stabilizer (float, optional): ``eps`` of the denominators. Default: 1e-6

    Returns:
        A rule for pooling layers and additions.

    Example::

        >>> pool = nn.MaxPool3d(2)
        >>> x = torch.rand(1, 1, 2, 2, 2, requires_grad=True)
        >>> out = ProportionalRule().modified_output(pool, (x,), pool(x))
        >>> relevance = x * torch.autograd.grad(out.sum(), x)[0]
        >>> torch.allclose(relevance.sum(), out.sum())
        True
    """

    def needs_hook(self, module: nn.Module) -> bool:
        return isinstance(module, (*_MAX_POOLS, *_ADAPTIVE_MAX_POOLS))

    def modified_output(
        self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor
    ) -> Tensor:
        x = inputs[0]
        if isinstance(module, _MAX_POOLS):
            if module.dilation not in (1, (1,) * (x.dim() - 2)):
                raise ValueError("ProportionalRule does not support dilated max pooling")
            avg = {3: F.avg_pool1d, 4: F.avg_pool2d, 5: F.avg_pool3d}[x.dim()]
            z = avg(x, module.kernel_size, module.stride, module.padding, module.ceil_mode, True)
        elif isinstance(module, _ADAPTIVE_MAX_POOLS):
            adaptive = {
                3: F.adaptive_avg_pool1d,
                4: F.adaptive_avg_pool2d,
                5: F.adaptive_avg_pool3d,
            }
            z = adaptive[x.dim()](x, cast(Any, module.output_size))
        else:
            return output
        return _rescaled(z, output, self.stabilizer)


class WinnerTakeAllRule(VideoLRPRule):
    r"""Max pooling: all relevance of a window goes to its maximum (the April 2019 form used
    in the deep-Taylor video paper). That is the plain gradient; under Captum's ``LRP`` it is
    Captum's epsilon rule on the pooling layer.

    Args:
        stabilizer (float, optional): ``eps`` used by Captum's machinery. Default: 1e-6

    Returns:
        A rule for max-pooling layers.

    Example::

        >>> WinnerTakeAllRule().needs_hook(nn.MaxPool3d(2))
        False
    """

    def needs_hook(self, module: nn.Module) -> bool:
        return False


class PassRule(VideoLRPRule):
    r"""Element-wise layers (activations, BatchNorm after fusion): relevance passes unchanged,
    ``R_in = R_out``. For ReLU that is the plain gradient (no hook is needed).

    Args:
        stabilizer (float, optional): ``eps`` of the ``y / x`` ratio. Default: 1e-6

    Returns:
        A rule for element-wise layers.

    Example::

        >>> PassRule().needs_hook(nn.ReLU()), PassRule().needs_hook(nn.GELU())
        (False, True)
    """

    def needs_hook(self, module: nn.Module) -> bool:
        # ReLU's gradient already passes relevance; a BatchNorm folded by MergeBatchNorm
        # (eps set to 0) is an exact identity, whose gradient does too.
        if isinstance(module, _BatchNorm) and module.eps == 0.0:
            return False
        return not isinstance(module, nn.ReLU)

    def modified_output(
        self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor
    ) -> Tensor:
        x = inputs[0]
        if x.shape != output.shape:
            raise ValueError(
                f"PassRule needs an element-wise layer, {type(module).__name__} maps "
                f"{tuple(x.shape)} to {tuple(output.shape)}"
            )
        return _rescaled(x, output, self.stabilizer)

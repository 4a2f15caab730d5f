"""A small C3D-style 3-D CNN (Tran et al. 2015, "Learning Spatiotemporal Features with 3D
Convolutional Networks"): the architecture of the bundled demo models."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

__all__ = ["C3DSmall"]


class C3DSmall(nn.Module):
    r"""A C3D-style 3-D CNN: 3x3x3 convolutions, max pooling, global average pool, linear head.

    Layout (for a ``3 x 16 x 32 x 32`` clip): ``stem`` 8 x 16 x 32 x 32, ``layer1``
    16 x 16 x 16 x 16, ``layer2`` 32 x 8 x 8 x 8, ``layer3`` 32 x 4 x 4 x 4, then ``avgpool``
    and ``fc``. The last conv block keeps a quarter of the input's frames, so CAM-type maps
    still resolve time. The head is global-average-pool + linear, so CAM identities hold.
    Inputs are clips in ``[0, 1]`` (no normalisation layer).

    Args:
        num_classes (int, optional): number of outputs. Default: 4
        in_channels (int, optional): input channels. Default: 3
        widths (tuple of int, optional): channels of stem, layer1, layer2, layer3.
            Default: ``(8, 16, 32, 32)``
        bias (bool, optional): give convolutions and the classifier a bias. Default: True

    Returns:
        ``forward(x)`` returns logits ``(N, num_classes)``.

    Example::

        >>> model = C3DSmall()
        >>> model(torch.rand(2, 3, 16, 32, 32)).shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        num_classes: int = 4,
        in_channels: int = 3,
        widths: tuple[int, int, int, int] = (8, 16, 32, 32),
        bias: bool = True,
    ) -> None:
        super().__init__()
        w0, w1, w2, w3 = widths
        self.stem = nn.Sequential(
            OrderedDict(conv=nn.Conv3d(in_channels, w0, 3, padding=1, bias=bias), relu=nn.ReLU())
        )
        self.layer1 = _c3d_block(w0, w1, (1, 2, 2), bias)
        self.layer2 = _c3d_block(w1, w2, (2, 2, 2), bias)
        self.layer3 = _c3d_block(w2, w3, (2, 2, 2), bias)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(w3, num_classes, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.flatten(self.avgpool(x)))


def _c3d_block(cin: int, cout: int, pool: tuple[int, int, int], bias: bool) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            pool=nn.MaxPool3d(pool, stride=pool),
            conv=nn.Conv3d(cin, cout, 3, padding=1, bias=bias),
            relu=nn.ReLU(),
        )
    )

"""A small R(2+1)D-style residual 3-D CNN (Tran et al. 2018, "A Closer Look at Spatiotemporal
Convolutions for Action Recognition") with BatchNorm3d, shaped like torchvision's
``r2plus1d_18`` so the same canonizers and layer names apply."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["R2Plus1DSmall", "BasicBlock", "Conv2Plus1D"]


class Conv2Plus1D(nn.Sequential):
    """A (2+1)-D convolution: a spatial ``1 x 3 x 3`` conv, BatchNorm, ReLU, then a temporal
    ``3 x 1 x 1`` conv, as in torchvision's ``Conv2Plus1D``."""

    def __init__(self, cin: int, cout: int, mid: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv3d(
                cin, mid, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False
            ),
            nn.BatchNorm3d(mid),
            nn.ReLU(),
            nn.Conv3d(mid, cout, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False),
        )


class BasicBlock(nn.Module):
    """A residual block with the attribute names of torchvision's video ``BasicBlock``
    (``conv1``, ``conv2``, ``downsample``, ``relu``), so canonizers written for torchvision's
    video ResNets apply to it unchanged."""

    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        mid = (cin * cout * 27) // (cin * 9 + 3 * cout)
        self.conv1 = nn.Sequential(
            Conv2Plus1D(cin, cout, mid, stride), nn.BatchNorm3d(cout), nn.ReLU()
        )
        mid2 = (cout * cout * 27) // (cout * 9 + 3 * cout)
        self.conv2 = nn.Sequential(Conv2Plus1D(cout, cout, mid2), nn.BatchNorm3d(cout))
        self.relu = nn.ReLU()
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv3d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm3d(cout)
            )
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.conv1(x))
        out = out + residual
        return self.relu(out)


class R2Plus1DSmall(nn.Module):
    r"""An R(2+1)D-style residual 3-D CNN with BatchNorm3d, shaped like torchvision's
    ``r2plus1d_18`` (``stem``, ``layer1..layer3``, ``avgpool``, ``fc``) but tiny.

    Args:
        num_classes (int, optional): number of outputs. Default: 4
        in_channels (int, optional): input channels. Default: 3
        widths (tuple of int, optional): channels of layer1, layer2, layer3.
            Default: ``(16, 32, 32)``

    Returns:
        ``forward(x)`` returns logits ``(N, num_classes)``.

    Example::

        >>> model = R2Plus1DSmall()
        >>> model(torch.rand(2, 3, 16, 32, 32)).shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        num_classes: int = 4,
        in_channels: int = 3,
        widths: tuple[int, int, int] = (16, 32, 32),
    ) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.stem = nn.Sequential(
            nn.Conv3d(in_channels, 24, (1, 3, 3), padding=(0, 1, 1), bias=False),
            nn.BatchNorm3d(24),
            nn.ReLU(),
            nn.Conv3d(24, w1, (3, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(w1),
            nn.ReLU(),
        )
        self.layer1 = BasicBlock(w1, w1)
        self.layer2 = BasicBlock(w1, w2, stride=2)
        self.layer3 = BasicBlock(w2, w3, stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(w3, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.avgpool(x).flatten(1))

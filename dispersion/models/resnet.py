"""The CIFAR-style residual network used by Hyperspherical Prototype Networks.

He, Zhang, Ren & Sun (2016), "Deep residual learning for image recognition", §4.2: a 3×3
convolution, three stages of ``n`` basic blocks with ``w``, ``2w``, ``4w`` channels (stride 2 at
the start of stages 2 and 3), global average pooling and a linear layer; depth = 6n + 2.
ResNet-32 is n = 5, w = 16 (16/32/64 channels; 0.49 M parameters with these 3×3 shortcuts). As in HPN's
``models/cifar/resnet.py`` (Mettes et al. 2019), the shortcut where the shape changes is a
strided 3×3 convolution + batch norm, and convolutions use He-normal initialisation
(fan-out). Global pooling is adaptive, so the same network takes 28×28 (Fashion-MNIST),
32×32 (CIFAR) and 64×64 (ImageNet-200) inputs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["BasicBlock", "CifarResNet", "resnet"]


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers with a residual connection (He et al. 2016, Fig. 2)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = _conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(_conv3x3(c_in, c_out, stride), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR-style ResNet mapping images (B, in_channels, H, W) to outputs (B, output_dim).

    Parameters
    ----------
    depth : int
        6n + 2 (20, 32, 44, 56, 110, ... ; 8 is the smallest, n = 1).
    output_dim : int
        D, the size of the final linear layer (the prototype dimension, or the class count).
    in_channels : int
        1 for grey images, 3 for RGB.
    width : int
        Channels of the first stage (16 in the paper); stages have width, 2·width, 4·width.

    Raises ``ValueError`` for a depth that is not 6n + 2 or a non-positive size.
    """

    def __init__(self, depth: int = 32, output_dim: int = 10, in_channels: int = 3, width: int = 16):
        super().__init__()
        for name, v in (("output_dim", output_dim), ("in_channels", in_channels), ("width", width)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, ...), got {depth!r}")
        n = (depth - 2) // 6
        self.depth, self.output_dim, self.width = depth, output_dim, width
        self.stem = nn.Sequential(_conv3x3(in_channels, width), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        stages, c_in = [], width
        for i, c_out in enumerate((width, 2 * width, 4 * width)):
            blocks = [BasicBlock(c_in, c_out, stride=1 if i == 0 else 2)]
            blocks += [BasicBlock(c_out, c_out) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, output_dim)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features before the last linear layer, shape (B, 4·width)."""
        return torch.flatten(self.pool(self.stages(self.stem(x))), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs of shape (B, output_dim), in the dtype of ``x`` (or the autocast dtype)."""
        return self.fc(self.features(x))


def resnet(depth: int = 32, output_dim: int = 10, in_channels: int = 3, width: int = 16) -> CifarResNet:
    """Build a :class:`CifarResNet`; ``resnet(32, D)`` is HPN's ResNet-32."""
    return CifarResNet(depth, output_dim, in_channels, width)

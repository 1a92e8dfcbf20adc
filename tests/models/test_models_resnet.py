"""The CIFAR ResNet (dispersion.models.resnet)."""

import pytest
import torch

from dispersion.models.resnet import resnet


def test_resnet_shapes_and_parameter_count():
    # ResNet-32 (He et al. 2016): n = 5 blocks per stage, 16/32/64 channels; HPN's shortcuts
    # are 3x3 convs + BN where the shape changes. Count by hand:
    conv = lambda ci, co: 9 * ci * co  # noqa: E731
    bn = lambda c: 2 * c  # noqa: E731
    n, total = 5, conv(3, 16) + bn(16)
    for i, (ci, co) in enumerate(((16, 16), (16, 32), (32, 64))):
        total += conv(ci, co) + bn(co) + conv(co, co) + bn(co) + (conv(ci, co) + bn(co) if i else 0)
        total += (n - 1) * 2 * (conv(co, co) + bn(co))
    total += 64 * 10 + 10
    m = resnet(32, 10, in_channels=3)
    assert sum(p.numel() for p in m.parameters()) == total == 487_386
    for side, c in ((28, 1), (32, 3), (64, 3)):
        assert resnet(8, 5, in_channels=c, width=4)(torch.zeros(2, c, side, side)).shape == (2, 5)
    with pytest.raises(ValueError, match="6n"):
        resnet(30, 10)

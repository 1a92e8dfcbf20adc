"""Network architectures (the CIFAR-style ResNet of HPN in :mod:`dispersion.models.resnet`).

Kept import-free on purpose; import the submodule you need.
"""

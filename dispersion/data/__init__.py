"""Dataset loaders (images in :mod:`dispersion.data.images`).

Kept import-free on purpose: ``import dispersion.data`` costs nothing; import the submodule
you need (it pulls in torchvision only there).
"""

"""Data layer: source datasets -> ``img_info`` -> per-sample pipeline -> mixture sampler -> batches.

Kept import-free on purpose: ``from romp_hydra.data import masks`` must not pull in OpenCV or torch.
Import the modules you need directly (``romp_hydra.data.pipeline``, ``romp_hydra.data.collate``, ...).
"""

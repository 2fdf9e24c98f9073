"""Scene-Aware Label Graph Learning (SALGL, ICCV 2023) for multi-label image classification."""

__version__ = "0.1.0"

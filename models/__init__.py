"""Trained Flax models that the service ships, with their data.

Importing the package is light (no JAX): :mod:`models.names` lists the names, and the registry
(Flax modules, checkpoints) is imported on first use of any other name.
"""

import importlib

from models.names import NAMES

_LAZY = {
    "IMAGE_MODELS": "models.registry",
    "SPECS": "models.registry",
    "TABULAR_MODELS": "models.registry",
    "Bundle": "models.registry",
    "load": "models.registry",
    "CheckpointError": "models.checkpoint",
}

__all__ = ["IMAGE_MODELS", "NAMES", "SPECS", "TABULAR_MODELS", "Bundle", "CheckpointError", "load"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")

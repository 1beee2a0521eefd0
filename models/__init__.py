"""Trained Flax models that the service ships, with their data."""

from models.checkpoint import CheckpointError
from models.registry import IMAGE_MODELS, SPECS, TABULAR_MODELS, Bundle, load

__all__ = ["IMAGE_MODELS", "SPECS", "TABULAR_MODELS", "Bundle", "CheckpointError", "load"]

"""Gradient explanations for JAX/Flax models: the public API, re-exported."""

from explain import targets
from explain.adapters import from_linen, from_nnx
from explain.gradients import Gradients, LayerGradients, hvp, input_gradients, layer_gradients
from explain.model import InputSpec, Model, as_model

__all__ = [
    "Gradients",
    "InputSpec",
    "LayerGradients",
    "Model",
    "as_model",
    "from_linen",
    "from_nnx",
    "hvp",
    "input_gradients",
    "layer_gradients",
    "targets",
]

"""Gradient explanations for JAX/Flax models: the public API, re-exported.

The vocabulary every function uses (``target``, ``labels``, ``goal``, ``eps``, ``key``,
``memory_budget``, ...) is listed in ``explain/README.md``.
"""

from explain import adversarial, batch, chunking, gradflow, primer, saliency, sensitivity, specs, targets, viz
from explain.adapters import from_linen, from_nnx
from explain.batch import BatchRun, attribute_dataset
from explain.gradflow import GradientFlow, JacobianChain, gradient_flow, jacobian_chain
from explain.gradients import Gradients, LayerGradients, Prepared, hvp, input_gradients, layer_gradients, prepare
from explain.model import InputSpec, Model, as_model
from explain.saliency import (
    Attribution,
    blur_integrated_gradients,
    deconvnet,
    expected_gradients,
    grad_cam,
    gradient_shap,
    gradient_x_input,
    guided_backprop,
    guided_grad_cam,
    guided_integrated_gradients,
    integrated_gradients,
    integrated_gradients_adaptive,
    noise_tunnel,
    occlusion,
    smoothgrad,
    smoothgrad_sq,
    vanilla_gradient,
    vargrad,
)

__all__ = [
    "Attribution",
    "BatchRun",
    "GradientFlow",
    "Gradients",
    "InputSpec",
    "JacobianChain",
    "LayerGradients",
    "Model",
    "Prepared",
    "adversarial",
    "as_model",
    "attribute_dataset",
    "batch",
    "blur_integrated_gradients",
    "chunking",
    "deconvnet",
    "expected_gradients",
    "from_linen",
    "from_nnx",
    "grad_cam",
    "gradflow",
    "gradient_flow",
    "gradient_shap",
    "gradient_x_input",
    "guided_backprop",
    "guided_grad_cam",
    "guided_integrated_gradients",
    "hvp",
    "input_gradients",
    "integrated_gradients",
    "integrated_gradients_adaptive",
    "jacobian_chain",
    "layer_gradients",
    "noise_tunnel",
    "occlusion",
    "prepare",
    "primer",
    "saliency",
    "sensitivity",
    "smoothgrad",
    "smoothgrad_sq",
    "specs",
    "targets",
    "vanilla_gradient",
    "vargrad",
    "viz",
]

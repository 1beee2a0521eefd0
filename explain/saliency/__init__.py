"""Saliency maps: every gradient attribution method, batched and compiled, on any Flax model."""

from explain.saliency.attribution import Attribution
from explain.saliency.blur_ig import blur_integrated_gradients
from explain.saliency.cam import grad_cam, guided_grad_cam
from explain.saliency.expected import expected_gradients, gradient_shap
from explain.saliency.gradient import gradient_x_input, vanilla_gradient
from explain.saliency.guided import deconvnet, guided_backprop
from explain.saliency.guided_ig import guided_integrated_gradients
from explain.saliency.integrated import integrated_gradients, integrated_gradients_adaptive, make_baseline, quadrature
from explain.saliency.occlusion import occlusion
from explain.saliency.registry import METHODS
from explain.saliency.smooth import noise_tunnel, smoothgrad, smoothgrad_sq, vargrad

__all__ = [
    "METHODS",
    "Attribution",
    "blur_integrated_gradients",
    "deconvnet",
    "expected_gradients",
    "grad_cam",
    "gradient_shap",
    "gradient_x_input",
    "guided_backprop",
    "guided_grad_cam",
    "guided_integrated_gradients",
    "integrated_gradients",
    "integrated_gradients_adaptive",
    "make_baseline",
    "noise_tunnel",
    "occlusion",
    "quadrature",
    "smoothgrad",
    "smoothgrad_sq",
    "vanilla_gradient",
    "vargrad",
]

"""Saliency maps: every gradient attribution method, batched and compiled, on any Flax model.

Each method ``foo(model, x, *, ...)`` has a pure core ``foo_core(apply_or_tap, params, x, target, ...)``
usable inside ``jax.jit`` / ``jax.vmap`` (see ``explain/README.md``).
"""

from explain.saliency.attribution import (
    Attribution,
)
from explain.saliency.blur_ig import (
    blur_integrated_gradients,
    blur_integrated_gradients_core,
)
from explain.saliency.cam import (
    grad_cam,
    grad_cam_core,
    guided_grad_cam,
    guided_grad_cam_core,
)
from explain.saliency.expected import (
    expected_gradients,
    expected_gradients_core,
    gradient_shap,
    gradient_shap_core,
)
from explain.saliency.gradient import (
    gradient_x_input,
    gradient_x_input_core,
    vanilla_gradient,
    vanilla_gradient_core,
)
from explain.saliency.guided import (
    deconvnet,
    deconvnet_core,
    guided_backprop,
    guided_backprop_core,
)
from explain.saliency.guided_ig import (
    guided_integrated_gradients,
    guided_integrated_gradients_core,
)
from explain.saliency.integrated import (
    integrated_gradients,
    integrated_gradients_adaptive,
    integrated_gradients_core,
    make_baseline,
    quadrature,
)
from explain.saliency.occlusion import (
    occlusion,
    occlusion_core,
)
from explain.saliency.registry import (
    METHODS,
)
from explain.saliency.smooth import (
    noise_tunnel,
    noise_tunnel_core,
    smoothgrad,
    smoothgrad_sq,
    vargrad,
)

__all__ = [
    "Attribution",
    "METHODS",
    "blur_integrated_gradients",
    "blur_integrated_gradients_core",
    "deconvnet",
    "deconvnet_core",
    "expected_gradients",
    "expected_gradients_core",
    "grad_cam",
    "grad_cam_core",
    "gradient_shap",
    "gradient_shap_core",
    "gradient_x_input",
    "gradient_x_input_core",
    "guided_backprop",
    "guided_backprop_core",
    "guided_grad_cam",
    "guided_grad_cam_core",
    "guided_integrated_gradients",
    "guided_integrated_gradients_core",
    "integrated_gradients",
    "integrated_gradients_adaptive",
    "integrated_gradients_core",
    "make_baseline",
    "noise_tunnel",
    "noise_tunnel_core",
    "occlusion",
    "occlusion_core",
    "quadrature",
    "smoothgrad",
    "smoothgrad_sq",
    "vanilla_gradient",
    "vanilla_gradient_core",
    "vargrad",
]

"""Saliency maps: every gradient attribution method, batched and compiled, on any Flax model.

Each method ``foo(model, x, *, ...)`` has a pure core ``foo_core(apply_or_tap, params, x, target, ...)``
usable inside ``jax.jit`` / ``jax.vmap`` (see ``explain/README.md``).

Arguments every method takes (each method's docstring adds its own):

* ``model``: a :class:`~explain.model.Model` (contract in :mod:`explain.model`) or a bundle.
* ``x``: ``(N, *input_shape)``; values come back shaped like it.
* ``target``: see :mod:`explain.targets`, or ``"all"`` where supported (values ``(N, K, *input_shape)``);
  a predicted class is frozen at ``x``. ``labels``: ``(N,)`` when ``target="loss"``.
* ``memory_budget``: bytes per compiled call (default :data:`explain.chunking.MEMORY_BUDGET`; ``target="all"``
  counts ``K`` backward passes per row); samples and steps/draws are chunked within it, so memory does
  not grow with ``N``, steps or draws.
* ``show_progress``: a progress bar for long calls.

Bad input raises ``ValueError`` / ``TypeError`` before anything compiles.
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
    integrated_gradients_adaptive_core,
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
    smoothgrad_core,
    smoothgrad_sq,
    smoothgrad_sq_core,
    vargrad,
    vargrad_core,
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
    "integrated_gradients_adaptive_core",
    "integrated_gradients_core",
    "make_baseline",
    "noise_tunnel",
    "noise_tunnel_core",
    "occlusion",
    "occlusion_core",
    "quadrature",
    "smoothgrad",
    "smoothgrad_core",
    "smoothgrad_sq",
    "smoothgrad_sq_core",
    "vanilla_gradient",
    "vanilla_gradient_core",
    "vargrad",
    "vargrad_core",
]

"""Gradient explanations for JAX/Flax models: the public API, re-exported.

The vocabulary every function uses (``target``, ``labels``, ``goal``, ``eps``, ``key``,
``memory_budget``, ...) is listed in ``explain/README.md``.
"""

import importlib

# Public name -> the module that defines it, imported on first use (PEP 562): `import explain` stays
# light (no JAX, no Flax), so `--help`, spec resolution and loading a jax.export artifact import only what they use.
_LAZY: dict[str, str] = {
    "adversarial": "explain.adversarial",
    "batch": "explain.batch",
    "chunking": "explain.chunking",
    "client": "explain.client",
    "data": "explain.data",
    "exported": "explain.exported",
    "images": "explain.images",
    "metrics": "explain.metrics",
    "gradflow": "explain.gradflow",
    "primer": "explain.primer",
    "saliency": "explain.saliency",
    "sensitivity": "explain.sensitivity",
    "specs": "explain.specs",
    "targets": "explain.targets",
    "viz": "explain.viz",
    "from_linen": "explain.adapters",
    "from_nnx": "explain.adapters",
    "TrainingModeError": "explain.adapters",
    "BatchRun": "explain.batch",
    "attribute_dataset": "explain.batch",
    "GradientFlow": "explain.gradflow",
    "JacobianChain": "explain.gradflow",
    "gradient_flow": "explain.gradflow",
    "jacobian_chain": "explain.gradflow",
    "Gradients": "explain.gradients",
    "LayerGradients": "explain.gradients",
    "Prepared": "explain.gradients",
    "hvp": "explain.gradients",
    "input_gradients": "explain.gradients",
    "layer_gradients": "explain.gradients",
    "prepare": "explain.gradients",
    "InputSpec": "explain.model",
    "Model": "explain.model",
    "as_model": "explain.model",
    "Attribution": "explain.saliency",
    "blur_integrated_gradients": "explain.saliency",
    "deconvnet": "explain.saliency",
    "expected_gradients": "explain.saliency",
    "grad_cam": "explain.saliency",
    "gradient_shap": "explain.saliency",
    "gradient_x_input": "explain.saliency",
    "guided_backprop": "explain.saliency",
    "guided_grad_cam": "explain.saliency",
    "guided_integrated_gradients": "explain.saliency",
    "integrated_gradients": "explain.saliency",
    "integrated_gradients_adaptive": "explain.saliency",
    "noise_tunnel": "explain.saliency",
    "occlusion": "explain.saliency",
    "smoothgrad": "explain.saliency",
    "smoothgrad_sq": "explain.saliency",
    "vanilla_gradient": "explain.saliency",
    "vargrad": "explain.saliency",
}

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
    "TrainingModeError",
    "adversarial",
    "as_model",
    "attribute_dataset",
    "batch",
    "blur_integrated_gradients",
    "chunking",
    "client",
    "data",
    "deconvnet",
    "expected_gradients",
    "exported",
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
    "images",
    "input_gradients",
    "integrated_gradients",
    "integrated_gradients_adaptive",
    "jacobian_chain",
    "layer_gradients",
    "metrics",
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


def __getattr__(name: str):
    """The public name ``name``, importing its module on first use (then cached in the module's globals)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'explain' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if _LAZY[name] == f"explain.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

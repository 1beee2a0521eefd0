"""The name -> method table used at the edges (command line, dashboard, batch API).

Inside the library methods are passed as functions; only the edges turn names
into them. Each entry records the method's option defaults (those the user
may change from the edge), whether its map is signed (diverging colormap),
and whether it needs a PRNG key or a reference set.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax

from explain.saliency import blur_ig, cam, expected, gradient, guided, guided_ig, integrated, smooth
from explain.saliency.attribution import Attribution

# the package re-exports the function under the module's own name, so import it directly
from explain.saliency.occlusion import occlusion as _occlusion


@dataclasses.dataclass(frozen=True)
class MethodInfo:
    """``fn(model, x, *, target, labels, **options) -> Attribution`` and how to call and draw it."""

    fn: Callable[..., Attribution]
    defaults: Mapping[str, Any]
    signed: bool
    needs_key: bool = False
    needs_references: bool = False
    images_only: bool = False
    supports_all: bool = True
    description: str = ""


METHODS: dict[str, MethodInfo] = {
    "gradient": MethodInfo(gradient.vanilla_gradient, {"absolute": False}, True, description="∂F/∂x"),
    "gradient_abs": MethodInfo(gradient.vanilla_gradient, {"absolute": True}, False, description="|∂F/∂x|"),
    "gradient_x_input": MethodInfo(gradient.gradient_x_input, {}, True, description="x ⊙ ∂F/∂x"),
    "smoothgrad": MethodInfo(smooth.smoothgrad, {"n_samples": 25, "noise_level": 0.15}, True, needs_key=True),
    "smoothgrad_sq": MethodInfo(smooth.smoothgrad_sq, {"n_samples": 25, "noise_level": 0.15}, False, needs_key=True),
    "vargrad": MethodInfo(smooth.vargrad, {"n_samples": 25, "noise_level": 0.15}, False, needs_key=True),
    "integrated_gradients": MethodInfo(
        integrated.integrated_gradients,
        {"steps": 50, "rule": "gauss_legendre", "baseline": "zero", "baseline_value": None, "blur_sigma": None},
        True,
    ),
    "integrated_gradients_adaptive": MethodInfo(
        integrated.integrated_gradients_adaptive,
        {
            "tolerance": 1e-3,
            "start_steps": 16,
            "max_steps": 4096,
            "rule": "gauss_legendre",
            "baseline": "zero",
            "baseline_value": None,
            "blur_sigma": None,
        },
        True,
        supports_all=False,
    ),
    "expected_gradients": MethodInfo(
        expected.expected_gradients, {"n_samples": 50, "stdevs": 0.0}, True, needs_key=True, needs_references=True
    ),
    "gradient_shap": MethodInfo(
        expected.gradient_shap, {"n_samples": 5, "stdevs": 0.0}, True, needs_key=True, needs_references=True
    ),
    "blur_ig": MethodInfo(
        blur_ig.blur_integrated_gradients, {"max_sigma": 50.0, "steps": 100, "sqrt": False}, True, images_only=True
    ),
    "guided_ig": MethodInfo(
        guided_ig.guided_integrated_gradients,
        {"steps": 25, "fraction": 0.25, "max_dist": 0.02, "baseline": "zero"},
        True,
        supports_all=False,
    ),
    "guided_backprop": MethodInfo(guided.guided_backprop, {}, True),
    "deconvnet": MethodInfo(guided.deconvnet, {}, True),
    "grad_cam": MethodInfo(cam.grad_cam, {"layer": None}, False, images_only=True),
    "guided_grad_cam": MethodInfo(cam.guided_grad_cam, {"layer": None}, True, images_only=True),
    "occlusion": MethodInfo(_occlusion, {"window": None, "strides": None, "baseline_value": 0.0}, True),
}


def get(name: str) -> MethodInfo:
    """The entry for ``name``; an unknown name raises ``ValueError`` listing the known ones."""
    if name not in METHODS:
        raise ValueError(f"unknown saliency method {name!r}; expected one of {sorted(METHODS)}")
    return METHODS[name]


@functools.cache
def accepts_key(fn: Callable[..., Attribution]) -> bool:
    """Whether ``fn`` takes a ``key`` (required, or optional as IG's ``baseline="uniform"``)."""
    return "key" in inspect.signature(fn).parameters


def run(
    name: str,
    model: Any,
    x: Any,
    *,
    target: Any = None,
    labels: Any = None,
    key: jax.Array | None = None,
    references: Any = None,
    **options: Any,
) -> Attribution:
    """Calls method ``name`` with its defaults overridden by ``options`` (unknown options raise ``ValueError``).

    ``key`` is passed to every method that takes one (``needs_key`` marks those that
    require it; IG and Guided IG use it only for ``baseline="uniform"``); ``references``
    (default ``x``) to those that draw baselines.
    """
    info = get(name)
    unknown = set(options) - set(info.defaults) - {"internal_batch_size", "memory_budget"}
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for {name!r}; expected some of {sorted(info.defaults)}")
    kwargs = {**info.defaults, **options, "target": target, "labels": labels}
    if info.needs_key or (key is not None and accepts_key(info.fn)):
        kwargs["key"] = key
    if info.needs_references:
        kwargs["references"] = x if references is None else references
    return info.fn(model, x, **kwargs)

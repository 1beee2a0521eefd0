"""The name -> method table used at the edges (command line, dashboard, batch API, noise tunnels).

Inside the library methods are passed as functions; only the edges turn names
into them, through :func:`call`. Each name is the method's function name, and
its option defaults are read from that function's signature (no second copy).
Each entry adds what the signature cannot say: whether its map is signed
(diverging colormap), its pure core (for ``jax.jit``/``jax.vmap`` and the noise
tunnels), and whether that core differentiates through the model's layer tap.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax

from explain.model import Model
from explain.saliency import _common as common
from explain.saliency import blur_ig, cam, expected, gradient, guided, guided_ig, integrated, smooth
from explain.saliency.attribution import Attribution

# The package re-exports the function `occlusion`, which shadows the module of the same name.
occlusion_module = importlib.import_module("explain.saliency.occlusion")

# Arguments every edge passes itself; never options.
RESERVED = frozenset({"model", "x", "target", "labels", "key", "references", "memory_budget", "show_progress"})


def _no_core_options(model: Model, options: Mapping[str, Any]) -> dict[str, Any]:
    return dict(options)


def _one_row(model: Model, options: Mapping[str, Any]) -> int:
    return 1


@dataclasses.dataclass(frozen=True)
class MethodInfo:
    """``fn(model, x, *, target, labels, ...) -> Attribution`` and what the edges need to call and draw it.

    Attributes:
      fn: the public wrapper; its keyword-only parameters (less :data:`RESERVED`) are the options.
      signed: whether maps are signed (diverging colormap) or magnitudes.
      core: the pure ``core(apply_or_tap, params, x, target, **core_options) -> Attribution``, or ``None``.
      uses_tap: the core takes ``model.tap`` instead of ``model.apply``.
      rewrites_relus: the method re-traces the model's code with its ReLUs replaced (so it needs the code).
      images_only: the method needs ``(N, H, W, C)`` inputs.
      supports_all: ``target="all"`` is supported.
      core_options: turns validated options into the core's keyword arguments (e.g. a default layer).
      cost: model rows one sample costs in one core call (e.g. IG's ``steps``), for chunking.
      description: one line for the dashboard.
    """

    fn: Callable[..., Attribution]
    signed: bool
    core: Callable[..., Attribution] | None = None
    uses_tap: bool = False
    rewrites_relus: bool = False
    images_only: bool = False
    supports_all: bool = True
    core_options: Callable[[Model, Mapping[str, Any]], dict[str, Any]] = _no_core_options
    cost: Callable[[Model, Mapping[str, Any]], int] = _one_row
    description: str = ""

    @functools.cached_property
    def parameters(self) -> Mapping[str, inspect.Parameter]:
        return inspect.signature(self.fn).parameters

    @property
    def defaults(self) -> dict[str, Any]:
        """Every option and its default, read from :attr:`fn`'s signature."""
        return {k: p.default for k, p in self.parameters.items() if k not in RESERVED}

    @property
    def needs_key(self) -> bool:
        """The method is random and requires ``key`` (IG takes an optional key for ``baseline="uniform"``)."""
        p = self.parameters.get("key")
        return p is not None and p.default is inspect.Parameter.empty

    @property
    def accepts_key(self) -> bool:
        return "key" in self.parameters

    @property
    def needs_references(self) -> bool:
        return "references" in self.parameters

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` merged over the defaults; unknown names raise ``ValueError`` listing the valid ones."""
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"unknown option(s) {unknown} for {self.fn.__name__!r}; expected some of {sorted(self.defaults)}"
            )
        return {**self.defaults, **options}

    def check_model(self, model: Model) -> None:
        if self.images_only:
            common.check_image(model, what=self.fn.__name__)
        if self.rewrites_relus:
            model.check_tap(self.fn.__name__)
        if self.uses_tap and model.tap is None:
            model.check_tap(self.fn.__name__)
            raise ValueError(f"{self.fn.__name__} needs the model's layers; model {model.name!r} exposes none")

    def rows_per_sample(self, model: Model, options: Mapping[str, Any]) -> int:
        return max(1, int(self.cost(model, options)))


def _zero_baseline(name: str, check: Callable[..., tuple]) -> Callable[[Model, Mapping[str, Any]], dict[str, Any]]:
    """``core_options`` of a path method: ``check(**its options)`` (validated values, in the order of its
    parameters); only the zero baseline, the cores' default."""
    keys = list(inspect.signature(check).parameters)

    def core_options(model: Model, options: Mapping[str, Any]) -> dict[str, Any]:
        b = options.get("baseline", "zero")
        if not (isinstance(b, str) and b == "zero"):
            raise ValueError(f"inside a noise tunnel, {name} uses the zero baseline")
        return dict(zip(keys, check(**{k: options[k] for k in keys}), strict=True))

    return core_options


def _option(name: str) -> Callable[[Model, Mapping[str, Any]], int]:
    """A ``cost``: the option ``name`` (IG's steps, Expected Gradients' draws)."""
    return lambda model, options: int(options[name])


def _expected_core_options(model: Model, options: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "n_samples": options["n_samples"],
        "noise_level": options["noise_level"],
        "value_range": model.input_spec.value_range,
    }


def _occlusion_core_options(model: Model, options: Mapping[str, Any]) -> dict[str, Any]:
    window, strides = occlusion_module.resolve_window(model.input_spec.shape, options["window"], options["strides"])
    return {"window": window, "strides": strides, "baseline_value": float(options["baseline_value"])}


def _windows(model: Model, options: Mapping[str, Any]) -> int:
    window, strides = occlusion_module.resolve_window(model.input_spec.shape, options["window"], options["strides"])
    return occlusion_module.n_windows(model.input_spec.shape, window, strides)


def _absolute(model: Model, options: Mapping[str, Any]) -> dict[str, Any]:
    return {"absolute": bool(options["absolute"])}


METHODS: dict[str, MethodInfo] = {
    info.fn.__name__: info
    for info in (
        MethodInfo(
            gradient.vanilla_gradient,
            True,
            gradient.vanilla_gradient_core,
            core_options=_absolute,
            description="∂F/∂x (|∂F/∂x| with absolute=True)",
        ),
        MethodInfo(gradient.gradient_x_input, True, gradient.gradient_x_input_core, description="x ⊙ ∂F/∂x"),
        *(
            MethodInfo(fn, signed, core, core_options=smooth.core_options, cost=smooth.cost, description=what)
            for fn, core, signed, what in (
                (smooth.smoothgrad, smooth.smoothgrad_core, True, "mean map under input noise"),
                (smooth.smoothgrad_sq, smooth.smoothgrad_sq_core, False, "mean squared map under input noise"),
                (smooth.vargrad, smooth.vargrad_core, False, "variance of the map under input noise"),
            )
        ),
        MethodInfo(
            integrated.integrated_gradients,
            True,
            integrated.integrated_gradients_core,
            core_options=_zero_baseline("integrated_gradients", lambda rule, steps: integrated.check_rule(rule, steps)),
            cost=_option("steps"),
            description="path integral of ∂F/∂x from a baseline",
        ),
        MethodInfo(
            integrated.integrated_gradients_adaptive,
            True,
            integrated.integrated_gradients_adaptive_core,
            supports_all=False,
            core_options=_zero_baseline("integrated_gradients_adaptive", integrated.check_adaptive),
            cost=_option("start_steps"),
            description="IG with steps doubled until complete",
        ),
        *(
            MethodInfo(fn, True, core, core_options=_expected_core_options, cost=_option("n_samples"), description=what)
            for fn, core, what in (
                (expected.expected_gradients, expected.expected_gradients_core, "IG averaged over reference baselines"),
                (
                    expected.gradient_shap,
                    expected.gradient_shap_core,
                    "Expected Gradients with Captum's GradientSHAP defaults",
                ),
            )
        ),
        MethodInfo(
            blur_ig.blur_integrated_gradients,
            True,
            blur_ig.blur_integrated_gradients_core,
            images_only=True,
            cost=_option("steps"),
            description="IG along a blur path (scale space)",
        ),
        MethodInfo(
            guided_ig.guided_integrated_gradients,
            True,
            guided_ig.guided_integrated_gradients_core,
            supports_all=False,
            core_options=_zero_baseline("guided_integrated_gradients", guided_ig.check_options),
            description="IG along a path that moves low-gradient features first",
        ),
        *(
            MethodInfo(fn, True, core, rewrites_relus=True, core_options=guided.core_options, description=what)
            for fn, core, what in (
                (
                    guided.guided_backprop,
                    guided.guided_backprop_core,
                    "ReLU backward gated by forward and gradient sign",
                ),
                (guided.deconvnet, guided.deconvnet_core, "ReLU backward gated by gradient sign"),
            )
        ),
        MethodInfo(
            cam.grad_cam,
            False,
            cam.grad_cam_core,
            uses_tap=True,
            images_only=True,
            core_options=cam.core_options,
            description="class activation map of a conv layer",
        ),
        MethodInfo(
            cam.guided_grad_cam,
            True,
            cam.guided_grad_cam_core,
            uses_tap=True,
            images_only=True,
            core_options=cam.guided_core_options,
            description="Guided Backprop × Grad-CAM",
        ),
        MethodInfo(
            occlusion_module.occlusion,
            True,
            occlusion_module.occlusion_core,
            core_options=_occlusion_core_options,
            cost=_windows,
            description="output drop when a sliding window is occluded",
        ),
    )
}


def usable(model: Model) -> tuple[str, ...]:
    """The registry names, in registry order, of the methods ``model`` can run (Grad-CAM needs layers, ...)."""
    ok = []
    for name, info in METHODS.items():
        try:
            info.check_model(model)
        except ValueError:
            continue
        ok.append(name)
    return tuple(ok)


def get(name: str) -> MethodInfo:
    """The entry for ``name``; an unknown name raises ``ValueError`` listing the known ones."""
    if name not in METHODS:
        raise ValueError(f"unknown saliency method {name!r}; expected one of {sorted(METHODS)}")
    return METHODS[name]


def call(
    name: str,
    model: Model | Any,
    x: Any,
    *,
    target: Any = None,
    labels: Any = None,
    key: jax.Array | None = None,
    references: Any = None,
    memory_budget: int | None = None,
    show_progress: bool = False,
    **options: Any,
) -> Attribution:
    """Calls method ``name`` with ``options`` over its defaults: the one call the command line, the dashboard
    and the batch API make.

    ``key`` is passed to every method that takes one (required by the random ones,
    optional for IG's ``baseline="uniform"``); ``references`` (default ``x``) to those
    that draw baselines from a reference set.

    Raises:
      ValueError: unknown method or option names, each listing the valid ones.
    """
    info = get(name)
    kwargs = {**info.check_options(options), "target": target, "labels": labels, "memory_budget": memory_budget}
    kwargs["show_progress"] = show_progress
    if info.accepts_key and (info.needs_key or key is not None):
        kwargs["key"] = key
    if info.needs_references:
        kwargs["references"] = x if references is None else references
    return info.fn(model, x, **kwargs)

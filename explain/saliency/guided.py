"""Guided Backpropagation and Deconvnet on any model whose ReLUs are ``jax.nn.relu``, unedited.

Both change only the backward rule of each ReLU ``y = max(x, 0)``:

* plain gradient:  ``∂/∂x = g · [x > 0]``
* Guided Backprop: ``∂/∂x = g · [x > 0] · [g > 0]`` (Springenberg et al. 2015)
* Deconvnet:       ``∂/∂x = max(g, 0)``             (Zeiler & Fergus 2014)

Mechanism (why a jaxpr rewrite): the model's ``apply`` is traced to a jaxpr and
re-evaluated equation by equation; every call of ``jax.nn.relu`` (which JAX
records as a ``custom_jvp_call`` wrapping ``jit[name=relu]``) is replaced by a
``jax.custom_vjp`` function with the modified backward rule, and every other
equation is bound unchanged. This works for linen, NNX or plain-function
models alike because it acts on the traced program, not on module classes:
no model is edited, no global is monkey-patched (so concurrent plain
gradients are unaffected), and the result composes with ``jit``/``vmap``.
ReLUs inside control flow (``scan``, ``cond``, ``remat``) are left unchanged;
a model with no ``jax.nn.relu`` at all raises a clear error.

Max-pooling ties (Deconvnet only). Zeiler & Fergus reconstruct through each
max-pool with "switches": the location of the maximum in each window, recorded
in the forward pass, receives the whole signal. Which location is a matter of
convention only where the window has ties, and after a ReLU ties are the
common case (on ``shapes_cnn`` 52–80% of the 2×2 windows are all zero).
Deconvnet ignores the ReLU's mask, so those ties reach the input map: JAX's
gradient of a ``reduce_max`` (``x.reshape(...).max(axes)``, how
``models.modules.max_pool_2x2`` pools) splits the signal evenly among tied
positions, while PyTorch's ``max_pool2d`` (hence Captum's ``Deconvolution``)
routes it all to the first. Under the ``"deconvnet"`` rule every floating
``reduce_max`` is therefore replaced too, by a max whose pullback sends ``g``
to one switch per window: the first maximum in row-major order of the
reduced axes (``jnp.argmax``), as the paper and PyTorch do. This also applies
to a global max over a feature map (the window is the whole map), where
PyTorch's ``amax`` splits evenly instead: ``benchmarks/captum_parity.py``
reports Captum with and without a first-maximum ``amax`` (relative L2 2e-7
with, 3e-2 without, on ``shapes_cnn``; 0.51 before switches).
``lax.reduce_window`` max-pooling (``flax.linen.max_pool``) needs no rewrite:
its gradient (``select_and_scatter_add`` with ``ge``) already routes to the
first maximum of each window. Guided Backprop and the plain gradient keep
JAX's own max gradient: their ReLU mask zeroes a tied window of zeros anyway,
and ties between positive values have measure zero.

The rewritten function is a :class:`ModifiedApply`, a frozen dataclass of
``(apply, rule)``: equal for equal fields, so it is hashable as a static
``jax.jit`` argument without any cache. The cores differentiate it with
:func:`explain.gradients.target_and_grad`, like every other method.

References:
  Springenberg, Dosovitskiy, Brox, Riedmiller. Striving for Simplicity: The All
  Convolutional Net. ICLR workshop 2015.
  Zeiler, Fergus. Visualizing and Understanding Convolutional Networks. ECCV 2014.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float

from explain.arrays import Batch
from explain.checks import check_choice
from explain.gradients import prepare, target_and_grad
from explain.model import Model, as_model
from explain.saliency import _common as common
from explain.saliency.attribution import Attribution
from explain.targets import BoundTarget

Rule = Literal["guided", "deconvnet"]
RULES: tuple[str, ...] = ("guided", "deconvnet")
NO_RELU_MSG = (
    "found no jax.nn.relu in {what}; guided backprop and deconvnet rewrite the backward rule of "
    "jax.nn.relu (flax.linen.relu / nnx.relu are the same function). Models using jnp.maximum(x, 0) or other "
    "activations are not supported."
)


def _relu_with(backward: Callable[[jax.Array, jax.Array], jax.Array]) -> Callable:
    """``max(x, 0)`` whose pullback of ``g`` is ``backward(x, g)``."""
    relu = jax.custom_vjp(lambda x: jnp.maximum(x, 0))
    relu.defvjp(lambda x: (jnp.maximum(x, 0), x), lambda x, g: (backward(x, g),))
    return relu


def _to_windows(x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """``x`` with the reduced ``axes`` moved last and flattened, in row-major order: ``(*kept, window)``."""
    kept = [d for d in range(x.ndim) if d not in axes]
    return jnp.transpose(x, (*kept, *axes)).reshape(*(x.shape[d] for d in kept), -1)


def _from_windows(w: jax.Array, shape: tuple[int, ...], axes: tuple[int, ...]) -> jax.Array:
    """Inverse of :func:`_to_windows` for an array of ``shape``."""
    kept = [d for d in range(len(shape)) if d not in axes]
    perm = (*kept, *axes)
    w = w.reshape(*(shape[d] for d in perm))
    return jnp.transpose(w, tuple(perm.index(d) for d in range(len(shape))))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _switch_max(x: jax.Array, axes: tuple[int, ...], window: tuple[int, ...]) -> jax.Array:
    return lax.reduce_max(x, axes)


def _switch_max_fwd(x: jax.Array, axes: tuple[int, ...], window: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    switches = jnp.argmax(_to_windows(x, axes), axis=-1)  # (*kept,) recorded in the forward pass, as in the paper
    return lax.reduce_max(x, axes), switches


def _switch_max_bwd(
    axes: tuple[int, ...], window: tuple[int, ...], switches: jax.Array, g: jax.Array
) -> tuple[jax.Array]:
    routed = jax.nn.one_hot(switches, math.prod(window), dtype=g.dtype) * g[..., None]  # (*kept, window)
    shape = [*g.shape]
    for d, n in zip(axes, window):
        shape.insert(d, n)
    return (_from_windows(routed, tuple(shape), axes),)


_switch_max.defvjp(_switch_max_fwd, _switch_max_bwd)


def switch_max(x: Float[Array, " *shape"], axes: tuple[int, ...]) -> jax.Array:
    """``lax.reduce_max(x, axes)`` whose pullback routes ``g`` to one switch per window.

    The switch is the first maximum of each window in row-major order of the reduced ``axes``
    (Zeiler & Fergus's recorded switches; PyTorch's ``max_pool2d`` picks the same one), where
    JAX's own gradient splits ``g`` evenly among ties. The result has ``x``'s shape without ``axes``.
    """
    axes = tuple(sorted(axes))
    return _switch_max(x, axes, tuple(x.shape[d] for d in axes))


@dataclasses.dataclass(frozen=True)
class _Rewrites:
    """What one rule replaces: every ``jax.nn.relu`` by ``relu``; with ``switches``, every floating
    ``reduce_max`` by :func:`switch_max`."""

    relu: Callable
    switches: bool = False


_REPLACEMENTS = {
    "guided": _Rewrites(_relu_with(lambda x, g: jnp.where((x > 0) & (g > 0), g, 0))),
    "deconvnet": _Rewrites(_relu_with(lambda x, g: jnp.maximum(g, 0)), switches=True),
}


def _is_relu(eqn: jcore.JaxprEqn) -> bool:
    if eqn.primitive.name != "custom_jvp_call":
        return False
    inner = eqn.params["call_jaxpr"].jaxpr.eqns
    return len(inner) == 1 and inner[0].primitive.name in ("jit", "pjit") and inner[0].params.get("name") == "relu"


def _is_switched_max(eqn: jcore.JaxprEqn, rewrites: _Rewrites) -> bool:
    return (
        rewrites.switches
        and eqn.primitive.name == "reduce_max"
        and jnp.issubdtype(eqn.invars[0].aval.dtype, jnp.floating)
    )


def _eval(jaxpr: jcore.Jaxpr, consts: list, args: list, rewrites: _Rewrites, count: list[int]) -> list:
    """``jax.core.eval_jaxpr`` with the equations ``rewrites`` names replaced; recurses into ``jit`` calls."""
    env: dict = {}

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    for v, val in zip(jaxpr.constvars, consts):
        env[v] = val
    for v, val in zip(jaxpr.invars, args):
        env[v] = val
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        if _is_relu(eqn):
            count[0] += 1
            outs = [rewrites.relu(invals[0])]
        elif _is_switched_max(eqn, rewrites):
            outs = [switch_max(invals[0], tuple(eqn.params["axes"]))]
        elif eqn.primitive.name in ("jit", "pjit"):
            sub = eqn.params["jaxpr"]
            outs = _eval(sub.jaxpr, sub.consts, invals, rewrites, count)
        else:
            # as jax.core.eval_jaxpr (jax >= 0.7: get_bind_params returns only the params)
            with eqn.ctx.manager:
                outs = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
            outs = outs if eqn.primitive.multiple_results else [outs]
        for v, val in zip(eqn.outvars, outs):
            env[v] = val
    return [read(v) for v in jaxpr.outvars]


def _rewrite(apply: Callable, rewrites: _Rewrites, params: Any, x: Any) -> tuple[Any, int]:
    """``(apply(params, x) with rewrites applied, how many jax.nn.relu were replaced)``."""
    count = [0]
    closed, out_shape = jax.make_jaxpr(apply, return_shape=True)(params, x)
    outs = _eval(closed.jaxpr, closed.consts, jax.tree.leaves((params, x)), rewrites, count)
    return jax.tree.unflatten(jax.tree.structure(out_shape), outs), count[0]


def count_relus(apply: Callable, params: Any, x: Any) -> int:
    """How many ``jax.nn.relu`` calls the rewrite would replace (traced abstractly: nothing runs or compiles).

    ``x`` may be an array or a ``jax.ShapeDtypeStruct``. The answer depends only on ``apply`` and the
    shapes and dtypes of ``(params, x)``, so it is remembered for a hashable ``apply``: the methods check
    on every call, and tracing the model each time cost about as much as a small batch's gradient.
    """
    leaves, tree = jax.tree.flatten((params, x))
    avals = tuple(jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)) for a in leaves)
    try:
        return _count_relus(apply, tree, avals)
    except TypeError:  # an unhashable apply: trace every time
        return _count_relus.__wrapped__(apply, tree, avals)


@functools.lru_cache(maxsize=64)
def _count_relus(apply: Callable, tree: Any, avals: tuple[jax.ShapeDtypeStruct, ...]) -> int:
    count = [0]

    def run(p, x):
        out, count[0] = _rewrite(apply, _REPLACEMENTS["guided"], p, x)
        return out

    jax.eval_shape(run, *jax.tree.unflatten(tree, avals))
    return count[0]


@dataclasses.dataclass(frozen=True)
class ModifiedApply:
    """``apply`` with every ``jax.nn.relu`` given the backward rule ``rule``: a pure ``(params, x) -> outputs``.

    Equal (and hashing equal) for equal ``(apply, rule)``, so ``jax.jit`` reuses its compilation
    when a new instance wraps the same apply. Raises ``ValueError`` while tracing when ``apply``
    calls no ``jax.nn.relu`` (the "modified" gradient would silently be the plain one).
    """

    apply: Callable
    rule: str = "guided"  # one of RULES, checked with a ValueError naming them

    def __post_init__(self):
        check_choice("rule", self.rule, RULES)

    def __call__(self, params: Any, x: jax.Array) -> jax.Array:
        out, n = _rewrite(self.apply, _REPLACEMENTS[self.rule], params, x)
        if n == 0:
            raise ValueError(NO_RELU_MSG.format(what=f"function {getattr(self.apply, '__name__', self.apply)!r}"))
        return out


def check_relus(model: Model, apply: Callable | None = None) -> Model:
    """The model itself, or a ``ValueError`` naming it when ``apply`` (default ``model.apply``) calls no
    ``jax.nn.relu``; traced abstractly, nothing compiles."""
    model.check_tap("Guided Backprop/Deconvnet")  # an artifact has no ReLUs left to rewrite: say why
    x0 = jax.ShapeDtypeStruct((1, *model.input_spec.shape), jnp.float32)
    if count_relus(model.apply if apply is None else apply, model.params, x0) == 0:
        raise ValueError(NO_RELU_MSG.format(what=f"model {model.name!r}"))
    return model


def core_options(model: Model, options: Mapping[str, Any]) -> dict[str, Any]:
    """Registry hook for the noise tunnel: checks the model's ReLUs before compilation; no core options."""
    check_relus(model)
    return dict(options)


def _rule_method(rule: Rule, name: str, what: str) -> tuple[Callable[..., Attribution], Callable[..., Attribution]]:
    """The public method ``name`` and its pure core: the input "gradient" with ``rule``'s ReLU backward.

    The core's values are ``(N, ...)`` or ``(N, K, ...)`` for ``target="all"``; the method raises
    ``ValueError`` before compilation when the model calls no ``jax.nn.relu``.
    """

    def core(apply: Callable, params: Any, x: Float[Array, " n *features"], target: BoundTarget) -> Attribution:
        _, g, _ = target_and_grad(ModifiedApply(apply, rule), params, x, target)
        return Attribution(g, name, target.name)

    jitted = jax.jit(core, static_argnums=0)

    def fn(
        model: Model | Any,
        x: Batch,
        *,
        target: Any = None,
        labels: Any = None,
        memory_budget: int | None = None,
        show_progress: bool = False,
    ) -> Attribution:
        check_relus(as_model(model))
        p = prepare(model, x, target=target, labels=labels, allow_all=True, memory_budget=memory_budget)
        return common.to_attribution(
            common.run_rows(jitted, p, memory_budget=memory_budget, show_progress=show_progress)
        )

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"{what} (module docstring has the rules and references)."
    core.__name__ = core.__qualname__ = f"{name}_core"
    core.__doc__ = f"Pure {name}: the input gradient with the {rule!r} ReLU backward, ``(N, [K,] ...)``."
    return fn, core


guided_backprop, guided_backprop_core = _rule_method(
    "guided",
    "guided_backprop",
    "Guided Backpropagation: the input gradient with each ReLU passing only positive gradient where its input was "
    "positive",
)
deconvnet, deconvnet_core = _rule_method(
    "deconvnet", "deconvnet", "Deconvnet: the input gradient with each ReLU passing the positive part of its gradient"
)

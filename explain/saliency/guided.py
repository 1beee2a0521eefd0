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
from collections.abc import Callable, Mapping
from typing import Any, Literal

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
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


_REPLACEMENTS = {
    "guided": _relu_with(lambda x, g: jnp.where((x > 0) & (g > 0), g, 0)),
    "deconvnet": _relu_with(lambda x, g: jnp.maximum(g, 0)),
}


def _is_relu(eqn: jcore.JaxprEqn) -> bool:
    if eqn.primitive.name != "custom_jvp_call":
        return False
    inner = eqn.params["call_jaxpr"].jaxpr.eqns
    return len(inner) == 1 and inner[0].primitive.name in ("jit", "pjit") and inner[0].params.get("name") == "relu"


def _eval(jaxpr: jcore.Jaxpr, consts: list, args: list, relu: Callable, count: list[int]) -> list:
    """``jax.core.eval_jaxpr`` with each ``jax.nn.relu`` replaced by ``relu``; recurses into ``jit`` calls."""
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
            outs = [relu(invals[0])]
        elif eqn.primitive.name in ("jit", "pjit"):
            sub = eqn.params["jaxpr"]
            outs = _eval(sub.jaxpr, sub.consts, invals, relu, count)
        else:
            # as jax.core.eval_jaxpr (jax >= 0.7: get_bind_params returns only the params)
            with eqn.ctx.manager:
                outs = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
            outs = outs if eqn.primitive.multiple_results else [outs]
        for v, val in zip(eqn.outvars, outs):
            env[v] = val
    return [read(v) for v in jaxpr.outvars]


def _rewrite(apply: Callable, relu: Callable, params: Any, x: Any) -> tuple[Any, int]:
    """``(apply(params, x) with every jax.nn.relu replaced by relu, how many were replaced)``."""
    count = [0]
    closed, out_shape = jax.make_jaxpr(apply, return_shape=True)(params, x)
    outs = _eval(closed.jaxpr, closed.consts, jax.tree.leaves((params, x)), relu, count)
    return jax.tree.unflatten(jax.tree.structure(out_shape), outs), count[0]


def count_relus(apply: Callable, params: Any, x: Any) -> int:
    """How many ``jax.nn.relu`` calls the rewrite would replace (traced abstractly: nothing runs or compiles).

    ``x`` may be an array or a ``jax.ShapeDtypeStruct``.
    """
    count = [0]

    def run(p, x):
        out, count[0] = _rewrite(apply, _REPLACEMENTS["guided"], p, x)
        return out

    jax.eval_shape(run, params, x)
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

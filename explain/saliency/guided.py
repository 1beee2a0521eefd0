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

References:
  Springenberg, Dosovitskiy, Brox, Riedmiller. Striving for Simplicity: The All
  Convolutional Net. ICLR workshop 2015.
  Zeiler, Fergus. Visualizing and Understanding Convolutional Networks. ECCV 2014.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.extend.core as jcore
import jax.numpy as jnp

from explain.model import Model
from explain.saliency import _common as common
from explain.saliency import gradient as gradient_lib
from explain.saliency.attribution import Attribution

Rule = Literal["guided", "deconvnet"]
RULES: tuple[str, ...] = ("guided", "deconvnet")
NO_RELU_MSG = (
    "found no jax.nn.relu in model {name!r}; guided backprop and deconvnet rewrite the backward rule of "
    "jax.nn.relu (flax.linen.relu / nnx.relu are the same function). Models using jnp.maximum(x, 0) or other "
    "activations are not supported."
)


@jax.custom_vjp
def _guided_relu(x):
    return jnp.maximum(x, 0)


def _relu_fwd(x):
    return jnp.maximum(x, 0), x


def _guided_bwd(x, g):
    return (jnp.where((x > 0) & (g > 0), g, 0),)


_guided_relu.defvjp(_relu_fwd, _guided_bwd)


@jax.custom_vjp
def _deconv_relu(x):
    return jnp.maximum(x, 0)


def _deconv_bwd(x, g):
    return (jnp.maximum(g, 0),)


_deconv_relu.defvjp(_relu_fwd, _deconv_bwd)
_REPLACEMENTS = {"guided": _guided_relu, "deconvnet": _deconv_relu}


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


def count_relus(apply: Callable, params: Any, x: jax.Array) -> int:
    """How many ``jax.nn.relu`` calls the rewrite would replace (traced abstractly, nothing runs)."""
    count = [0]
    closed = jax.make_jaxpr(apply)(params, x)
    jax.eval_shape(
        lambda *a: _eval(closed.jaxpr, closed.consts, list(a), _guided_relu, count), *jax.tree.leaves((params, x))
    )
    return count[0]


@functools.cache
def rewritten_apply(apply: Callable, rule: Rule) -> Callable:
    """``apply`` with every ``jax.nn.relu`` given the ``rule`` backward pass (cached per ``(apply, rule)``)."""
    relu = _REPLACEMENTS[rule]

    def new_apply(params, x):
        closed, out_shape = jax.make_jaxpr(apply, return_shape=True)(params, x)
        outs = _eval(closed.jaxpr, closed.consts, jax.tree.leaves((params, x)), relu, [0])
        return jax.tree.unflatten(jax.tree.structure(out_shape), outs)

    return new_apply


def _check_relus(r: common.Resolved) -> common.Resolved:
    x0 = jax.ShapeDtypeStruct((1, *r.x.shape[1:]), r.x.dtype)
    if count_relus(r.model.apply, r.model.params, x0) == 0:
        raise ValueError(NO_RELU_MSG.format(name=r.model.name))
    return r


def _rewritten(r: common.Resolved, rule: Rule) -> common.Resolved:
    model = type(r.model)(
        apply=rewritten_apply(r.model.apply, rule),
        params=r.model.params,
        input_spec=r.model.input_spec,
        output_kind=r.model.output_kind,
        class_names=r.model.class_names,
        tap=r.model.tap,  # kept for layer_shapes (the chunk-size estimate); never differentiated here
        layer_names=r.model.layer_names,
        name=r.model.name,
    )
    return r._replace(model=model)


def modified_backprop_values(r: common.Resolved, rule: Rule, *, memory_budget: int | None = None) -> jax.Array:
    """The modified-backprop map of an already resolved batch (shared with Guided Grad-CAM)."""
    return gradient_lib.batched_gradient(_rewritten(r, rule), memory_budget=memory_budget)


def modified_backprop(
    model: Model | Any,
    x: Any,
    *,
    rule: Rule = "guided",
    target: Any = None,
    labels: Any = None,
    memory_budget: int | None = None,
) -> Attribution:
    """The input "gradient" with each ReLU's backward rule replaced (module docstring has the rules).

    Args:
      model: a :class:`~explain.model.Model` (contract in :mod:`explain.model`) whose ReLUs are ``jax.nn.relu``.
      x: ``(N, *input_shape)``.
      rule: ``"guided"`` (Guided Backprop) or ``"deconvnet"``.
      target: see :mod:`explain.targets`, or ``"all"``.

    Returns:
      :class:`Attribution` shaped like ``x``.

    Raises:
      ValueError: unknown rule, or no ``jax.nn.relu`` in the model.
    """
    common.check_choice("rule", rule, RULES)
    r = common.resolve(model, x, target, labels, freeze=False)
    r = common.freeze_pred(_check_relus(r))
    g = modified_backprop_values(r, rule, memory_budget=memory_budget)
    return Attribution(g, "guided_backprop" if rule == "guided" else "deconvnet", r.name)


def guided_backprop(model: Model | Any, x: Any, **options: Any) -> Attribution:
    """Guided Backpropagation (Springenberg et al. 2015). Options as :func:`modified_backprop`."""
    return modified_backprop(model, x, rule="guided", **options)


def deconvnet(model: Model | Any, x: Any, **options: Any) -> Attribution:
    """Deconvnet (Zeiler & Fergus 2014). Options as :func:`modified_backprop`."""
    return modified_backprop(model, x, rule="deconvnet", **options)

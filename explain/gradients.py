"""The chain-rule primitive: input gradients, layer gradients and Hessian-vector products.

Every method in `explain` is built on these. The pure functions
(:func:`target_and_grad`, :func:`target_and_layer_grad`) are meant to be
composed inside a method's own ``jax.jit``; the public wrappers validate
input, resolve the target, and call a compiled function cached per
``(model, target function)`` (``jax.jit`` then caches per shape).

Because samples do not interact (see :mod:`explain.model`), the gradient of
``sum_i target_i`` with respect to the batch is the stack of per-sample
gradients, so one ``jax.vjp`` with a cotangent of ones serves the whole batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from explain import targets as targets_lib
from explain.model import Model, as_model
from explain.targets import TargetFn

# Keyed on the model's apply and the target function: a new lambda per call
# would otherwise grow the cache without bound (e.g. on every dashboard rerun).
_CACHE_SIZE = 128


class Gradients(NamedTuple):
    """``values``: ∂target/∂x, shape of ``x``; ``outputs``: ``(N, K)``; ``target_values``: ``(N,)``."""

    values: jax.Array
    outputs: jax.Array
    target_values: jax.Array


class LayerGradients(NamedTuple):
    """``activations`` hₗ and ``gradients`` ∂target/∂hₗ, both ``(N, *layer_shape)``."""

    activations: jax.Array
    gradients: jax.Array
    outputs: jax.Array
    target_values: jax.Array


def target_and_grad(
    apply: Callable, target_fn: TargetFn, params: Any, x: jax.Array, aux: Any
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Pure: ``(target (N,), ∂target/∂x (N, ...), outputs (N, K))`` with one ``jax.vjp``."""

    def f(x):
        out = apply(params, x)
        return target_fn(out, aux), out

    t, vjp, out = jax.vjp(f, x, has_aux=True)
    (g,) = vjp(jnp.ones_like(t))
    return t, g, out


def target_and_layer_grad(
    tap: Callable, target_fn: TargetFn, params: Any, x: jax.Array, aux: Any, layer: str, layer_shape: tuple[int, ...]
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Pure: ``(target, hₗ, ∂target/∂hₗ, outputs)``; the gradient is taken at a zero delta on hₗ."""
    delta0 = jnp.zeros((x.shape[0], *layer_shape), x.dtype)

    def f(delta):
        out, acts = tap(params, x, {layer: delta})
        return target_fn(out, aux), (out, acts[layer])

    t, vjp, (out, act) = jax.vjp(f, delta0, has_aux=True)
    (g,) = vjp(jnp.ones_like(t))
    return t, act, g, out


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compiled_input_grad(apply: Callable, target_fn: TargetFn):
    return jax.jit(functools.partial(target_and_grad, apply, target_fn))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compiled_layer_grad(tap: Callable, target_fn: TargetFn, layer: str, layer_shape: tuple[int, ...]):
    return jax.jit(functools.partial(target_and_layer_grad, tap, target_fn, layer=layer, layer_shape=layer_shape))


def target_hvp(apply: Callable, target_fn: TargetFn, params: Any, x: jax.Array, v: jax.Array, aux: Any) -> jax.Array:
    """Pure: per-sample ``H_i v_i`` with ``H_i = ∂²target_i/∂x_i²`` (forward over reverse: ``jvp`` of the gradient).

    Samples do not interact, so one ``jvp`` of the batch gradient serves them all.
    """

    def grad_fn(x):
        return target_and_grad(apply, target_fn, params, x, aux)[1]

    return jax.jvp(grad_fn, (x,), (v,))[1]


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compiled_hvp(apply: Callable, target_fn: TargetFn):
    return jax.jit(functools.partial(target_hvp, apply, target_fn))


def prepare(model: Model | Any, x: Any, target: Any, labels: Any = None):
    """Validates ``x`` and resolves ``target``: ``(model, x, target_fn, aux, target_name)``.

    Every public method starts here, so bad input raises before compilation.
    """
    model = as_model(model)
    x = model.input_spec.validate(x)
    fn, aux, name = targets_lib.resolve(model, target, x.shape[0], labels=labels)
    return model, x, fn, aux, name


def input_gradients(model: Model, x: Any, *, target: Any = None, labels: Any = None) -> Gradients:
    """∂target/∂x for a whole batch with one backward pass.

    Args:
      model: a :class:`~explain.model.Model` (or a bundle with ``.model``).
      x: ``(N, *input_spec.shape)`` floating array.
      target: see :mod:`explain.targets`; default the predicted class's logit.
      labels: ``(N,)`` labels when ``target="loss"``.

    Returns:
      :class:`Gradients` with ``values`` shaped like ``x``.

    Example:
      >>> g = explain.input_gradients(m, x, target="pred").values
    """
    model, x, fn, aux, _ = prepare(model, x, target, labels)
    t, g, out = _compiled_input_grad(model.apply, fn)(model.params, x, aux)
    return Gradients(values=g, outputs=out, target_values=t)


def layer_gradients(model: Model, x: Any, layer: str, *, target: Any = None, labels: Any = None) -> LayerGradients:
    """Activations of a named layer and ∂target/∂(those activations), without editing the model.

    Args:
      layer: one of ``model.layer_names``.
      (others as :func:`input_gradients`)

    Raises:
      ValueError: unknown layer, naming the known ones.
    """
    model = as_model(model)
    model.check_layer(layer)
    model, x, fn, aux, _ = prepare(model, x, target, labels)
    run = _compiled_layer_grad(model.tap, fn, layer, model.layer_shapes[layer])
    t, act, g, out = run(model.params, x, aux)
    return LayerGradients(activations=act, gradients=g, outputs=out, target_values=t)


def hvp(model: Model, x: Any, v: Any, *, target: Any = None, labels: Any = None) -> jax.Array:
    """Per-sample Hessian-vector products ``H_i v_i`` with ``H_i = ∂²target_i/∂x_i²``.

    Forward-over-reverse (``jax.jvp`` of the gradient), one pass per batch.

    Args:
      x, v: ``(N, *input_spec.shape)``; ``v`` is the direction per sample.

    Returns:
      ``(N, *input_spec.shape)``.
    """
    model, x, fn, aux, _ = prepare(model, x, target, labels)
    v = model.input_spec.validate(v, name="v", check_range=False)
    if v.shape != x.shape:
        raise ValueError(f"expected v of the same shape as x {tuple(x.shape)}, got {tuple(v.shape)}")
    return _compiled_hvp(model.apply, fn)(model.params, x, v.astype(x.dtype), aux)

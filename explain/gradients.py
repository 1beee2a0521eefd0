"""The chain-rule primitive and the prepared batch every method consumes.

* :func:`prepare` validates ``x`` and binds the target once, on the host,
  before anything is compiled, and returns a :class:`Prepared` batch.
* :func:`target_and_grad` and :func:`target_and_layer_grad` are the pure
  primitive: the only ``jax.vjp`` in ``explain``. Every method's core calls
  them inside its own ``jax.jit``.
* :func:`input_gradients`, :func:`layer_gradients`, :func:`hvp` are the public
  wrappers: prepare, chunk (:mod:`explain.chunking`), call a compiled core.

Because samples do not interact (see :mod:`explain.model`), the gradient of
``Σ_i target_i`` with respect to the batch is the stack of per-sample
gradients, so one ``jax.vjp`` with the cotangent ``∂Σt/∂outputs`` serves the
whole batch; for ``target="all"`` the pullback is vmapped over ``K`` one-hot
cotangents and shares one forward pass.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from explain import chunking
from explain import targets as targets_lib
from explain.arrays import Batch
from explain.model import Model, as_model
from explain.results import Result
from explain.targets import BoundTarget


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Prepared:
    """A validated batch and its bound target: what every method, attack and ranking consumes.

    Attributes:
      x: ``(N, *input_shape)``, dtype per :func:`explain.checks.input_dtype`.
      target: the target bound to these ``N`` rows (a predicted class already frozen at ``x``).
      model: the model (static: hashed by identity).
    """

    x: Batch
    target: BoundTarget
    model: Model = dataclasses.field(metadata=dict(static=True))

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def rows(self, idx: Any) -> Prepared:
        """The batch of rows ``idx`` (an index array or a slice), target sliced alongside."""
        return dataclasses.replace(self, x=self.x[idx], target=self.target.rows(idx))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Gradients(Result):
    """``values``: ∂target/∂x, shape of ``x``; ``outputs``: ``(N, K)``; ``target_values``: ``(N,)``."""

    values: Float[Array | np.ndarray, " n *features"]
    outputs: Float[Array | np.ndarray, " n k"]
    target_values: Float[Array | np.ndarray, " n"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LayerGradients(Result):
    """``activations`` hₗ and ``gradients`` ∂target/∂hₗ, both ``(N, *layer_shape)``."""

    activations: Float[Array | np.ndarray, " n *layer"]
    gradients: Float[Array | np.ndarray, " n *layer"]
    outputs: Float[Array | np.ndarray, " n k"]
    target_values: Float[Array | np.ndarray, " n"]


# ----------------------------------------------------------------------------- the primitive (pure)


def _target_vjp(f: Callable, primal: jax.Array, target: BoundTarget) -> tuple[jax.Array, jax.Array, jax.Array, Any]:
    """``(t, ∂Σt/∂primal, outputs, aux)`` for ``f(primal) -> (outputs (R, K), aux)``: the one ``jax.vjp``.

    With ``target.all_outputs`` the gradient is ``(R, K, ...)`` (one backward
    pass per output, vmapped over one-hot cotangents) and ``t`` the outputs.
    """
    out, pullback, aux = jax.vjp(f, primal, has_aux=True)
    if target.all_outputs:
        k = out.shape[1]
        cot = jnp.broadcast_to(jnp.eye(k, dtype=out.dtype)[:, None, :], (k, *out.shape))  # (K, R, K)
        (g,) = jax.vmap(pullback)(cot)  # (K, R, ...)
        return out, jnp.moveaxis(g, 0, 1), out, aux
    (_, t), cot = jax.value_and_grad(lambda o: (lambda v: (v.sum(), v))(target(o)), has_aux=True)(out)
    (g,) = pullback(cot)
    return t, g, out, aux


def target_and_grad(
    apply: Callable, params: Any, x: Float[Array, " r *features"], target: BoundTarget
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Pure: ``(target (R,), ∂target/∂x (R, ...), outputs (R, K))`` for a batch of rows.

    With ``target="all"``: ``(outputs (R, K), ∂outputs/∂x (R, K, ...), outputs)``.
    """
    t, g, out, _ = _target_vjp(lambda x: (apply(params, x), None), x, target)
    return t, g, out


def target_and_layer_grad(
    tap: Callable, params: Any, x: Float[Array, " r *features"], target: BoundTarget, *, layer: str, layer_shape: tuple
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Pure: ``(target, hₗ, ∂target/∂hₗ, outputs)``; the gradient is taken at a zero delta on hₗ.

    ``∂target/∂hₗ`` is ``(R, *layer_shape)``, or ``(R, K, *layer_shape)`` with ``target="all"``.
    """
    delta0 = jnp.zeros((x.shape[0], *layer_shape), x.dtype)

    def f(delta):
        out, acts = tap(params, x, {layer: delta})
        return out, acts[layer]

    t, g, out, act = _target_vjp(f, delta0, target)
    return t, act, g, out


def target_hvp(
    apply: Callable, params: Any, x: Float[Array, " r *features"], v: Float[Array, " r *features"], target: BoundTarget
) -> Float[Array, " r *features"]:
    """Pure: per-sample ``H_i v_i`` with ``H_i = ∂²target_i/∂x_i²`` (forward over reverse: ``jvp`` of the gradient).

    Samples do not interact, so one ``jvp`` of the batch gradient serves them all.
    """
    return jax.jvp(lambda x: target_and_grad(apply, params, x, target)[1], (x,), (v,))[1]


def forward_outputs(apply: Callable, params: Any, x: Float[Array, " r *features"]) -> Float[Array, " r k"]:
    """Pure: the model's outputs ``(R, K)``."""
    return apply(params, x)


# Compiled once per static (function, options): jax.jit keeps its own bounded cache per static argument.
_forward = jax.jit(forward_outputs, static_argnums=0)
_grad = jax.jit(target_and_grad, static_argnums=0)
_layer_grad = jax.jit(target_and_layer_grad, static_argnums=0, static_argnames=("layer", "layer_shape"))
_hvp = jax.jit(target_hvp, static_argnums=0)


# ----------------------------------------------------------------------------- the prepared batch


def forward(model: Model | Any, x: Any, *, memory_budget: int | None = None) -> np.ndarray:
    """The model's outputs ``(N, K)`` for a validated batch, chunked (a forward pass needs ~1/3 of a backward row)."""
    model = as_model(model)
    rows = chunking.FORWARD_ROWS_PER_ROW * chunking.rows_per_chunk(model, memory_budget=memory_budget)
    return chunking.map_rows(functools.partial(_forward, model.apply, model.params), x, batch=rows)


@functools.lru_cache(maxsize=128)
def _target_shape(model: Model, fn: Any, name: str, x_shape: tuple[int, ...], x_dtype: Any) -> tuple[int, ...]:
    """The output shape of a user's target on a batch of ``x_shape``, by abstract tracing (nothing compiles)."""
    target = BoundTarget(fn, None, name)
    n = x_shape[0]
    try:
        return tuple(
            jax.eval_shape(
                lambda p, x: target(model.apply(p, x)), model.params, jax.ShapeDtypeStruct(x_shape, x_dtype)
            ).shape
        )
    except (TypeError, AttributeError) as e:
        raise TypeError(f"target {name!r} failed on outputs of shape ({n}, {model.num_outputs}): {e}") from e


def _check_target_shape(model: Model, x: Any, target: BoundTarget) -> None:
    """A user's own target must return one value per sample; the error names the user's ``N``.

    Built-in targets return ``(N,)`` by construction and are not traced (tracing a Flax
    model costs tens of milliseconds per call); a custom one is traced once per shape.
    """
    if not isinstance(target.fn, targets_lib.CustomFn):
        return
    shape = _target_shape(model, target.fn, target.name, tuple(x.shape), np.dtype(x.dtype))
    if shape != (x.shape[0],):
        raise ValueError(
            f"expected target {target.name!r} to return one value per sample, shape ({x.shape[0]},), got {shape}"
        )


def prepare(
    model: Model | Any,
    x: Any,
    *,
    target: Any = None,
    labels: Any = None,
    allow_all: bool = False,
    memory_budget: int | None = None,
) -> Prepared:
    """Validates ``x`` and binds ``target`` once, before any compilation: the start of every public function.

    A predicted-class target (``None`` or ``"pred"`` on a classifier) is frozen
    to the class predicted at ``x`` (one chunked forward pass, after every check):
    along an integration path, under noise or during an attack the argmax may
    move, and explaining a moving target breaks completeness (Captum likewise
    fixes the target first).

    Args:
      model: a :class:`~explain.model.Model` or a bundle with ``.model``.
      x: ``(N, *input_spec.shape)``; see :func:`explain.checks.input_dtype` for dtypes.
      target: see :mod:`explain.targets`; ``"all"`` only with ``allow_all=True``.
      labels: ``(N,)`` labels for ``target="loss"``.

    Raises:
      ValueError / TypeError: bad shape, dtype, NaN/inf, class out of range, labels
      missing or malformed, a target returning the wrong shape.
    """
    model = as_model(model)
    x = model.input_spec.validate(x)
    bound = targets_lib.resolve(model, target, x.shape[0], labels=labels, allow_all=allow_all)
    _check_target_shape(model, x, bound)
    if bound.fn in targets_lib.FROZEN:
        pred = np.argmax(forward(model, x, memory_budget=memory_budget), axis=1).astype(np.int32)
        bound = BoundTarget(targets_lib.FROZEN[bound.fn], jnp.asarray(pred), bound.name)
    return Prepared(x=x, target=bound, model=model)


# ----------------------------------------------------------------------------- public wrappers


def input_gradients(
    model: Model | Any,
    x: Batch,
    *,
    target: Any = None,
    labels: Any = None,
    memory_budget: int | None = None,
) -> Gradients:
    """∂target/∂x for a whole batch, one backward pass per chunk of rows.

    Args:
      model: a :class:`~explain.model.Model` (or a bundle with ``.model``).
      x: ``(N, *input_spec.shape)`` floating array.
      target: see :mod:`explain.targets`; default the predicted class's logit.
      labels: ``(N,)`` labels when ``target="loss"``.
      memory_budget: bytes per compiled call (default :data:`explain.chunking.MEMORY_BUDGET`).

    Returns:
      :class:`Gradients` with ``values`` shaped like ``x``.

    Example:
      >>> g = explain.input_gradients(m, x, target="pred").values
    """
    p = prepare(model, x, target=target, labels=labels, memory_budget=memory_budget)
    rows = chunking.rows_per_chunk(p.model, memory_budget=memory_budget, dtype=p.x.dtype)
    t, g, out = chunking.map_rows(functools.partial(_grad, p.model.apply, p.model.params), p.x, p.target, batch=rows)
    return chunking.to_device(Gradients(values=g, outputs=out, target_values=t))


def layer_gradients(
    model: Model | Any,
    x: Batch,
    *,
    layer: str,
    target: Any = None,
    labels: Any = None,
    memory_budget: int | None = None,
) -> LayerGradients:
    """Activations of a named layer and ∂target/∂(those activations), without editing the model.

    Args:
      layer: one of ``model.layer_names``.
      (others as :func:`input_gradients`)

    Raises:
      ValueError: unknown layer, naming the known ones.
    """
    m = as_model(model)
    m.check_layer(layer)
    p = prepare(m, x, target=target, labels=labels, memory_budget=memory_budget)
    rows = chunking.rows_per_chunk(p.model, memory_budget=memory_budget, dtype=p.x.dtype)
    run = functools.partial(_layer_grad, m.tap, m.params, layer=layer, layer_shape=m.layer_shapes[layer])
    t, act, g, out = chunking.map_rows(run, p.x, p.target, batch=rows)
    return chunking.to_device(LayerGradients(activations=act, gradients=g, outputs=out, target_values=t))


def hvp(
    model: Model | Any,
    x: Batch,
    *,
    v: Batch,
    target: Any = None,
    labels: Any = None,
    memory_budget: int | None = None,
) -> Float[Array, " n *features"]:
    """Per-sample Hessian-vector products ``H_i v_i`` with ``H_i = ∂²target_i/∂x_i²``.

    Forward-over-reverse (``jax.jvp`` of the gradient), one pass per chunk of rows.

    Args:
      x, v: ``(N, *input_spec.shape)``; ``v`` is the direction per sample.

    Returns:
      ``(N, *input_spec.shape)``.
    """
    p = prepare(model, x, target=target, labels=labels, memory_budget=memory_budget)
    v = p.model.input_spec.validate(v, name="v", check_range=False)
    if v.shape != p.x.shape:
        raise ValueError(f"expected v of the same shape as x {tuple(p.x.shape)}, got {tuple(v.shape)}")
    rows = chunking.rows_per_chunk(p.model, memory_budget=memory_budget, factor=chunking.HVP_FACTOR, dtype=p.x.dtype)
    run = functools.partial(_hvp, p.model.apply, p.model.params)
    return chunking.to_device(
        chunking.map_rows(lambda x, v, t: run(x, v.astype(x.dtype), t), p.x, v, p.target, batch=rows)
    )

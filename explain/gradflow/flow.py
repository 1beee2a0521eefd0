"""Per-layer gradient flow: norms of ∂L/∂hₗ and ∂L/∂Wₗ over a batch, and dead units (see :mod:`explain.gradflow`).

Activation gradients ``∂t/∂hₗ`` come from :func:`explain.gradients.target_and_layer_grad`
(every layer at once through :class:`~explain.gradflow.layers.StackedTap`).
Gradients with respect to the *parameters* are not input or layer gradients;
:func:`param_grads` is the one place in ``explain`` that differentiates with
respect to parameters.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from explain import chunking
from explain.arrays import Batch
from explain.checks import check_float
from explain.gradflow.layers import (
    StackedTap,
    as_param_tree,
    group_norms,
    param_groups,
    prepare_layers,
    split_float,
    tap_apply,
)
from explain.model import Model
from explain.results import Result
from explain.targets import BoundTarget

# ----------------------------------------------------------------------------- pure


def param_grads(
    apply: Callable,
    params: Any,
    x: Float[Array, " r *features"],
    target: BoundTarget,
    weights: Float[Array, " r"] | None = None,
) -> tuple[jax.Array, list[jax.Array]]:
    """Pure: ``(t (R,), ∂(Σᵢ wᵢ tᵢ)/∂W)``, the gradient of the weighted target sum with respect to the parameters.

    THE one differentiation with respect to parameters in ``explain`` (every
    input and layer gradient goes through :func:`explain.gradients.target_and_grad`
    / :func:`~explain.gradients.target_and_layer_grad` instead): one ``jax.vjp``
    over the floating leaves of ``params`` (integer leaves such as step counters
    are not differentiable), with cotangent ``w`` (default ones). Samples do not
    interact, so ``w = eᵢ`` gives sample ``i``'s own gradient and ``w = 1/N`` the
    gradient of the batch mean an optimiser sees.

    Returns:
      ``t`` and one gradient per floating leaf, in the order of
      :func:`explain.gradflow.layers.split_float`.
    """
    floats, rebuild = split_float(params)
    t, pullback = jax.vjp(lambda fl: target(apply(rebuild(fl), x)), floats)
    (g,) = pullback(jnp.ones_like(t) if weights is None else weights.astype(t.dtype))
    return t, g


def flow_grads(
    tap: Callable,
    params: Any,
    x: Float[Array, " r *features"],
    target: BoundTarget,
    *,
    layers: tuple[str, ...],
    layer_shapes: tuple[tuple[int, ...], ...],
) -> tuple[jax.Array, dict[str, jax.Array], Any]:
    """Pure: ``(t (R,), {layer: ∂Σtᵢ/∂hₗ (R, *shape)}, ∂Σtᵢ/∂params)``.

    Samples do not interact, so row ``i`` of each activation gradient is
    ``∂tᵢ/∂h_{l,i}``; the parameter gradient (in the structure of ``params``,
    ``None`` at non-floating leaves) is that of the batch sum.

    Args:
      tap: ``model.tap``.
      layers: layer names; ``layer_shapes`` their per-sample activation shapes, aligned.
    """
    t, g_acts = StackedTap(tap, layers, layer_shapes).grads(params, x, target)
    _, g_params = param_grads(functools.partial(tap_apply, tap), params, x, target)
    return t, dict(zip(layers, g_acts)), as_param_tree(params, g_params)


def flow_rows(
    tap: Callable,
    params: Any,
    x: Float[Array, " r *features"],
    target: BoundTarget,
    *,
    layers: tuple[str, ...],
    layer_shapes: tuple[tuple[int, ...], ...],
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Pure, per row: ``(t (R,), ‖∂tᵢ/∂h_{l,i}‖ (R, L), ‖∂tᵢ/∂Wₗ‖ (R, L))``.

    The per-sample parameter gradient is :func:`param_grads` of one row, vmapped over rows.
    """
    n = x.shape[0]
    t, g_acts = StackedTap(tap, layers, layer_shapes).grads(params, x, target)
    act_norms = jnp.stack([jnp.sqrt(jnp.sum(g.reshape(n, -1) ** 2, axis=1)) for g in g_acts], axis=1)
    groups = param_groups(params, layers)
    apply = functools.partial(tap_apply, tap)

    def one(xi, ti):  # one sample as a batch of one row
        return group_norms(param_grads(apply, params, xi, ti)[1], groups)

    one_row = jax.tree_util.tree_map(lambda a: a[:, None], target)
    return t, act_norms, jax.vmap(one)(x[:, None], one_row)


def flow_sums(
    tap: Callable,
    params: Any,
    rows: tuple[jax.Array, BoundTarget],
    weights: Float[Array, " r"],
    *,
    layers: tuple[str, ...],
    layer_shapes: tuple[tuple[int, ...], ...],
    dead_tol: float,
) -> tuple[jax.Array, jax.Array, list[jax.Array]]:
    """Pure, summed over rows with ``weights`` (0 on padding), for :func:`explain.chunking.accumulate`.

    Returns ``(unit counts (Σ dim hₗ,), channel counts (Σ Cₗ,), Σᵢ wᵢ ∂tᵢ/∂W)``: per unit
    (and per channel, the last axis), the number of samples whose gradient there
    exceeds ``dead_tol`` (for a channel: anywhere in it); a count of 0 is a dead unit.
    """
    x, target = rows
    n = x.shape[0]
    _, g_acts = StackedTap(tap, layers, layer_shapes).grads(params, x, target)
    w = weights.astype(jnp.int32)
    alive = [jnp.abs(g) > dead_tol for g in g_acts]
    per_channel = [jnp.any(a.reshape(n, -1, a.shape[-1] if a.ndim > 1 else 1), axis=1) for a in alive]
    units = jnp.concatenate([jnp.tensordot(w, a.reshape(n, -1).astype(jnp.int32), axes=1) for a in alive])
    channels = jnp.concatenate([jnp.tensordot(w, c.astype(jnp.int32), axes=1) for c in per_channel])
    _, g_params = param_grads(functools.partial(tap_apply, tap), params, x, target, weights)
    return units, channels, g_params


_LAYER_STATIC = ("layers", "layer_shapes")
_flow_rows = jax.jit(flow_rows, static_argnums=0, static_argnames=_LAYER_STATIC)
_flow_sums = jax.jit(flow_sums, static_argnums=0, static_argnames=(*_LAYER_STATIC, "dead_tol"))


# ----------------------------------------------------------------------------- result


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class GradientFlow(Result):
    """Per-layer gradient flow for one batch; ``L = len(layers)``.

    Attributes:
      layers: layer names in forward order (static).
      activation_grad_norms: ``(N, L)``, ``‖∂tᵢ/∂h_{l,i}‖`` per sample ``i`` (``tᵢ`` the per-sample target,
        e.g. the loss; the batch-mean loss's gradient is this divided by ``N``).
      param_grad_norms: ``(N, L)``, ``‖∂tᵢ/∂Wₗ‖`` per sample; NaN for a layer without parameters.
      batch_param_grad_norms: ``(L,)``, ``‖∂(mean_i tᵢ)/∂Wₗ‖``, the gradient an optimiser sees.
      dead_fraction: ``(L,)``, share of a layer's units (per-sample activation entries) whose
        gradient is zero (``≤ dead_tol``) for every sample of the batch.
      dead_channel_fraction: ``(L,)``, the same for whole channels (last axis).
      target_values: ``(N,)``; target_name: what was differentiated (static).
    """

    layers: tuple[str, ...] = dataclasses.field(metadata=dict(static=True))
    activation_grad_norms: Float[Array | np.ndarray, " n l"]
    param_grad_norms: Float[Array | np.ndarray, " n l"]
    batch_param_grad_norms: Float[Array | np.ndarray, " l"]
    dead_fraction: Float[Array | np.ndarray, " l"]
    dead_channel_fraction: Float[Array | np.ndarray, " l"]
    target_values: Float[Array | np.ndarray, " n"]
    target_name: str = dataclasses.field(metadata=dict(static=True))

    @property
    def activation_mean(self) -> np.ndarray:
        return np.asarray(self.activation_grad_norms).mean(axis=0)

    @property
    def activation_std(self) -> np.ndarray:
        return np.asarray(self.activation_grad_norms).std(axis=0)

    @property
    def param_mean(self) -> np.ndarray:
        return np.asarray(self.param_grad_norms).mean(axis=0)

    @property
    def param_std(self) -> np.ndarray:
        return np.asarray(self.param_grad_norms).std(axis=0)

    def rows(self) -> list[dict[str, Any]]:
        """One plain dict per layer (for tables and CSV)."""
        cols = {
            "act_grad_mean": self.activation_mean,
            "act_grad_std": self.activation_std,
            "param_grad_mean": self.param_mean,
            "param_grad_std": self.param_std,
            "batch_param_grad": np.asarray(self.batch_param_grad_norms),
            "dead_fraction": np.asarray(self.dead_fraction),
            "dead_channel_fraction": np.asarray(self.dead_channel_fraction),
        }
        return [{"layer": name, **{k: float(v[i]) for k, v in cols.items()}} for i, name in enumerate(self.layers)]


# ----------------------------------------------------------------------------- public


def gradient_flow(
    model: Model | Any,
    x: Batch,
    *,
    target: Any = None,
    labels: Any = None,
    layers: str | Sequence[str] | None = None,
    dead_tol: float = 0.0,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> GradientFlow:
    """Per-layer norms of ∂L/∂hₗ and ∂L/∂Wₗ over a batch, and the share of dead units.

    Two chunked passes over the rows (:mod:`explain.chunking`): per row, one
    backward pass to every layer (a zero delta on each) and the per-sample
    parameter gradient (:func:`param_grads` vmapped over rows); then, summed over
    the rows, the dead-unit counts and the batch parameter gradient. Parameters
    are grouped by layer path (``block1`` holds ``block1/conv``'s kernel and bias).

    Args:
      model: a :class:`~explain.model.Model` with taps (``from_linen`` / ``from_nnx``).
      x: ``(N, *input_spec.shape)``.
      target: see :mod:`explain.targets` (not ``"all"``); default the loss when ``labels`` are
        given, else the model's default (the predicted class, frozen at ``x``).
      labels: ``(N,)`` labels for the loss.
      layers: names from ``model.layer_names``; default the top-level layers.
      dead_tol: a unit is dead when ``|∂tᵢ/∂h| ≤ dead_tol`` for every sample.
      memory_budget: bytes per compiled call (default :data:`explain.chunking.MEMORY_BUDGET`);
        the per-sample parameter gradients count toward it.
      show_progress: a progress bar for long calls.

    Returns:
      :class:`GradientFlow`.

    Raises:
      ValueError: unknown layer (naming the known ones), bad ``x``, labels or target, negative ``dead_tol``.

    Example:
      >>> flow = explain.gradient_flow(m, x, labels=y)
      >>> flow.rows()[0]["act_grad_mean"]
    """
    dead_tol = check_float("dead_tol", dead_tol)
    chunking.check_budget(memory_budget)
    p, names, shapes = prepare_layers(
        model, x, target=target, labels=labels, layers=layers, memory_budget=memory_budget
    )
    m = p.model
    # A row's per-sample parameter gradient (and its temporaries) weighs on the budget like extra rows.
    param_bytes = 3 * np.dtype(p.x.dtype).itemsize * sum(g.size for g in split_float(m.params)[0])
    factor = 1 + math.ceil(param_bytes / chunking.row_bytes(m, p.x.dtype))
    rows = chunking.rows_per_chunk(m, memory_budget=memory_budget, factor=factor, dtype=p.x.dtype)
    static = dict(layers=names, layer_shapes=shapes)
    t, act_norms, param_norms = chunking.map_rows(
        functools.partial(_flow_rows, m.tap, m.params, **static), p.x, p.target,
        batch=rows, show_progress=show_progress, desc="gradient flow",
    )  # fmt: skip
    sums = functools.partial(_flow_sums, m.tap, m.params, **static, dead_tol=dead_tol)
    with chunking.progress(-(-p.n // rows), enabled=show_progress, desc="dead units") as bar:
        units, channels, g_sum = chunking.accumulate(sums, (p.x, p.target), rows, bar=bar)

    units, channels = np.asarray(units), np.asarray(channels)
    unit_cuts = np.cumsum([math.prod(s) for s in shapes])[:-1]
    channel_cuts = np.cumsum([s[-1] if s else 1 for s in shapes])[:-1]
    dead = [np.mean(u == 0) for u in np.split(units, unit_cuts)]
    dead_ch = [np.mean(c == 0) for c in np.split(channels, channel_cuts)]
    batch_norms = group_norms([g / p.n for g in g_sum], param_groups(m.params, names))
    dtype = act_norms.dtype
    return GradientFlow(
        layers=names,
        activation_grad_norms=jnp.asarray(act_norms),
        param_grad_norms=jnp.asarray(param_norms),
        batch_param_grad_norms=jnp.asarray(batch_norms, dtype),
        dead_fraction=jnp.asarray(dead, dtype),
        dead_channel_fraction=jnp.asarray(dead_ch, dtype),
        target_values=jnp.asarray(t),
        target_name=p.target.name,
    )

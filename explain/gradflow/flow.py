"""Per-layer gradient flow: norms of ∂L/∂hₗ and ∂L/∂Wₗ over a batch, and dead units (see :mod:`explain.gradflow`)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from explain.chunking import chunk_size_for, map_batches
from explain.gradflow.layers import group_norms, param_groups, prepare_layers, split_float
from explain.model import Model
from explain.targets import TargetFn

_PARAM_BUDGET_BYTES = 256 * 2**20


def flow_grads(
    tap: Callable, target_fn: TargetFn, params: Any, x: jax.Array, aux: Any, layers: tuple[str, ...], shapes: dict
) -> tuple[jax.Array, dict[str, jax.Array], Any]:
    """Pure: ``(target (N,), {layer: ∂Σtᵢ/∂hₗ (N, *shape)}, ∂Σtᵢ/∂params)`` with one ``jax.vjp``.

    Samples do not interact, so row ``i`` of each activation gradient is
    ``∂tᵢ/∂h_{l,i}``; the parameter gradient is that of the batch sum.
    """
    deltas0 = {name: jnp.zeros((x.shape[0], *shapes[name]), x.dtype) for name in layers}

    def f(p, deltas):
        out, _ = tap(p, x, deltas)
        return target_fn(out, aux)

    t, vjp = jax.vjp(f, params, deltas0)
    g_params, g_acts = vjp(jnp.ones_like(t))
    return t, g_acts, g_params


@dataclasses.dataclass(frozen=True)
class GradientFlow:
    """Per-layer gradient flow for one batch; ``L = len(layers)``.

    Attributes:
      layers: layer names in forward order.
      activation_grad_norms: ``(N, L)``, ``‖∂tᵢ/∂h_{l,i}‖`` per sample ``i`` (``tᵢ`` the per-sample target,
        e.g. the loss; the batch-mean loss's gradient is this divided by ``N``).
      param_grad_norms: ``(N, L)``, ``‖∂tᵢ/∂Wₗ‖`` per sample; NaN for a layer without parameters.
      batch_param_grad_norms: ``(L,)``, ``‖∂(mean_i tᵢ)/∂Wₗ‖``, the gradient an optimiser sees.
      dead_fraction: ``(L,)``, share of a layer's units (per-sample activation entries) whose
        gradient is zero (``≤ dead_tol``) for every sample of the batch.
      dead_channel_fraction: ``(L,)``, the same for whole channels (last axis).
      target_values: ``(N,)``; target_name: what was differentiated.
    """

    layers: tuple[str, ...]
    activation_grad_norms: jax.Array
    param_grad_norms: jax.Array
    batch_param_grad_norms: jax.Array
    dead_fraction: jax.Array
    dead_channel_fraction: jax.Array
    target_values: jax.Array
    target_name: str

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


@functools.cache
def _compiled_flow(tap: Callable, target_fn: TargetFn, layers: tuple[str, ...], shapes: tuple, dead_tol: float):
    shapes = dict(shapes)

    def run(params, x, aux):
        float_idx, groups = param_groups(params, layers)
        floats, rebuild = split_float(params, float_idx)
        t, g_acts, g_floats = flow_grads(
            lambda fl, x, d: tap(rebuild(fl), x, d), target_fn, floats, x, aux, layers, shapes
        )
        n = x.shape[0]
        act_norms = jnp.stack([jnp.sqrt(jnp.sum(g_acts[name].reshape(n, -1) ** 2, axis=1)) for name in layers], axis=1)
        alive = {name: jnp.abs(g_acts[name]) > dead_tol for name in layers}
        dead = jnp.stack([jnp.mean(~jnp.any(alive[name], axis=0)) for name in layers])
        dead_ch = jnp.stack(
            [jnp.mean(~jnp.any(alive[name].reshape(-1, alive[name].shape[-1]), axis=0)) for name in layers]
        )
        batch_norms = group_norms([g / n for g in g_floats], groups)
        return t, act_norms, batch_norms, dead, dead_ch

    return jax.jit(run)


@functools.cache
def _compiled_sample_param_norms(apply: Callable, target_fn: TargetFn, layers: tuple[str, ...], aux_batched: bool):
    def one(params, xi, auxi):
        float_idx, groups = param_groups(params, layers)
        floats, rebuild = split_float(params, float_idx)
        aux1 = auxi[None] if aux_batched else auxi
        grads = jax.grad(lambda fl: target_fn(apply(rebuild(fl), xi[None]), aux1)[0])(floats)
        return group_norms(grads, groups)

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0 if aux_batched else None)))


def _aux_batched(aux: Any, n: int) -> bool:
    return hasattr(aux, "shape") and getattr(aux, "ndim", 0) >= 1 and aux.shape[0] == n


def gradient_flow(
    model: Model,
    x: Any,
    *,
    labels: Any = None,
    target: Any = None,
    layers: str | Sequence[str] | None = None,
    dead_tol: float = 0.0,
) -> GradientFlow:
    """Per-layer norms of ∂L/∂hₗ and ∂L/∂Wₗ over a batch, and the share of dead units.

    ∂L/∂hₗ comes from one backward pass over the batch (a zero delta on every
    layer); per-sample ∂tᵢ/∂Wₗ from a vectorised per-sample gradient, chunked
    so that ``chunk × num_params`` stays within a memory bound. Parameters are
    grouped by layer path (``block1`` holds ``block1/conv``'s kernel and bias).

    Args:
      model: a :class:`~explain.model.Model` with taps (``from_linen`` / ``from_nnx``).
      x: ``(N, *input_spec.shape)``.
      labels: ``(N,)`` labels; when given and ``target`` is ``None`` the target is the loss.
      target: see :mod:`explain.targets`; default the loss with ``labels``, else the model's default.
      layers: names from ``model.layer_names``; default the top-level layers.
      dead_tol: a unit is dead when ``|∂tᵢ/∂h| ≤ dead_tol`` for every sample.

    Returns:
      :class:`GradientFlow`.

    Raises:
      ValueError: unknown layer (naming the known ones), bad ``x``, labels or target, negative ``dead_tol``.

    Example:
      >>> flow = explain.gradient_flow(m, x, labels=y)
      >>> flow.rows()[0]["act_grad_mean"]
    """
    if dead_tol < 0:
        raise ValueError(f"expected dead_tol >= 0, got {dead_tol}")
    model, x, fn, aux, tname, names, shapes = prepare_layers(model, x, labels=labels, target=target, layers=layers)
    t, act_norms, batch_norms, dead, dead_ch = _compiled_flow(model.tap, fn, names, shapes, float(dead_tol))(
        model.params, x, aux
    )

    n = x.shape[0]
    batched = _aux_batched(aux, n)
    per_param = 4 * sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(model.params)) * 3
    chunk = chunk_size_for(n, per_param, _PARAM_BUDGET_BYTES)
    run = _compiled_sample_param_norms(model.apply, fn, names, batched)
    if batched:
        sample_norms = map_batches(lambda xb, ab: run(model.params, xb, ab), x, aux, batch=chunk)
    else:
        sample_norms = map_batches(lambda xb: run(model.params, xb, aux), x, batch=chunk)
    return GradientFlow(
        layers=names,
        activation_grad_norms=act_norms,
        param_grad_norms=sample_norms,
        batch_param_grad_norms=batch_norms,
        dead_fraction=dead,
        dead_channel_fraction=dead_ch,
        target_values=t,
        target_name=tname,
    )

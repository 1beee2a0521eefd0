"""Layers of a tapped model: forward order, validation, and parameters grouped by layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from explain.gradients import prepare
from explain.model import Model, as_model
from explain.targets import TargetFn

INPUT = "input"


def forward_order(model: Model) -> tuple[str, ...]:
    """The model's layer names in the order the forward pass produces them (``model.layer_names``)."""
    model = as_model(model)
    if model.tap is None:
        model.check_layer("")  # raises the "no layers" error
    return model.layer_names


def resolve_layers(model: Model, layers: str | Sequence[str] | None) -> tuple[str, ...]:
    """Validated layer names in forward order; default: the top-level layers (names without ``/``).

    Raises:
      ValueError: a model without taps, an unknown layer (naming the known ones), a repeated name, no layers.
    """
    model = as_model(model)
    order = forward_order(model)
    if layers is None:
        top = tuple(n for n in order if "/" not in n)
        layers = top or order
    elif isinstance(layers, str):
        layers = (layers,)
    layers = tuple(layers)
    if not layers:
        raise ValueError(f"expected at least one layer name; model {model.name!r} has {list(order)}")
    for name in layers:
        model.check_layer(name)
    if len(set(layers)) != len(layers):
        raise ValueError(f"expected distinct layer names, got {list(layers)}")
    return tuple(sorted(layers, key=order.index))


class LayerBatch(NamedTuple):
    """A validated batch, its target, and the layers to cut at with their activation shapes."""

    model: Model
    x: jax.Array
    fn: TargetFn
    aux: Any
    target_name: str
    layers: tuple[str, ...]
    shapes: tuple[tuple[str, tuple[int, ...]], ...]  # ((name, activation shape), ...): hashable, for jit caches


def prepare_layers(model: Model, x: Any, *, labels: Any, target: Any, layers: str | Sequence[str] | None) -> LayerBatch:
    """:func:`resolve_layers` then :func:`explain.gradients.prepare`; the target defaults to the loss when
    ``labels`` are given. Everything is validated before any compilation."""
    model = as_model(model)
    names = resolve_layers(model, layers)
    if target is None and labels is not None:
        target = "loss"
    model, x, fn, aux, tname = prepare(model, x, target, labels)
    shapes = tuple((name, model.layer_shapes[name]) for name in names)
    return LayerBatch(model, x, fn, aux, tname, names, shapes)


def _key_str(k: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def param_groups(params: Any, layers: tuple[str, ...]) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    """``(float_leaf_indices, per_layer_positions)``: which differentiable leaves belong to each layer.

    A leaf belongs to layer ``a/b`` when its path starts with ``a, b``, after an
    optional collection key (linen ``{"params": {...}}``); NNX state paths are
    attribute paths already. Positions index into the float leaves.
    """
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    float_idx = tuple(i for i, (_, leaf) in enumerate(flat) if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.inexact))
    paths = [tuple(_key_str(k) for k in flat[i][0]) for i in float_idx]
    groups = []
    for layer in layers:
        segs = tuple(layer.split("/"))
        n = len(segs)
        groups.append(tuple(j for j, p in enumerate(paths) if p[:n] == segs or p[1 : n + 1] == segs))
    return float_idx, tuple(groups)


def split_float(params: Any, float_idx: tuple[int, ...]):
    leaves, treedef = jax.tree_util.tree_flatten(params)
    floats = [leaves[i] for i in float_idx]

    def rebuild(new_floats):
        out = list(leaves)
        for i, leaf in zip(float_idx, new_floats):
            out[i] = leaf
        return jax.tree_util.tree_unflatten(treedef, out)

    return floats, rebuild


def group_norms(grads: list[jax.Array], groups: tuple[tuple[int, ...], ...], axis: int | None = None) -> jax.Array:
    """``(L,)`` (or ``(N, L)`` with ``axis=0`` per-sample leaves) Euclidean norms; NaN for a layer with no params."""
    cols = []
    for g in groups:
        if not g:
            shape = () if axis is None else (grads[0].shape[0],) if grads else ()
            cols.append(jnp.full(shape, jnp.nan))
            continue
        if axis is None:
            sq = sum(jnp.sum(grads[j] ** 2) for j in g)
        else:
            sq = sum(jnp.sum(grads[j].reshape(grads[j].shape[0], -1) ** 2, axis=1) for j in g)
        cols.append(jnp.sqrt(sq))
    return jnp.stack(cols, axis=-1)

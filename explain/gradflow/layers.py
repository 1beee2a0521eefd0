"""Layers of a tapped model: forward order, validation, the stacked tap, and parameters grouped by layer."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from explain.gradients import Prepared, prepare, target_and_layer_grad
from explain.model import Model, as_model
from explain.targets import BoundTarget

INPUT = "input"


def forward_order(model: Model | Any) -> tuple[str, ...]:
    """The model's layer names in the order the forward pass produces them (``model.layer_names``)."""
    model = as_model(model)
    if model.tap is None:
        model.check_layer("", method="gradient flow")  # raises the "no layers" error
    return model.layer_names


def resolve_layers(model: Model | Any, layers: str | Sequence[str] | None) -> tuple[str, ...]:
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


def prepare_layers(
    model: Model | Any,
    x: Any,
    *,
    target: Any,
    labels: Any,
    layers: str | Sequence[str] | None,
    memory_budget: int | None = None,
) -> tuple[Prepared, tuple[str, ...], tuple[tuple[int, ...], ...]]:
    """``(prepared batch, layer names, their activation shapes)``, all validated before any compilation.

    :func:`resolve_layers` then :func:`explain.gradients.prepare`; the target
    defaults to the loss when ``labels`` are given.
    """
    model = as_model(model)
    names = resolve_layers(model, layers)
    if target is None and labels is not None:
        target = "loss"
    p = prepare(model, x, target=target, labels=labels, memory_budget=memory_budget)
    return p, names, tuple(tuple(model.layer_shapes[name]) for name in names)


# ----------------------------------------------------------------------------- several layers as one


@dataclasses.dataclass(frozen=True)
class StackedTap:
    """``tap`` seen as a tap with one layer, :attr:`NAME`: every layer of ``layers`` flattened and concatenated.

    :func:`explain.gradients.target_and_layer_grad` differentiates at one layer;
    through this tap one call (:meth:`grads`: one forward and one backward pass) gives
    ``∂t/∂hₗ`` for every layer at once, split back with :meth:`split`. With
    ``outputs=True`` the model's outputs are appended as a last block (a delta
    added to the outputs), so the same call also gives ``∇_out t``.

    Hashable (a frozen dataclass of the tap, names and shapes), so it can be a
    static argument of ``jax.jit``.
    """

    tap: Callable
    layers: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    outputs: bool = False

    NAME: ClassVar[str] = "__stacked__"

    def size(self, num_outputs: int = 0) -> int:
        """Features of the stacked layer: ``Σ dim hₗ`` (plus ``K`` with :attr:`outputs`)."""
        return sum(math.prod(s) for s in self.shapes) + (num_outputs if self.outputs else 0)

    def split(self, flat: jax.Array) -> list[jax.Array]:
        """``(R, [C,] size)`` -> one ``(R, [C,] *shape)`` array per layer (then ``(R, [C,] K)`` with :attr:`outputs`)."""
        cuts = np.cumsum([math.prod(s) for s in self.shapes]).tolist()
        pieces = jnp.split(flat, cuts, axis=-1)
        lead = flat.shape[:-1]
        out = [piece.reshape((*lead, *shape)) for piece, shape in zip(pieces, self.shapes)]
        return out + ([pieces[-1]] if self.outputs else [])

    def __call__(self, params: Any, x: jax.Array, deltas: dict[str, jax.Array]):
        n = x.shape[0]
        delta = deltas.get(self.NAME)
        pieces = [None] * (len(self.layers) + int(self.outputs)) if delta is None else self.split(delta)
        layer_deltas = {name: d for name, d in zip(self.layers, pieces) if d is not None}
        out, acts = self.tap(params, x, layer_deltas)
        flat = [acts[name].reshape(n, -1) for name in self.layers] + ([out] if self.outputs else [])
        if self.outputs and pieces[-1] is not None:
            out = out + pieces[-1]
        return out, {self.NAME: jnp.concatenate(flat, axis=1)}

    def grads(
        self, params: Any, x: Float[Array, " r *features"], target: BoundTarget, num_outputs: int = 0
    ) -> tuple[Float[Array, " r"], list[jax.Array]]:
        """``(t, grads)`` from one :func:`~explain.gradients.target_and_layer_grad` call at :attr:`NAME`: ``grads``
        as :meth:`split`, ``∂t/∂hₗ`` per layer (then ``∇_out t``, ``K = num_outputs``, with :attr:`outputs`)."""
        layer_shape = (self.size(num_outputs),)
        t, _, g, _ = target_and_layer_grad(self, params, x, target, layer=self.NAME, layer_shape=layer_shape)
        return t, self.split(g)


def tap_apply(tap: Callable, params: Any, x: jax.Array) -> jax.Array:
    """The model's outputs through its tap (no deltas): ``apply(params, x)``."""
    return tap(params, x, {})[0]


# ----------------------------------------------------------------------------- parameters by layer


def _key_str(k: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def float_leaf_indices(params: Any) -> tuple[int, ...]:
    """Positions of the differentiable (floating) leaves among ``jax.tree_util.tree_leaves(params)``."""
    leaves = jax.tree_util.tree_leaves(params)
    return tuple(i for i, leaf in enumerate(leaves) if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.inexact))


def param_groups(params: Any, layers: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
    """Per layer, the positions (among the floating leaves) of the parameters that belong to it.

    A leaf belongs to layer ``a/b`` when its path starts with ``a, b``, after an
    optional collection key (linen ``{"params": {...}}``); NNX state paths are
    attribute paths already.
    """
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    paths = [tuple(_key_str(k) for k in flat[i][0]) for i in float_leaf_indices(params)]
    groups = []
    for layer in layers:
        segs = tuple(layer.split("/"))
        n = len(segs)
        groups.append(tuple(j for j, p in enumerate(paths) if p[:n] == segs or p[1 : n + 1] == segs))
    return tuple(groups)


def split_float(params: Any) -> tuple[list[jax.Array], Callable[[list[jax.Array]], Any]]:
    """``(floating leaves, rebuild)``: ``rebuild(new_floats)`` is ``params`` with those leaves replaced."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    idx = float_leaf_indices(params)
    floats = [leaves[i] for i in idx]

    def rebuild(new_floats: list[Any]) -> Any:
        out = list(leaves)
        for i, leaf in zip(idx, new_floats):
            out[i] = leaf
        return jax.tree_util.tree_unflatten(treedef, out)

    return floats, rebuild


def as_param_tree(params: Any, float_grads: list[jax.Array]) -> Any:
    """Gradients of the floating leaves in the structure of ``params``, ``None`` at the other leaves."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    out: list[Any] = [None] * len(leaves)
    for i, g in zip(float_leaf_indices(params), float_grads):
        out[i] = g
    return jax.tree_util.tree_unflatten(treedef, out)


def group_norms(grads: list[jax.Array], groups: tuple[tuple[int, ...], ...]) -> Float[Array, " l"]:
    """``(L,)`` Euclidean norms of each layer's parameter gradients; NaN for a layer with no parameters."""
    dtype = grads[0].dtype if grads else jnp.float32
    cols = [jnp.sqrt(sum(jnp.sum(grads[j] ** 2) for j in g)) if g else jnp.asarray(jnp.nan, dtype) for g in groups]
    return jnp.stack(cols)

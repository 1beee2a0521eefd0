"""Adapters from Flax modules to :class:`explain.model.Model`, without editing them.

Layer access works by interception rather than by asking the user to add
``self.sow`` or ``self.perturb`` calls:

* linen: ``flax.linen.intercept_methods`` wraps every submodule ``__call__``;
  the output of the named one gets ``delta`` added and is recorded.
* NNX: the module graph is rebuilt by ``nnx.merge`` inside each trace, so its
  submodules are fresh objects we may alter; each tapped submodule's class is
  swapped for a cached subclass whose ``__call__`` adds ``delta`` and records.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from explain.model import InputSpec, Model, OutputKind


def _layer_order(tap, params, spec: InputSpec) -> tuple[str, ...]:
    """Tapped layer names in the order the forward pass reaches them.

    Read from the activations dict as it is filled during an abstract trace:
    a dict returned through ``jax.eval_shape`` comes back with sorted keys.
    """
    order: list[str] = []

    def record(p, x):
        _, acts = tap(p, x, {})
        order.extend(acts)
        return None

    jax.eval_shape(record, params, jax.ShapeDtypeStruct((1, *spec.shape), jnp.float32))
    return tuple(order)


class _Recorder:
    """Records each tapped layer's output and adds its delta, for one forward pass.

    A submodule called more than once (shared weights) has no single
    activation: it is left out of the activations, and asking for its delta
    raises rather than silently summing over the calls.
    """

    def __init__(self, deltas: Mapping[str, jax.Array]):
        self.deltas = deltas
        self.acts: dict[str, jax.Array] = {}
        self.shared: set[str] = set()

    def __call__(self, name: str, out: jax.Array) -> jax.Array:
        if name in self.acts or name in self.shared:
            self.shared.add(name)
            self.acts.pop(name, None)
            if name in self.deltas:
                raise ValueError(f"layer {name!r} is called more than once in the forward pass; it cannot be tapped")
            return out
        self.acts[name] = out
        return out + self.deltas[name] if name in self.deltas else out


def _spec(input_shape, value_range, feature_names) -> InputSpec:
    return InputSpec(
        shape=tuple(int(s) for s in input_shape),
        value_range=None if value_range is None else (float(value_range[0]), float(value_range[1])),
        feature_names=None if feature_names is None else tuple(feature_names),
    )


def _as_2d(out: jax.Array) -> jax.Array:
    # Regression heads often return (N,); the contract is (N, K).
    return out[:, None] if out.ndim == 1 else out


# ----------------------------------------------------------------------------- linen


def _linen_tap_fn(module: nn.Module, method: str | None):
    def tap(variables, x, deltas: Mapping[str, jax.Array]):
        record = _Recorder(deltas)

        def interceptor(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            mod = context.module
            if context.method_name != "__call__" or not mod.path or not isinstance(out, jax.Array):
                return out
            return record("/".join(mod.path), out)

        with nn.intercept_methods(interceptor):
            out = module.apply(variables, x, method=method)
        return _as_2d(out), record.acts

    return tap


def from_linen(
    module: nn.Module,
    variables: Any,
    *,
    input_shape: Sequence[int],
    output_kind: OutputKind = "classification",
    class_names: Sequence[str] | None = None,
    value_range: tuple[float, float] | None = None,
    feature_names: Sequence[str] | None = None,
    method: str | None = None,
    name: str | None = None,
) -> Model:
    """Wraps a linen module and its variables (``{"params": ...}``) as a :class:`Model`.

    Args:
      module: any ``flax.linen.Module`` whose call maps ``(N, *input_shape)`` to
        ``(N, K)`` or ``(N,)``; it is not edited.
      variables: the collections passed to ``module.apply``.
      input_shape: per-sample input shape.
      output_kind, class_names, value_range, feature_names: see :class:`Model`.
      method: the module method to call, default ``__call__``.

    Returns:
      A :class:`Model` whose layers are the module's submodules, named by their
      path (``"block1"``, ``"block1/conv"``, ``"Dense_0"``).
    """
    spec = _spec(input_shape, value_range, feature_names)
    tap = _linen_tap_fn(module, method)

    def apply(variables, x):
        return _as_2d(module.apply(variables, x, method=method))

    return Model(
        apply=apply,
        params=variables,
        input_spec=spec,
        output_kind=output_kind,
        class_names=None if class_names is None else tuple(class_names),
        tap=tap,
        layer_names=_layer_order(tap, variables, spec),
        name=name or type(module).__name__,
    )


# ----------------------------------------------------------------------------- NNX


@functools.cache
def _tapped_class(cls: type) -> type:
    def __call__(self, *args, **kwargs):
        name, record = self._explain_tap
        return record(name, cls.__call__(self, *args, **kwargs))

    return type(f"Tapped{cls.__name__}", (cls,), {"__call__": __call__})


def _nnx_submodules(module: nnx.Module) -> list[tuple[str, nnx.Module]]:
    subs = []
    for path, node in nnx.iter_graph(module):
        if isinstance(node, nnx.Module) and path and callable(node):
            subs.append(("/".join(str(p) for p in path), node))
    return subs


def from_nnx(
    module: nnx.Module,
    *,
    input_shape: Sequence[int],
    output_kind: OutputKind = "classification",
    class_names: Sequence[str] | None = None,
    value_range: tuple[float, float] | None = None,
    feature_names: Sequence[str] | None = None,
    name: str | None = None,
) -> Model:
    """Wraps an NNX module as a :class:`Model`; params are its ``nnx.State``.

    The module is split once (``nnx.split``) into a static graph and its state;
    ``apply`` merges them inside each trace, so it stays pure. The module is
    not edited. Layers are the submodules, named by their attribute path.
    """
    spec = _spec(input_shape, value_range, feature_names)
    graphdef, state = nnx.split(module)

    def apply(state, x):
        return _as_2d(nnx.merge(graphdef, state)(x))

    def tap(state, x, deltas):
        mod = nnx.merge(graphdef, state)
        record = _Recorder(deltas)
        for path, sub in _nnx_submodules(mod):
            object.__setattr__(sub, "_explain_tap", (path, record))
            object.__setattr__(sub, "__class__", _tapped_class(type(sub)))
        return _as_2d(mod(x)), record.acts

    return Model(
        apply=apply,
        params=state,
        input_spec=spec,
        output_kind=output_kind,
        class_names=None if class_names is None else tuple(class_names),
        tap=tap,
        layer_names=_layer_order(tap, state, spec),
        name=name or type(module).__name__,
    )

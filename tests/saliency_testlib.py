"""Helpers for the saliency tests (a plain module: a second conftest.py would shadow the root one): closed-form models, the shipped shapes model, a compile counter."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

import explain

_COMPILES = [0]


def _on_event(event: str, duration: float, **kwargs) -> None:
    if event == "/jax/core/compile/backend_compile_duration":
        _COMPILES[0] += 1


jax.monitoring.register_event_duration_secs_listener(_on_event)


class CompileCounter:
    """``with counter as c: ...`` then ``c.count``: XLA compilations inside the block."""

    def __enter__(self):
        self._start = _COMPILES[0]
        return self

    def __exit__(self, *exc):
        self.count = _COMPILES[0] - self._start


def linear_apply(params, x):
    """``F(x) = flatten(x) @ w + b``: every gradient method has a closed form here."""
    return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]


def quadratic_apply(params, x):
    """``F_k(x) = Σ_i c_ik x_i²``: gradient ``2 c_ik x_i``, linear along any ray."""
    return (x.reshape(x.shape[0], -1) ** 2) @ params["c"]


def make_model(apply, shape, k=3, seed=0, name="closed_form", value_range=None, param="w") -> explain.Model:
    d = int(np.prod(shape))
    rng = np.random.default_rng(seed)
    params = {param: jnp.asarray(rng.normal(size=(d, k)), jnp.float32)}
    if param == "w":
        params["b"] = jnp.asarray(rng.normal(size=(k,)), jnp.float32)
    spec = explain.InputSpec(shape=tuple(shape), value_range=value_range)
    return explain.Model(apply=apply, params=params, input_spec=spec, name=name)


@functools.cache
def linear_model() -> explain.Model:
    return make_model(linear_apply, (5,))


@functools.cache
def linear_image_model() -> explain.Model:
    return make_model(linear_apply, (6, 6, 2), value_range=(0.0, 1.0), name="linear_image")


@functools.cache
def quadratic_model() -> explain.Model:
    return make_model(quadratic_apply, (4,), param="c")


def shapes():
    """The shipped shapes_cnn bundle (cached by the registry).

    A missing or corrupt checkpoint fails the test: the loader's ``CheckpointError`` names the file.
    """
    from models.registry import load

    return load("shapes_cnn")


def images(n: int = 2, seed: int = 0) -> jax.Array:
    """A batch of images for the root conftest's ``linen_cnn`` (8x8x3 in [0, 1])."""
    return jax.random.uniform(jax.random.key(seed), (n, 8, 8, 3))


def assert_core_equals_wrapper(core, model, x, target, want, *, static=(), row_ids=False, **kw):
    """``core`` under ``jax.jit`` on the batch, and under ``jax.vmap`` one row at a time, equals ``want``.

    ``want`` is the public wrapper's :class:`~explain.saliency.attribution.Attribution` for
    ``(x, target)``: values, ``convergence_delta`` and ``steps`` agree (absent on both sides
    where ``want`` has none). ``static`` names the core's static options; with ``row_ids``
    each vmapped row passes its index (a random core's per-row stream). Returns the jitted result.
    """
    got = jax.jit(core, static_argnums=0, static_argnames=static)(model.apply, model.params, x, target, **kw)
    rows_t = jax.tree_util.tree_map(lambda a: a[:, None], target)

    def one(xi, ti, i):
        return core(model.apply, model.params, xi, ti, **({"row_ids": i} if row_ids else {}), **kw)

    per_row = jax.vmap(one)(x[:, None], rows_t, np.arange(x.shape[0])[:, None])
    for a in (got, jax.tree_util.tree_map(lambda v: v[:, 0], per_row)):
        np.testing.assert_allclose(a.values, want.values, rtol=1e-5, atol=1e-7)
        assert (a.convergence_delta is None, a.steps is None) == (want.convergence_delta is None, want.steps is None)
        if want.convergence_delta is not None:
            np.testing.assert_allclose(a.convergence_delta, want.convergence_delta, rtol=1e-4, atol=1e-6)
        if want.steps is not None:
            np.testing.assert_array_equal(a.steps, want.steps)
    return got

"""Every registry method's pure core: under ``jax.jit`` and row by row under ``jax.vmap`` it gives what
``registry.call`` gives; and every method's signature follows the one pattern.

The parametrisation is read from :data:`explain.saliency.registry.METHODS` at collection time,
so a method whose entry gains a core is covered from then on.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from saliency_testlib import CompileCounter, images

from explain.gradients import prepare
from explain.saliency import registry

CORES = [name for name, info in registry.METHODS.items() if info.core is not None]
# Every core with per-sample classes; target="all" (the vmapped one-hot pullback) on one core of each
# kind — apply, tap, random — since each method's own tests compare "all" with stacked single classes.
ALL_TARGET = ("vanilla_gradient", "grad_cam", "expected_gradients")
CASES = [(name, "classes") for name in CORES] + [(name, "all") for name in ALL_TARGET if name in CORES]
CLASSES = np.array([2, 0, 1])


def _close(got, want, what: str, scale: float | None = None) -> None:
    """float32 agreement: ``rtol 1e-5`` plus ``1e-6 ·`` the largest magnitude (or ``scale``) absolute."""
    want = np.asarray(want)
    scale = float(np.abs(want).max()) if scale is None else scale
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6 * max(scale, 1e-12), err_msg=what)


def _same_extras(got, want, what: str) -> None:
    """``steps`` equal; ``convergence_delta = Σ values - (F(x) - F(x'))`` close on the scale of a row's ``Σ |values|``."""
    assert (got.steps is None) == (want.steps is None) and (got.convergence_delta is None) == (
        want.convergence_delta is None
    ), what
    if want.steps is not None:
        np.testing.assert_array_equal(np.asarray(got.steps), np.asarray(want.steps), err_msg=f"{what} steps")
    if want.convergence_delta is not None:
        values = np.abs(np.asarray(want.values))
        scale = float(values.sum(axis=tuple(range(1, values.ndim))).max())
        _close(got.convergence_delta, want.convergence_delta, f"{what} convergence_delta", scale)


# Fewer draws and steps than the defaults keep compiles short; the comparison does not depend on them.
SMALL = {"steps": 8, "n_samples": 4}
# Left Riemann's error halves with each doubling (|δ| / (1 + |F(x) - F(x')|) at 8 steps: 0.043, 0.028, 0.033
# for these rows and classes), so the rows stop at different rounds, 16, 8, 16: the masking is exercised.
ADAPTIVE = {"start_steps": 2, "max_steps": 64, "rule": "riemann_left", "tolerance": 0.03}


def _small(info: registry.MethodInfo) -> dict:
    small = ADAPTIVE if info.fn.__name__ == "integrated_gradients_adaptive" else SMALL
    return {k: v for k, v in small.items() if k in info.defaults}


def _core_kwargs(info: registry.MethodInfo, model, references, key) -> dict:
    """The core's keyword arguments: its options (``core_options`` of the small options), and a key /
    references where the core takes them."""
    kwargs = dict(info.core_options(model, info.check_options(_small(info))))
    params = inspect.signature(info.core).parameters
    if "key" in params:
        kwargs["key"] = key
    if "references" in params:
        kwargs["references"] = jnp.asarray(references)
    return kwargs


@pytest.mark.parametrize(("name", "target"), CASES)
def test_core_under_jit_and_vmap_equals_registry_call(linen_cnn, name, target):
    info = registry.get(name)
    x, references, key = images(3, seed=6), images(4, seed=7), jax.random.key(3)
    target = CLASSES if target == "classes" else target
    want = registry.call(name, linen_cnn, x, target=target, key=key, references=references, **_small(info))

    p = prepare(linen_cnn, x, target=target, allow_all=info.supports_all)
    fn = linen_cnn.tap if info.uses_tap else linen_cnn.apply
    kwargs = _core_kwargs(info, linen_cnn, references, key)
    core = functools.partial(info.core, **kwargs)

    got = jax.jit(core, static_argnums=0)(fn, linen_cnn.params, p.x, p.target)
    assert got.method == want.method and got.target_name == want.target_name
    assert got.values.shape == want.values.shape and got.values.dtype == want.values.dtype
    _close(got.values, want.values, f"{name} values under jit")
    _same_extras(got, want, f"{name} under jit")

    # One-row batches under vmap: x[:, None] and the target's per-row data (aux (N,) -> (N, 1)).
    rows = jax.tree_util.tree_map(lambda a: a[:, None], p.target)
    row_ids = "row_ids" in inspect.signature(info.core).parameters  # random cores: each row keeps its stream

    def one(xi, ti, i):
        return core(fn, linen_cnn.params, xi, ti, **({"row_ids": i} if row_ids else {}))

    per_row = jax.jit(jax.vmap(one))(p.x[:, None], rows, jnp.arange(p.n)[:, None])
    first = functools.partial(jax.tree_util.tree_map, lambda a: a[:, 0])  # (N, 1, ...) -> (N, ...)
    unbatched = dataclasses.replace(
        per_row,
        values=first(per_row.values),
        convergence_delta=first(per_row.convergence_delta),
        steps=first(per_row.steps),
    )
    _close(unbatched.values, want.values, f"{name} values under vmap")
    _same_extras(unbatched, want, f"{name} under vmap")


def test_every_method_has_a_core():
    # So the test above covers every registry method.
    assert list(registry.METHODS) == CORES
    for name in CORES:
        assert registry.get(name).core.__name__ == f"{name}_core"


@pytest.mark.parametrize("name", list(registry.METHODS))
def test_signature_keyword_only_no_var_kwargs(name):
    info = registry.get(name)
    params = list(inspect.signature(info.fn).parameters.values())
    assert [p.name for p in params[:2]] == ["model", "x"]
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params[:2])
    rest = params[2:]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in rest), [(p.name, p.kind) for p in rest]
    named = {p.name: p.default for p in rest}
    assert named.get("target", 0) is None and named.get("labels", 0) is None
    assert named.get("memory_budget", 0) is None and named.get("show_progress") is False
    assert set(info.defaults) == set(named) - registry.RESERVED  # the options are the wrapper's own parameters
    if info.core is not None:
        core = list(inspect.signature(info.core).parameters.values())
        assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in core[:4])
        assert [p.name for p in core[2:4]] == ["x", "target"]
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in core[4:]), [(p.name, p.kind) for p in core]


@pytest.mark.parametrize("name", list(registry.METHODS))
def test_unknown_option_raises_naming_the_valid_ones_before_compilation(linen_cnn, name):
    info = registry.get(name)
    x = images(13)  # a batch size no other test compiles: any compilation would be seen
    expected = re.escape(f"unknown option(s) ['stepz'] for {name!r}; expected some of {sorted(info.defaults)}")
    with CompileCounter() as c, pytest.raises(ValueError, match=expected):
        registry.call(name, linen_cnn, x, target=1, key=jax.random.key(0), stepz=3)
    assert c.count == 0
    for reserved in ("target", "memory_budget"):  # never options: passed by every edge itself
        assert reserved not in info.defaults

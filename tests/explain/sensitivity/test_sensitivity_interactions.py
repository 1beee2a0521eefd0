"""Interactions: Hessians and HVPs against finite differences, and the known interacting pair of Friedman #1."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from testlib import central_difference, to_float64

import explain
from explain import gradients, sensitivity
from explain.sensitivity.interactions import hessians_core


def test_hessian_and_hvp_match_finite_differences(nnx_mlp):
    with jax.enable_x64(True):
        m = to_float64(nnx_mlp)
        x = np.random.default_rng(0).normal(size=(2, 5))
        h = np.asarray(sensitivity.row_hessians(m, x, target=1))  # (2, 5, 5)
        for n in range(2):

            def grad_k(z, k, n=n):
                rows = x.copy()
                rows[n] = z[0]
                return explain.input_gradients(m, rows, target=1).values[n, k]

            numeric = np.stack([central_difference(lambda z, k=k: grad_k(z, k), x[n : n + 1])[0] for k in range(5)])
            np.testing.assert_allclose(h[n], numeric, rtol=1e-4, atol=1e-8)
        v = np.random.default_rng(1).normal(size=(2, 5))
        hv = np.asarray(explain.hvp(m, x, v=v, target=1))
        np.testing.assert_allclose(hv, np.einsum("nij,nj->ni", h, v), rtol=1e-10, atol=1e-12)
        # HVP against a finite difference of gradients along v.
        eps = 1e-6
        g = lambda z: np.asarray(explain.input_gradients(m, z, target=1).values)  # noqa: E731
        np.testing.assert_allclose(hv, (g(x + eps * v) - g(x - eps * v)) / (2 * eps), rtol=1e-4, atol=1e-8)


def test_chunked_runs_equal_one_call_and_the_matrix_is_the_scaled_mean(nnx_mlp):
    with jax.enable_x64(True):
        m = to_float64(nnx_mlp)
        x = np.random.default_rng(2).normal(size=(7, 5))
        full = sensitivity.interactions(m, x, target=0)
        # One row and one Hessian direction per compiled call: 7 × 5 calls.
        tiny = sensitivity.interactions(m, x, target=0, memory_budget=1)
        np.testing.assert_allclose(tiny.matrix, full.matrix, rtol=1e-10)
        h = np.asarray(sensitivity.row_hessians(m, x, target=0))
        np.testing.assert_allclose(sensitivity.row_hessians(m, x, target=0, memory_budget=1), h, rtol=1e-12)
        # The pure core inside a user's jit gives the same Hessians.
        p = gradients.prepare(m, x, target=0)
        core = jax.jit(hessians_core, static_argnums=0)(m.apply, m.params, jnp.asarray(x), p.target)
        np.testing.assert_allclose(core, h, rtol=1e-12)
        s = x.std(0)
        np.testing.assert_allclose(full.matrix, np.abs(h).mean(0) * np.outer(s, s), rtol=1e-10)
        np.testing.assert_array_equal(full.matrix, np.asarray(full.matrix).T)
        assert full.settings["n_rows"] == 7 and full.settings["feature_std"] == pytest.approx(s.tolist())


def test_friedman1_top_pair_is_x0_x1():
    import models

    b = models.load("friedman1_mlp")
    inter = sensitivity.interactions(b, b.dataset.test.x)
    (a, c, i, j, strength), second = inter.top_pairs(2)
    assert (i, j) == (0, 1) and strength > 5 * second[4]
    frame = inter.to_frame()
    assert list(frame.columns) == ["rank", "feature_i", "feature_j", "index_i", "index_j", "strength"]
    assert len(frame) == 45 and inter.matrix_frame().loc["x0", "x1"] == pytest.approx(strength)
    assert "x0 × x1" in str(inter)


def test_additive_model_has_no_interactions():
    spec = explain.InputSpec(shape=(3,))
    m = explain.Model(lambda p, x: jnp.sin(x) @ p, jnp.ones((3, 1)), spec, output_kind="regression")
    inter = sensitivity.interactions(m, np.random.default_rng(3).normal(size=(6, 3)).astype(np.float32))
    matrix = np.asarray(inter.matrix)
    off = matrix[~np.eye(3, dtype=bool)]
    assert np.all(off == 0.0) and np.all(np.diag(matrix) > 0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"memory_budget": 0}, "memory_budget"), ({"target": "all"}, "target='all' is not supported")],
)
def test_bad_options_raise(nnx_mlp, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sensitivity.interactions(nnx_mlp, np.random.default_rng(0).normal(size=(2, 5)).astype(np.float32), **kwargs)

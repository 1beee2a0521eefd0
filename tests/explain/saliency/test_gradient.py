"""Vanilla gradient and Gradient × Input against closed forms and finite differences."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from saliency_testlib import CompileCounter, images, linear_model
from testlib import central_difference, to_float64

from explain import chunking
from explain.saliency.gradient import gradient_x_input, vanilla_gradient


def test_linear_model_closed_forms():
    m = linear_model()
    x = jax.random.normal(jax.random.key(0), (4, 5))
    w = m.params["w"]
    np.testing.assert_allclose(vanilla_gradient(m, x, target=1).values, jnp.broadcast_to(w[:, 1], x.shape), rtol=1e-6)
    np.testing.assert_allclose(
        vanilla_gradient(m, x, target=1, absolute=True).values, jnp.abs(jnp.broadcast_to(w[:, 1], x.shape)), rtol=1e-6
    )
    np.testing.assert_allclose(gradient_x_input(m, x, target=1).values, x * w[:, 1], rtol=1e-6)


def test_linear_model_target_all_is_the_weight_matrix():
    m = linear_model()
    x = jax.random.normal(jax.random.key(4), (3, 5))
    w = np.asarray(m.params["w"])  # (5, K)
    a = vanilla_gradient(m, x, target="all")
    assert a.values.shape == (3, 3, 5) and a.target_name == "all"
    np.testing.assert_allclose(a.values, np.broadcast_to(w.T, (3, 3, 5)), rtol=1e-6)
    np.testing.assert_allclose(gradient_x_input(m, x, target="all").values, np.asarray(x)[:, None] * w.T, rtol=1e-6)


def test_matches_central_differences_on_nnx_mlp(nnx_mlp):
    with jax.enable_x64(True):
        m = to_float64(nnx_mlp)
        x = np.asarray(jax.random.normal(jax.random.key(1), (2, 5)), np.float64)
        g = vanilla_gradient(m, x, target=2).values
        assert g.dtype == jnp.float64
        for i in range(2):
            fd = central_difference(lambda z, i=i: m.apply(m.params, z[None])[0, 2], x[i])
            np.testing.assert_allclose(g[i], fd, rtol=1e-6, atol=1e-8)


def test_pred_target_is_the_argmax_class(linen_cnn):
    x = jax.random.uniform(jax.random.key(2), (4, 8, 8, 3))
    pred = np.asarray(linen_cnn.apply(linen_cnn.params, x).argmax(1))
    a = vanilla_gradient(linen_cnn, x)
    b = vanilla_gradient(linen_cnn, x, target=pred)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-6)
    assert a.target_name == "logit[pred]"


def test_target_all_equals_stacked_single_class_calls(linen_cnn):
    x = jax.random.uniform(jax.random.key(3), (2, 8, 8, 3))
    a = gradient_x_input(linen_cnn, x, target="all")
    stacked = jnp.stack([gradient_x_input(linen_cnn, x, target=k).values for k in range(3)], axis=1)
    np.testing.assert_allclose(a.values, stacked, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("fn", [vanilla_gradient, gradient_x_input])
def test_chunking_does_not_change_the_result(linen_cnn, fn):
    # 5 rows at 2 rows per call (last chunk padded) and at 1 row per call, against one call.
    x = images(5, seed=9)
    row = chunking.row_bytes(linen_cnn)
    full = fn(linen_cnn, x, target=np.array([0, 1, 2, 1, 0]))
    for budget in (2 * row, row):
        part = fn(linen_cnn, x, target=np.array([0, 1, 2, 1, 0]), memory_budget=budget)
        np.testing.assert_allclose(part.values, full.values, rtol=1e-6, atol=1e-8)
    # target="all" costs K backward passes per row: 3 rows of budget are one sample per call.
    full_all = fn(linen_cnn, x, target="all")
    part_all = fn(linen_cnn, x, target="all", memory_budget=3 * row)
    np.testing.assert_allclose(part_all.values, full_all.values, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"target": "everything"}, ValueError, r"unknown target 'everything'"),
        ({"target": 3}, ValueError, r"class index 3 out of range"),
        ({"memory_budget": 0}, ValueError, r"memory_budget \(bytes\) >= 1, got 0"),
        ({"memory_budget": 1.5}, TypeError, r"memory_budget \(bytes\) to be an int"),
    ],
)
@pytest.mark.parametrize("fn", [vanilla_gradient, gradient_x_input])
def test_bad_input_raises_before_compilation(fn, kwargs, error, match):
    with CompileCounter() as c, pytest.raises(error, match=match):
        fn(linear_model(), np.zeros((1, 5), np.float32), **kwargs)
    assert c.count == 0


def test_bad_x_raises_before_compilation():
    with CompileCounter() as c:
        with pytest.raises(ValueError, match=r"expected x of shape .*got shape \(5,\) \(add a batch axis"):
            vanilla_gradient(linear_model(), np.zeros((5,), np.float32), target=0)
        with pytest.raises(ValueError, match=r"NaN or inf in 1 sample"):
            vanilla_gradient(linear_model(), np.array([[0, 0, np.nan, 0, 0]], np.float32), target=0)
        with pytest.raises(TypeError, match=r"half precision"):
            vanilla_gradient(linear_model(), np.zeros((1, 5), np.float16), target=0)
    assert c.count == 0

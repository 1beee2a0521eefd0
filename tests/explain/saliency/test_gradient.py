"""Vanilla gradient and Gradient × Input against closed forms and finite differences."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from saliency_testlib import linear_model
from testlib import central_difference, to_float64

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


def test_matches_central_differences_on_nnx_mlp(nnx_mlp):
    with jax.enable_x64(True):
        m = to_float64(nnx_mlp)
        x = np.asarray(jax.random.normal(jax.random.key(1), (2, 5)), np.float64)
        g = vanilla_gradient(m, x, target=2).values
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


def test_bad_target_raises():
    with pytest.raises(ValueError, match=r"unknown target 'everything'"):
        vanilla_gradient(linear_model(), np.zeros((1, 5), np.float32), target="everything")

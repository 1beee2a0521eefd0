"""Guided Backprop and Deconvnet: the rules on a hand-written 2-layer ReLU net; linen and NNX models unedited."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import explain
from explain.saliency.gradient import vanilla_gradient
from explain.saliency.guided import count_relus, deconvnet, guided_backprop, modified_backprop


class TwoLayer(nn.Module):
    """F(x) = V relu(W x): the rules are checked against this by hand."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(3, use_bias=False, name="out")(jax.nn.relu(nn.Dense(6, use_bias=False, name="hidden")(x)))


class NnxNet(nnx.Module):
    def __init__(self, rngs):
        self.a = nnx.Linear(4, 6, rngs=rngs)
        self.b = nnx.Linear(6, 2, rngs=rngs)

    def __call__(self, x):
        return self.b(nnx.relu(self.a(x)))


def _two_layer():
    module = TwoLayer()
    variables = module.init(jax.random.key(0), jnp.zeros((1, 4)))
    return explain.from_linen(module, variables, input_shape=(4,)), variables["params"]


def test_rules_on_two_layer_relu_net():
    m, p = _two_layer()
    w, v = np.asarray(p["hidden"]["kernel"]), np.asarray(p["out"]["kernel"])  # (4, 6), (6, 3)
    x = np.asarray(jax.random.normal(jax.random.key(1), (5, 4)))
    active = (x @ w) > 0  # (5, 6)
    g_top = np.broadcast_to(v[:, 2], (5, 6))  # ∂F_2/∂h
    plain = (g_top * active) @ w.T
    guided = (g_top * active * (g_top > 0)) @ w.T
    deconv = np.maximum(g_top, 0) @ w.T
    np.testing.assert_allclose(vanilla_gradient(m, x, target=2).values, plain, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(guided_backprop(m, x, target=2).values, guided, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(deconvnet(m, x, target=2).values, deconv, rtol=1e-5, atol=1e-6)


def test_linen_cnn_unedited_and_plain_gradient_unaffected(linen_cnn):
    x = jax.random.uniform(jax.random.key(2), (2, 8, 8, 3))
    before = vanilla_gradient(linen_cnn, x, target=0).values
    gb = guided_backprop(linen_cnn, x, target=0).values
    assert gb.shape == x.shape and not np.allclose(gb, before)
    np.testing.assert_array_equal(vanilla_gradient(linen_cnn, x, target=0).values, before)  # nothing patched globally
    assert count_relus(linen_cnn.apply, linen_cnn.params, x) == 2


def test_nnx_model_unedited():
    m = explain.from_nnx(NnxNet(nnx.Rngs(0)), input_shape=(4,))
    x = jax.random.normal(jax.random.key(3), (3, 4))
    a, b = m.params["a"], m.params["b"]
    w, v = np.asarray(a["kernel"][...]), np.asarray(b["kernel"][...])
    active = (np.asarray(x) @ w + np.asarray(a["bias"][...])) > 0
    g_top = np.broadcast_to(v[:, 1], (3, 6))
    np.testing.assert_allclose(
        guided_backprop(m, x, target=1).values, (g_top * active * (g_top > 0)) @ w.T, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        deconvnet(m, x, target=1, memory_budget=1).values, np.maximum(g_top, 0) @ w.T, rtol=1e-5, atol=1e-6
    )


def test_errors(nnx_mlp):
    with pytest.raises(ValueError, match=r"found no jax.nn.relu in model 'TinyMLP'"):
        guided_backprop(nnx_mlp, np.zeros((1, 5), np.float32))
    with pytest.raises(ValueError, match=r"unknown rule 'lrp'"):
        modified_backprop(nnx_mlp, np.zeros((1, 5), np.float32), rule="lrp")

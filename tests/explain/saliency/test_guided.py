"""Guided Backprop and Deconvnet: the rules on a hand-written 2-layer ReLU net; linen and NNX models unedited;
pure cores under jit/vmap; SmoothGrad over Guided Backprop."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from saliency_testlib import CompileCounter

import explain
from explain import chunking
from explain.gradients import prepare
from explain.saliency.gradient import vanilla_gradient
from explain.saliency.guided import (
    ModifiedApply,
    count_relus,
    deconvnet,
    deconvnet_core,
    guided_backprop,
    guided_backprop_core,
)
from explain.saliency.smooth import smoothgrad


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


def _hand_rules(p, x, k):
    """``(plain, guided, deconvnet)`` maps of output ``k`` of ``V relu(W x)``, by hand."""
    w, v = np.asarray(p["hidden"]["kernel"]), np.asarray(p["out"]["kernel"])  # (4, 6), (6, 3)
    x = np.asarray(x)
    active = (x @ w) > 0  # (N, 6)
    g_top = np.broadcast_to(v[:, k], active.shape)  # ∂F_k/∂h
    plain = (g_top * active) @ w.T
    guided = (g_top * active * (g_top > 0)) @ w.T
    deconv = np.maximum(g_top, 0) @ w.T
    return plain, guided, deconv


def test_rules_on_two_layer_relu_net():
    m, p = _two_layer()
    x = np.asarray(jax.random.normal(jax.random.key(1), (5, 4)))
    plain, guided, deconv = _hand_rules(p, x, 2)
    np.testing.assert_allclose(vanilla_gradient(m, x, target=2).values, plain, rtol=1e-5, atol=1e-6)
    a = guided_backprop(m, x, target=2)
    np.testing.assert_allclose(a.values, guided, rtol=1e-5, atol=1e-6)
    b = deconvnet(m, x, target=2)
    np.testing.assert_allclose(b.values, deconv, rtol=1e-5, atol=1e-6)
    assert (a.method, b.method, a.target_name) == ("guided_backprop", "deconvnet", "logit[class]")


def test_target_all_equals_stacked_single_class_calls():
    m, p = _two_layer()
    x = np.asarray(jax.random.normal(jax.random.key(4), (3, 4)))
    for fn, rule in ((guided_backprop, 1), (deconvnet, 2)):
        a = fn(m, x, target="all")
        assert a.values.shape == (3, 3, 4)
        hand = np.stack([_hand_rules(p, x, k)[rule] for k in range(3)], axis=1)
        np.testing.assert_allclose(a.values, hand, rtol=1e-5, atol=1e-6)


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


def test_chunking_does_not_change_the_map(linen_cnn):
    x = jax.random.uniform(jax.random.key(5), (3, 8, 8, 3))
    whole = guided_backprop(linen_cnn, x, target=1)
    two_rows = 2 * chunking.row_bytes(linen_cnn)  # 2 rows per call: 2 + a padded 1
    np.testing.assert_allclose(
        guided_backprop(linen_cnn, x, target=1, memory_budget=two_rows).values, whole.values, rtol=1e-6, atol=1e-8
    )


@pytest.mark.parametrize(("core", "wrapper"), [(guided_backprop_core, guided_backprop), (deconvnet_core, deconvnet)])
def test_core_under_jit_and_vmap_equals_wrapper(linen_cnn, core, wrapper):
    x = jax.random.uniform(jax.random.key(6), (3, 8, 8, 3))
    p = prepare(linen_cnn, x, target=np.array([0, 2, 1]))
    expected = wrapper(linen_cnn, x, target=np.array([0, 2, 1]))
    jitted = jax.jit(core, static_argnums=0)(linen_cnn.apply, linen_cnn.params, p.x, p.target)
    assert (jitted.method, jitted.target_name) == (expected.method, expected.target_name)
    np.testing.assert_allclose(jitted.values, expected.values, rtol=1e-6, atol=1e-8)
    rows = jax.tree.map(lambda a: a[:, None], p.target)  # N one-row batches
    mapped = jax.vmap(lambda xi, ti: core(linen_cnn.apply, linen_cnn.params, xi, ti))(p.x[:, None], rows)
    np.testing.assert_allclose(mapped.values[:, 0], expected.values, rtol=1e-5, atol=1e-7)


def test_smoothgrad_over_guided_backprop_is_the_mean_of_hand_maps_at_the_documented_noise():
    # SmoothGrad's noise for sample s of row i is N(0, 1)(fold_in(fold_in(key, s), i)) · σ_i with
    # σ_i = noise_level · (max x_i - min x_i) (no declared range); the mean of the hand-computed
    # guided maps at those inputs is the expected result.
    m, p = _two_layer()
    x = np.asarray(jax.random.normal(jax.random.key(7), (4, 4)))
    key, n, level = jax.random.key(8), 6, 0.5
    sigma = level * (x.max(1) - x.min(1))

    def eps(s, i):
        return np.asarray(jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, s), i), (4,)))

    noisy = [np.stack([x[i] + sigma[i] * eps(s, i) for i in range(4)]) for s in range(n)]
    hand = np.mean([_hand_rules(p, xs, 0)[1] for xs in noisy], axis=0)
    a = smoothgrad(m, x, key=key, method="guided_backprop", target=0, n_samples=n, noise_level=level)
    assert a.method == "smoothgrad"
    np.testing.assert_allclose(a.values, hand, rtol=1e-5, atol=1e-6)
    assert not np.allclose(hand, _hand_rules(p, x, 0)[1], atol=1e-3)  # the noise did move some ReLUs


def test_errors(nnx_mlp):
    with CompileCounter() as c, pytest.raises(ValueError, match=r"found no jax.nn.relu in model 'TinyMLP'"):
        guided_backprop(nnx_mlp, np.zeros((1, 5), np.float32))
    with pytest.raises(ValueError, match=r"found no jax.nn.relu in model 'TinyMLP'"):
        deconvnet(nnx_mlp, np.zeros((1, 5), np.float32))
    assert c.count == 0
    with pytest.raises(ValueError, match=r"found no jax.nn.relu"):
        smoothgrad(nnx_mlp, np.arange(5.0, dtype=np.float32)[None], key=jax.random.key(0), method="guided_backprop")
    with pytest.raises(ValueError, match=r"unknown rule 'lrp'"):
        ModifiedApply(nnx_mlp.apply, "lrp")
    with pytest.raises(ValueError, match=r"found no jax.nn.relu"):  # the core too, while tracing
        jax.eval_shape(ModifiedApply(nnx_mlp.apply), nnx_mlp.params, jax.ShapeDtypeStruct((1, 5), jnp.float32))

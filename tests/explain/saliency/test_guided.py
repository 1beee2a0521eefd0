"""Guided Backprop and Deconvnet: the rules on a hand-written 2-layer ReLU net; Deconvnet's max-pool switches on a
hand-computed case with ties; linen and NNX models unedited; pure cores under jit/vmap; SmoothGrad over Guided
Backprop."""

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
    switch_max,
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


# One 4×4 channel, pooled 2×2 then a linear head: windows TL, TR, BL, BR, row-major.
TIES_X = np.array([[-1, -2, 5, 5], [-3, -1, 1, 2], [4, 0, 0, -1], [4, 1, -2, 0]], np.float32)
TIES_W = np.array([[2.0], [1.5], [-1.0], [0.5]], np.float32)  # head weight of each window
# After the ReLU: TL all 0 (4-way tie), TR ties 5 = 5, BL ties 4 = 4 (negative weight), BR all 0.
# Deconvnet routes each window's max(w, 0) to its first maximum (the switch), whatever the ReLU mask.
TIES_DECONVNET = np.array([[2, 0, 1.5, 0], [0, 0, 0, 0], [0, 0, 0.5, 0], [0, 0, 0, 0]], np.float32)
# Guided Backprop keeps JAX's own max gradient, then its mask: only TR's positive tie survives, shared evenly
# by reduce_max (reshape pooling), all to the first maximum by reduce_window (nn.max_pool).
TIES_GUIDED_EVEN = np.array([[0, 0, 0.75, 0.75], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], np.float32)
TIES_GUIDED_FIRST = np.array([[0, 0, 1.5, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], np.float32)


def _pooled_head(pool):
    def apply(params, x):  # (N, 4, 4, 1) -> (N, 1)
        return pool(jax.nn.relu(x)).reshape(x.shape[0], 4) @ params

    return apply


def _reshape_pool(h):
    n, hh, w, c = h.shape
    return h.reshape(n, hh // 2, 2, w // 2, 2, c).max(axis=(2, 4))  # as models.modules.max_pool_2x2


@pytest.mark.parametrize(
    ("pool", "guided_map"),
    [(_reshape_pool, TIES_GUIDED_EVEN), (lambda h: nn.max_pool(h, (2, 2), strides=(2, 2)), TIES_GUIDED_FIRST)],
    ids=["reduce_max", "reduce_window"],
)
def test_deconvnet_routes_max_pool_ties_to_the_first_maximum(pool, guided_map):
    apply, x = _pooled_head(pool), jnp.asarray(np.stack([TIES_X, TIES_X.T])[..., None])  # a batch of two
    deconv = jax.grad(lambda x: ModifiedApply(apply, "deconvnet")(TIES_W, x).sum())(x)
    np.testing.assert_array_equal(deconv[0, ..., 0], TIES_DECONVNET)
    single = jax.grad(lambda x: ModifiedApply(apply, "deconvnet")(TIES_W, x).sum())(x[1:])  # rows do not interact
    np.testing.assert_array_equal(deconv[1:], single)
    guided = jax.grad(lambda x: ModifiedApply(apply, "guided")(TIES_W, x).sum())(x)
    np.testing.assert_array_equal(guided[0, ..., 0], guided_map)


def test_deconvnet_switches_under_vmap_and_jit():
    apply = _pooled_head(_reshape_pool)
    x = jnp.asarray(TIES_X[None, ..., None])
    grad = jax.jit(jax.vmap(jax.grad(lambda xi: ModifiedApply(apply, "deconvnet")(TIES_W, xi[None]).sum())))
    np.testing.assert_array_equal(grad(x)[0, ..., 0], TIES_DECONVNET)


@pytest.mark.parametrize(("shape", "axes"), [((3, 2, 2, 5), (1, 2)), ((2, 3, 2, 3, 2, 4), (2, 4)), ((4, 6), (0,))])
def test_switch_max_without_ties_is_the_plain_max_and_gradient(shape, axes):
    @jax.jit  # one compilation instead of a dozen eager ones
    def both(x, g):
        (m1, pull1), (m2, pull2) = jax.vjp(lambda x: switch_max(x, axes), x), jax.vjp(lambda x: x.max(axes), x)
        return m1, m2, pull1(g)[0], pull2(g)[0]

    x = jax.random.normal(jax.random.key(9), shape)  # continuous: no ties
    ours, plain, ours_g, plain_g = both(x, jax.random.normal(jax.random.key(10), np.max(x, axis=axes).shape))
    np.testing.assert_array_equal(ours, plain)
    np.testing.assert_array_equal(ours_g, plain_g)


def test_switch_max_global_tie_goes_to_the_first_position_in_row_major_order():
    x = jnp.array([[[0.0, 1.0], [1.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])  # (2, 2, 2): max over (1, 2)
    ours = jax.grad(lambda x: switch_max(x, (2, 1)).sum())(x)  # the order axes are given in does not matter
    np.testing.assert_array_equal(ours, [[[0, 1], [0, 0]], [[1, 0], [0, 0]]])
    np.testing.assert_array_equal(jax.grad(lambda x: jnp.max(x, axis=(1, 2)).sum())(x)[1], 0.25)  # JAX: even


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


def test_count_relus_traces_once_per_apply_and_shapes():
    traced = []

    def apply(params, x):
        traced.append(x.shape)
        return jax.nn.relu(x @ params)

    w = jnp.ones((3, 2))
    assert count_relus(apply, w, jnp.zeros((4, 3))) == 1
    assert count_relus(apply, 2 * w, jnp.ones((4, 3))) == 1  # other values, same shapes: remembered
    assert traced == [(4, 3)]
    assert count_relus(apply, w, jax.ShapeDtypeStruct((5, 3), jnp.float32)) == 1  # new shape: traced again
    assert traced == [(4, 3), (5, 3)]

    class Unhashable:
        __hash__ = None

        def __call__(self, params, x):
            return apply(params, x)

    assert count_relus(Unhashable(), w, jnp.zeros((4, 3))) == 1  # not cached, still answered
    assert len(traced) == 3


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

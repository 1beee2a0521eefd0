"""Grad-CAM and Guided Grad-CAM against a hand-split model; layer choice, pure cores under jit/vmap, errors."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from saliency_testlib import CompileCounter, images

import explain
from explain import chunking
from explain.gradients import prepare
from explain.saliency import cam
from explain.saliency.cam import default_layer, grad_cam, grad_cam_core, guided_grad_cam, guided_grad_cam_core
from explain.saliency.guided import guided_backprop
from explain.saliency.smooth import smoothgrad


class Split(nn.Module):
    """features (conv + relu, a named block) then a head; split by hand in the test."""

    @nn.compact
    def __call__(self, x):
        return Head(name="head")(Features(name="features")(x))


class Features(nn.Module):
    @nn.compact
    def __call__(self, x):
        return jax.nn.relu(nn.Conv(5, (3, 3), strides=2, name="conv")(x))


class Head(nn.Module):
    @nn.compact
    def __call__(self, a):
        return nn.Dense(3)(jnp.tanh(a).mean(axis=(1, 2)))


def test_grad_cam_matches_hand_split_model():
    module = Split()
    variables = module.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
    m = explain.from_linen(module, variables, input_shape=(8, 8, 3))
    p = variables["params"]
    x = images(2)
    assert default_layer(m) == "features"
    assert cam.core_options(m, {"layer": None}) == {"layer": "features", "layer_shape": (4, 4, 5)}
    acts = Features().apply({"params": p["features"]}, x)  # (2, 4, 4, 5)
    g = jax.grad(lambda a: Head().apply({"params": p["head"]}, a)[:, 1].sum())(acts)
    hand = jax.nn.relu((g.mean(axis=(1, 2), keepdims=True) * acts).sum(-1))  # (2, 4, 4)
    up = jax.image.resize(hand, (2, 8, 8), "bilinear")
    a = grad_cam(m, x, target=1)
    assert a.values.shape == x.shape and (a.method, a.target_name) == ("grad_cam", "logit[class]")
    np.testing.assert_allclose(a.values, jnp.broadcast_to(up[..., None], x.shape), rtol=1e-5, atol=1e-7)
    gg = guided_grad_cam(m, x, target=1)
    assert gg.method == "guided_grad_cam"
    np.testing.assert_allclose(gg.values, guided_backprop(m, x, target=1).values * a.values, rtol=1e-5, atol=1e-7)


def test_named_layer_target_all_and_default_on_linen_cnn(linen_cnn):
    x = images(2)
    assert default_layer(linen_cnn) == "conv2"
    a = grad_cam(linen_cnn, x, target="all", layer="conv1")
    assert a.values.shape == (2, 3, 8, 8, 3) and (np.asarray(a.values) >= 0).all()
    for k in range(3):
        np.testing.assert_allclose(
            a.values[:, k], grad_cam(linen_cnn, x, target=k, layer="conv1").values, rtol=1e-5, atol=1e-7
        )
    gg = guided_grad_cam(linen_cnn, x, target="all")
    gb = guided_backprop(linen_cnn, x, target="all").values
    np.testing.assert_allclose(gg.values, gb * grad_cam(linen_cnn, x, target="all").values, rtol=1e-5, atol=1e-7)


def test_errors_before_compilation(linen_cnn, nnx_mlp):
    x = images(1)
    with (
        CompileCounter() as c,
        pytest.raises(ValueError, match=r"unknown layer 'conv9'.*expected one of \['conv1', 'conv2', 'head'\]"),
    ):
        grad_cam(linen_cnn, x, layer="conv9")
    with CompileCounter() as c2, pytest.raises(ValueError, match=r"needs a layer with \(h, w, c\) activations; 'head'"):
        guided_grad_cam(linen_cnn, x, layer="head")
    assert c.count == 0 and c2.count == 0
    with pytest.raises(ValueError, match=r"Grad-CAM needs image inputs"):
        grad_cam(nnx_mlp, np.zeros((1, 5), np.float32))


def test_chunked_target_all_equals_one_call(linen_cnn):
    x = images(3)
    whole = grad_cam(linen_cnn, x, target="all")
    two_rows = 2 * 3 * chunking.row_bytes(linen_cnn)  # target="all": K=3 backward passes a row; 2 + a padded 1
    chunked = grad_cam(linen_cnn, x, target="all", memory_budget=two_rows)
    np.testing.assert_allclose(chunked.values, whole.values, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        guided_grad_cam(linen_cnn, x, target=0, memory_budget=two_rows).values,
        guided_grad_cam(linen_cnn, x, target=0).values,
        rtol=1e-5,
        atol=1e-7,
    )
    with pytest.raises(ValueError, match=r"memory_budget \(bytes\) >= 1, got 0"):
        grad_cam(linen_cnn, x, memory_budget=0)


@pytest.mark.parametrize(("core", "wrapper"), [(grad_cam_core, grad_cam), (guided_grad_cam_core, guided_grad_cam)])
def test_core_under_jit_and_vmap_equals_wrapper(linen_cnn, core, wrapper):
    x = images(3, seed=4)
    cls = np.array([2, 0, 1])
    p = prepare(linen_cnn, x, target=cls)
    expected = wrapper(linen_cnn, x, target=cls, layer="conv1")
    kw = {"layer": "conv1", "layer_shape": linen_cnn.layer_shapes["conv1"]}
    jitted = jax.jit(core, static_argnums=0, static_argnames=("layer", "layer_shape"))(
        linen_cnn.tap, linen_cnn.params, p.x, p.target, **kw
    )
    assert (jitted.method, jitted.target_name) == (expected.method, expected.target_name)
    np.testing.assert_allclose(jitted.values, expected.values, rtol=1e-6, atol=1e-8)
    rows = jax.tree.map(lambda a: a[:, None], p.target)  # N one-row batches
    mapped = jax.vmap(lambda xi, ti: core(linen_cnn.tap, linen_cnn.params, xi, ti, **kw))(p.x[:, None], rows)
    np.testing.assert_allclose(mapped.values[:, 0], expected.values, rtol=1e-5, atol=1e-7)


def test_noise_tunnel_over_grad_cam_without_noise_is_grad_cam(linen_cnn):
    x = images(2, seed=5)
    for name, fn in (("grad_cam", grad_cam), ("guided_grad_cam", guided_grad_cam)):
        a = smoothgrad(
            linen_cnn,
            x,
            key=jax.random.key(0),
            method=name,
            method_options={"layer": "conv1"},
            target=2,
            n_samples=2,
            noise_level=0.0,
        )
        np.testing.assert_allclose(a.values, fn(linen_cnn, x, target=2, layer="conv1").values, rtol=1e-5, atol=1e-7)

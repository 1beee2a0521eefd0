"""Grad-CAM and Guided Grad-CAM against a hand-split model; layer choice and errors."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from saliency_testlib import CompileCounter, images

import explain
from explain.saliency.cam import default_layer, grad_cam, guided_grad_cam
from explain.saliency.guided import guided_backprop


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
    acts = Features().apply({"params": p["features"]}, x)  # (2, 4, 4, 5)
    g = jax.grad(lambda a: Head().apply({"params": p["head"]}, a)[:, 1].sum())(acts)
    cam = jax.nn.relu((g.mean(axis=(1, 2), keepdims=True) * acts).sum(-1))  # (2, 4, 4)
    up = jax.image.resize(cam, (2, 8, 8), "bilinear")
    a = grad_cam(m, x, target=1)
    assert a.values.shape == x.shape and a.method == "grad_cam[features]"
    np.testing.assert_allclose(a.values, jnp.broadcast_to(up[..., None], x.shape), rtol=1e-5, atol=1e-7)
    gg = guided_grad_cam(m, x, target=1).values
    np.testing.assert_allclose(gg, guided_backprop(m, x, target=1).values * a.values, rtol=1e-5, atol=1e-7)


def test_named_layer_target_all_and_default_on_linen_cnn(linen_cnn):
    x = images(2)
    assert default_layer(linen_cnn) == "conv2"
    a = grad_cam(linen_cnn, x, target="all", layer="conv1")
    assert a.values.shape == (2, 3, 8, 8, 3) and (np.asarray(a.values) >= 0).all()
    for k in range(3):
        np.testing.assert_allclose(
            a.values[:, k], grad_cam(linen_cnn, x, target=k, layer="conv1").values, rtol=1e-5, atol=1e-7
        )


def test_errors_before_compilation(linen_cnn, nnx_mlp):
    x = images(1)
    with (
        CompileCounter() as c,
        pytest.raises(ValueError, match=r"unknown layer 'conv9'.*expected one of \['conv1', 'conv2', 'head'\]"),
    ):
        grad_cam(linen_cnn, x, layer="conv9")
    with pytest.raises(ValueError, match=r"needs a layer with \(h, w, c\) activations; 'head'"):
        grad_cam(linen_cnn, x, layer="head")
    assert c.count == 0
    with pytest.raises(ValueError, match=r"Grad-CAM needs image inputs"):
        grad_cam(nnx_mlp, np.zeros((1, 5), np.float32))


def test_chunked_target_all_equals_one_call(linen_cnn):
    x = images(3)
    whole = grad_cam(linen_cnn, x, target="all")
    chunked = grad_cam(linen_cnn, x, target="all", internal_batch_size=2)  # 2 + padded 1
    np.testing.assert_allclose(chunked.values, whole.values, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=r"memory_budget \(bytes\) >= 1, got 0"):
        grad_cam(linen_cnn, x, memory_budget=0)

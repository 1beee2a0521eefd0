"""Test helpers shared across the suite: small user models and finite differences.

A plain module (not ``conftest``): a second ``conftest.py`` in a subfolder
would shadow ``from conftest import ...`` for every test collected after it.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import explain


class TinyCNN(nn.Module):
    """A user's own linen CNN: two conv layers and a head, plain ``jax.nn.relu``."""

    @nn.compact
    def __call__(self, x):
        x = jax.nn.relu(nn.Conv(4, (3, 3), name="conv1")(x))
        x = jax.nn.relu(nn.Conv(6, (3, 3), name="conv2")(x))
        x = x.mean(axis=(1, 2))
        return nn.Dense(3, name="head")(x)


class TinyMLP(nnx.Module):
    """A user's own NNX MLP."""

    def __init__(self, rngs: nnx.Rngs, features: int = 5, hidden: int = 7, out: int = 3):
        self.fc1 = nnx.Linear(features, hidden, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, out, rngs=rngs)

    def __call__(self, x):
        return self.fc2(jnp.tanh(self.fc1(x)))


def to_float64(model: explain.Model) -> explain.Model:
    """The same model with float64 params (call inside ``jax.enable_x64(True)``)."""

    params = jax.tree_util.tree_map(lambda p: jnp.asarray(np.asarray(p), jnp.float64), model.params)
    return dataclasses.replace(model, params=params)


def central_difference(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """∂f/∂x for scalar ``f`` by central differences, float64, one coordinate at a time."""
    x = np.asarray(x, np.float64)
    grad = np.zeros_like(x)
    flat = grad.reshape(-1)
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = eps
        e = e.reshape(x.shape)
        flat[i] = (float(f(x + e)) - float(f(x - e))) / (2 * eps)
    return grad


def central_difference_batched(f_batch, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Like :func:`central_difference`, but ``f_batch`` maps ``(M, *x.shape)`` points to ``(M,)`` in one call."""
    x = np.asarray(x, np.float64)
    d = x.size
    steps = (np.eye(d) * eps).reshape(d, *x.shape)
    values = np.asarray(f_batch(np.concatenate([x + steps, x - steps])), np.float64)
    return ((values[:d] - values[d:]) / (2 * eps)).reshape(x.shape)


def linear_regression_model(w: np.ndarray, b: float) -> explain.Model:
    """``t(x) = x·w + b`` as a one-output regression model."""
    params = {"w": jnp.asarray(w)[:, None], "b": jnp.asarray([b])}
    spec = explain.InputSpec(shape=(len(w),), feature_names=tuple(f"f{i}" for i in range(len(w))))
    return explain.Model(lambda p, x: x @ p["w"] + p["b"], params, spec, output_kind="regression", name="linear")

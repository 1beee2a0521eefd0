"""Shared fixtures: explicit PRNG keys, small user models, float64 where finite differences need it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from flax import nnx  # noqa: E402

import explain  # noqa: E402


@pytest.fixture
def key() -> jax.Array:
    return jax.random.key(0)


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


@pytest.fixture(scope="session")
def linen_cnn() -> explain.Model:
    module = TinyCNN()
    variables = module.init(jax.random.key(1), jnp.zeros((1, 8, 8, 3)))
    return explain.from_linen(
        module, variables, input_shape=(8, 8, 3), value_range=(0.0, 1.0), class_names=("a", "b", "c")
    )


@pytest.fixture(scope="session")
def nnx_mlp() -> explain.Model:
    return explain.from_nnx(TinyMLP(nnx.Rngs(2)), input_shape=(5,), feature_names=tuple("abcde"))


def to_float64(model: explain.Model) -> explain.Model:
    """The same model with float64 params (call inside ``jax.enable_x64(True)``)."""
    import dataclasses

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

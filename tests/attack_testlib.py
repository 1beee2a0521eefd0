"""Closed-form models shared by the attack tests: a linear classifier and its exact cross-entropy."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import explain


def linear_model(shape, k=3, *, seed=0, value_range=(0.0, 1.0), scale=3.0) -> explain.Model:
    """Logits ``W·vec(x) + b``: ∂CE/∂x = Wᵀ(softmax − onehot) in closed form."""
    d = int(np.prod(shape))
    rng = np.random.default_rng(seed)
    params = {
        "w": jnp.asarray(rng.normal(size=(d, k)) * scale / np.sqrt(d), jnp.float32),
        "b": jnp.asarray(rng.normal(size=k), jnp.float32),
    }

    def apply(p, x):
        return x.reshape(x.shape[0], -1) @ p["w"] + p["b"]

    return explain.Model(apply, params, explain.InputSpec(tuple(shape), value_range), name=f"linear{k}")


_MODELS: dict = {}


def cached_linear(shape, k=3):
    # one Model object per shape, so jit caches are reused across hypothesis examples
    if (shape, k) not in _MODELS:
        _MODELS[(shape, k)] = linear_model(shape, k)
    return _MODELS[(shape, k)]


def ce(model, x, labels):
    z = np.asarray(model.apply(model.params, jnp.asarray(x)), np.float64)
    z = z - z.max(1, keepdims=True)
    return -(z[np.arange(len(x)), labels] - np.log(np.exp(z).sum(1)))

"""Shared fixtures: explicit PRNG keys, small user models, float64 where finite differences need it."""

from __future__ import annotations

import sys
from pathlib import Path

# importlib import mode (test basenames repeat across folders) adds nothing to
# sys.path: make the project and the shared test helpers importable.
sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import pytest  # noqa: E402
from flax import nnx  # noqa: E402
from testlib import TinyCNN, TinyMLP  # noqa: E402

import explain  # noqa: E402


@pytest.fixture
def key() -> jax.Array:
    return jax.random.key(0)


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

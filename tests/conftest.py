"""Shared fixtures: explicit PRNG keys, small user models, float64 where finite differences need it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# importlib import mode (test basenames repeat across folders) adds nothing to
# sys.path: make the project and the shared test helpers importable.
sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

# Entry points (main(), app.py) turn on the persistent compilation cache: keep it in the checkout, not in ~/.cache.
os.environ.setdefault("EXPLAIN_JAX_CACHE", str(Path(__file__).resolve().parents[1] / "build" / "jax-cache"))

# LLVM at -O1 instead of XLA's default -O2/-O3 for the processes the suite starts: on CI's two cores compiling
# is most of the suite's time (the SmoothGrad tests: 158 CPU-s at the default, 58 at -O1), while the few tests
# whose run time dominates lose little. Floating-point semantics do not change with the level (no fast-math),
# and every comparison in the suite is between two results computed under the same flags. Users, benchmarks
# and the dashboard keep XLA's default.
# For the same reason, XLA's older elemental emitter for fusions instead of its MLIR fusion emitters: a quarter
# less CPU to compile (eight methods on shapes_cnn: 14.1-15.1 CPU-s -> 10.7-11.4), run time unchanged; backend
# compiles were 733 of the suite's 1,390 test-seconds (6,187 compilations, measured with jax.monitoring).
for flag in ("--xla_backend_optimization_level=1", "--xla_cpu_use_fusion_emitters=false"):
    if flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import pytest  # noqa: E402
from flax import nnx  # noqa: E402
from testlib import TinyCNN, TinyMLP  # noqa: E402

import explain  # noqa: E402
from explain import runtime  # noqa: E402

# What every entry point does first (explain/runtime.py): freed XLA work buffers stay in the heap instead of
# being unmapped and faulted in again on the next call, about a quarter of a gradient's CPU time here.
runtime.tune_malloc()


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

"""SmoothGrad, SmoothGrad², VarGrad: closed forms under Gaussian noise, chunk invariance, keys, errors."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from saliency_testlib import CompileCounter, images, linear_model, quadratic_model

import explain
from explain.saliency.smooth import noise_tunnel, smoothgrad, smoothgrad_sq, vargrad


def test_linear_model_noise_changes_nothing():
    m = linear_model()
    x = jax.random.normal(jax.random.key(0), (3, 5))
    w = np.asarray(m.params["w"][:, 0])
    key = jax.random.key(1)
    np.testing.assert_allclose(
        smoothgrad(m, x, key=key, target=0, n_samples=8).values, np.broadcast_to(w, (3, 5)), rtol=1e-5
    )
    np.testing.assert_allclose(
        smoothgrad_sq(m, x, key=key, target=0, n_samples=8).values, np.broadcast_to(w**2, (3, 5)), rtol=1e-5
    )
    np.testing.assert_allclose(vargrad(m, x, key=key, target=0, n_samples=8).values, 0.0, atol=1e-5)


def test_quadratic_model_moments():
    # g = 2c(x + ε), ε ~ N(0, σ²): E g = 2cx, E g² = 4c²(x² + σ²), Var g = 4c²σ².
    m = quadratic_model()
    x = jax.random.uniform(jax.random.key(0), (2, 4))
    c = np.asarray(m.params["c"][:, 0])
    xs = np.asarray(x)
    sigma = 0.2 * (xs.max(1) - xs.min(1))[:, None]
    key, n = jax.random.key(2), 4000
    mean = smoothgrad(m, x, key=key, target=0, n_samples=n, noise_level=0.2).values
    var = vargrad(m, x, key=key, target=0, n_samples=n, noise_level=0.2).values
    sq = smoothgrad_sq(m, x, key=key, target=0, n_samples=n, noise_level=0.2).values
    tol = 5 * 2 * np.abs(c) * sigma / np.sqrt(n)  # five standard errors of the mean
    assert (np.abs(mean - 2 * c * xs) <= tol).all()
    np.testing.assert_allclose(var, 4 * c**2 * sigma**2, rtol=0.15)
    np.testing.assert_allclose(sq, var + np.asarray(mean) ** 2, rtol=1e-4)


def test_same_key_same_result_and_chunking_invariance(linen_cnn):
    x, key = images(), jax.random.key(7)
    a = smoothgrad(linen_cnn, x, key=key, n_samples=5)
    b = smoothgrad(linen_cnn, x, key=key, n_samples=5, internal_batch_size=4)  # 2 samples per call, padded
    c = smoothgrad(linen_cnn, x, key=jax.random.key(8), n_samples=5)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-5, atol=1e-7)
    assert not np.allclose(a.values, c.values)
    assert a.values.shape == x.shape and a.values.dtype == x.dtype


def test_target_all_equals_stacked(linen_cnn):
    x, key = images(2), jax.random.key(1)
    a = vargrad(linen_cnn, x, key=key, n_samples=3, target="all")
    for k in range(3):
        np.testing.assert_allclose(
            a.values[:, k], vargrad(linen_cnn, x, key=key, n_samples=3, target=k).values, rtol=1e-4, atol=1e-7
        )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"noise_level": -0.1}, ValueError, r"noise_level \(sigma\) >= 0, got -0.1"),
        ({"n_samples": 0}, ValueError, r"n_samples >= 1, got 0"),
        ({"statistic": "median"}, ValueError, r"unknown statistic 'median'"),
        ({"key": None}, ValueError, r"pass an explicit key"),
    ],
)
def test_bad_input_raises_before_compilation(linen_cnn, kwargs, error, match):
    kwargs = {"key": jax.random.key(0), **kwargs}
    with CompileCounter() as c, pytest.raises(error, match=match):
        noise_tunnel(linen_cnn, images(), **kwargs)
    assert c.count == 0


def test_vargrad_is_exactly_zero_for_a_constant_gradient():
    # A linear model's gradient does not move under noise; E[g²] - E[g]² in float32 leaves
    # rounding residue of either sign at |w|² ~ 1e6, the centred accumulation leaves none.
    m = linear_model()
    big = type(m)(
        apply=m.apply, params={"w": m.params["w"] * 1e3, "b": m.params["b"]}, input_spec=m.input_spec, name="big"
    )
    x = jax.random.normal(jax.random.key(0), (4, 5))
    v = np.asarray(vargrad(big, x, key=jax.random.key(1), target=0, n_samples=7).values)
    np.testing.assert_array_equal(v, 0.0)


def test_sigma_comes_from_the_declared_range_even_for_a_constant_input():
    # Quadratic: g = 2 c (x + ε), so VarGrad = 4 c² σ²; σ = 0.1 · (10 - 0) = 1 although x is constant.
    base = quadratic_model()
    m = type(base)(
        apply=base.apply, params=base.params, input_spec=explain.InputSpec(shape=(4,), value_range=(0.0, 10.0))
    )
    x = np.zeros((16, 4), np.float32)
    v = np.asarray(vargrad(m, x, key=jax.random.key(0), target=0, n_samples=32, noise_level=0.1).values)
    c = np.asarray(m.params["c"][:, 0])
    sigma2 = (v / (4 * c**2)).mean()  # 512 independent variance estimates of σ² = 1
    assert 0.85 < sigma2 < 1.15, sigma2


def test_sigma_zero_raises_before_compilation():
    m, x, key = linear_model(), np.ones((2, 5), np.float32), jax.random.key(0)  # constant rows, no declared range
    with CompileCounter() as c, pytest.raises(ValueError, match=r"sigma = 0 for sample\(s\) \[0, 1\].*value_range"):
        smoothgrad(m, x, key=key, target=0)
    assert c.count == 0
    a = smoothgrad(linear_model(), x, key=jax.random.key(0), target=0, noise_level=0.0, n_samples=2)
    np.testing.assert_allclose(a.values, np.broadcast_to(linear_model().params["w"][:, 0], (2, 5)), rtol=1e-6)


@pytest.mark.parametrize(
    ("key", "error", "match"),
    [
        (jax.numpy.zeros((2,), jax.numpy.float32), TypeError, r"uint32 \(2,\) key data, got float32"),
        (jax.numpy.arange(3, dtype=jax.numpy.uint32), TypeError, r"got uint32 array of shape \(3,\)"),
        (jax.random.split(jax.random.key(0), 2), ValueError, r"single PRNG key"),
    ],
)
def test_malformed_key_raises(key, error, match):
    with pytest.raises(error, match=match):
        smoothgrad(linear_model(), np.ones((1, 5)), key=key, target=0)

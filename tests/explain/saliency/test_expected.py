"""Expected Gradients / GradientSHAP: closed form on a linear model, completeness, keys, errors."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from saliency_testlib import images, linear_model, quadratic_model
from testlib import to_float64

from explain.saliency.expected import expected_gradients, gradient_shap


def test_linear_model_single_reference_is_exact():
    m = linear_model()
    x = jax.random.normal(jax.random.key(0), (3, 5))
    ref = jax.random.normal(jax.random.key(1), (1, 5))
    a = expected_gradients(m, x, references=ref, key=jax.random.key(2), target=1, n_samples=4)
    np.testing.assert_allclose(a.values, (x - ref) * m.params["w"][:, 1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.convergence_delta, 0.0, atol=1e-5)


def test_quadratic_model_expectation_over_references():
    # EG_i = E_{b,α}[(x_i - b_i) 2c_i (b_i + α(x_i - b_i))] = c_i E_b[x_i² - b_i²] with b uniform over refs.
    m = quadratic_model()
    x = jax.random.normal(jax.random.key(0), (2, 4))
    refs = jax.random.normal(jax.random.key(1), (3, 4))
    a = expected_gradients(m, x, references=refs, key=jax.random.key(5), target=0, n_samples=6000)
    expect = np.asarray(m.params["c"][:, 0]) * (np.asarray(x) ** 2 - (np.asarray(refs) ** 2).mean(0))
    np.testing.assert_allclose(a.values, expect, atol=0.1 * np.abs(expect).max())
    # completeness against the drawn baselines holds per draw for any α only in expectation; small here
    assert np.abs(np.asarray(a.convergence_delta)).max() < 0.1 * np.abs(expect.sum(1)).max()


def test_key_determinism_and_gradient_shap_defaults(linen_cnn):
    x, refs = images(2), images(4, seed=1)
    a = gradient_shap(linen_cnn, x, references=refs, key=jax.random.key(0))
    b = gradient_shap(linen_cnn, x, references=refs, key=jax.random.key(0))
    c = gradient_shap(linen_cnn, x, references=refs, key=jax.random.key(1))
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.allclose(a.values, c.values)
    assert a.steps.tolist() == [5, 5] and a.method == "gradient_shap"


def test_bad_references_and_stdevs():
    m, x = linear_model(), np.zeros((2, 5), np.float32)
    with pytest.raises(ValueError, match=r"expected references of shape \(N, 5\)"):
        expected_gradients(m, x, references=np.zeros((3, 4), np.float32), key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"stdevs >= 0"):
        expected_gradients(m, x, references=x, key=jax.random.key(0), stdevs=-1.0)
    with pytest.raises(ValueError, match=r"pass an explicit key"):
        expected_gradients(m, x, references=x, key=None)


def test_noisy_inputs_delta_is_against_the_noisy_forward():
    # Linear F: Σ EG = mean_s (F(x_s) - F(b_s)) exactly, x_s = x + noise; F(x) would miss by ~stdevs·|w|.
    with jax.enable_x64(True):
        m = to_float64(linear_model())
        x = jax.random.normal(jax.random.key(0), (3, 5), jax.numpy.float64)
        refs = jax.random.normal(jax.random.key(1), (4, 5), jax.numpy.float64)
        a = expected_gradients(m, x, references=refs, key=jax.random.key(2), target=1, n_samples=5, stdevs=0.5)
        np.testing.assert_allclose(a.convergence_delta, 0.0, atol=1e-12)

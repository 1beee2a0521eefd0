"""Blur IG: exact blur derivative, completeness, the closed form on a linear model."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from saliency_testlib import linear_image_model, linear_model

from explain.saliency.blur_ig import blur_integrated_gradients
from explain.saliency.integrated import gaussian_blur


def test_gaussian_blur_identity_and_mean_preserving():
    x = jax.random.uniform(jax.random.key(0), (2, 6, 6, 2))
    np.testing.assert_allclose(gaussian_blur(x, 0.0), x, atol=1e-6)
    const = np.full((1, 6, 6, 2), 0.3, np.float32)
    np.testing.assert_allclose(gaussian_blur(const, 2.0), const, rtol=1e-6)


def test_linear_model_closed_form_and_completeness():
    # F linear: BlurIG = w ⊙ (x - x_σmax) up to the Riemann error in σ, which shrinks with steps.
    m = linear_image_model()
    x = jax.random.uniform(jax.random.key(1), (2, 6, 6, 2))
    w = np.asarray(m.params["w"][:, 0]).reshape(6, 6, 2)
    expect = w * (np.asarray(x) - np.asarray(gaussian_blur(x, 3.0)))
    coarse = blur_integrated_gradients(m, x, target=0, max_sigma=3.0, steps=8)
    fine = blur_integrated_gradients(m, x, target=0, max_sigma=3.0, steps=128)
    err = lambda a: np.abs(np.asarray(a.values) - expect).max()  # noqa: E731
    assert err(fine) < err(coarse) / 8 and err(fine) < 2e-3 * np.abs(expect).max() + 1e-4
    assert np.abs(np.asarray(fine.convergence_delta)).max() < 1e-2 * np.abs(expect.sum((1, 2, 3))).max() + 1e-4


def test_errors():
    with pytest.raises(ValueError, match=r"Blur IG needs image inputs"):
        blur_integrated_gradients(linear_model(), np.zeros((1, 5), np.float32))
    with pytest.raises(ValueError, match=r"expected max_sigma > 0"):
        blur_integrated_gradients(linear_image_model(), np.zeros((1, 6, 6, 2), np.float32), max_sigma=0.0)
    with pytest.raises(ValueError, match=r"expected steps >= 1, got 0"):
        blur_integrated_gradients(linear_image_model(), np.zeros((1, 6, 6, 2), np.float32), steps=0)

"""Guided IG: a path method (exact on linear models), completeness improves with steps, errors."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from saliency_testlib import images, linear_model

from explain.saliency.guided_ig import guided_integrated_gradients


def test_linear_model_is_exact_for_any_path():
    # Each feature travels monotonically from x'_i to x_i, so ∫ w·dx = w_i (x_i - x'_i) per feature.
    m = linear_model()
    x = jax.random.normal(jax.random.key(0), (3, 5))
    a = guided_integrated_gradients(m, x, target=1, steps=6)
    np.testing.assert_allclose(a.values, x * m.params["w"][:, 1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.convergence_delta, 0.0, atol=1e-4)


def test_completeness_improves_with_steps(linen_cnn):
    x = images(2)
    few = guided_integrated_gradients(linen_cnn, x, steps=4)
    many = guided_integrated_gradients(linen_cnn, x, steps=64)
    assert np.abs(np.asarray(many.convergence_delta)).max() < np.abs(np.asarray(few.convergence_delta)).max()


def test_errors(linen_cnn):
    with pytest.raises(ValueError, match=r"expected fraction >= 0 and <= 1, got 1.5"):
        guided_integrated_gradients(linen_cnn, images(1), fraction=1.5)
    with pytest.raises(ValueError, match=r"target='all' is not supported"):
        guided_integrated_gradients(linen_cnn, images(1), target="all")

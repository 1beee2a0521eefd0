"""Guided IG: a path method (exact on linear models), completeness improves with steps, chunking, pure core, errors."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from saliency_testlib import CompileCounter, assert_core_equals_wrapper, images, linear_model

from explain import chunking
from explain.gradients import prepare
from explain.saliency.guided_ig import guided_integrated_gradients, guided_integrated_gradients_core


def test_linear_model_is_exact_for_any_path():
    # Each feature travels monotonically from x'_i to x_i, so ∫ w·dx = w_i (x_i - x'_i) per feature.
    m = linear_model()
    x = jax.random.normal(jax.random.key(0), (3, 5))
    a = guided_integrated_gradients(m, x, target=1, steps=6)
    np.testing.assert_allclose(a.values, x * m.params["w"][:, 1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.convergence_delta, 0.0, atol=1e-4)
    assert a.method == "guided_integrated_gradients" and a.steps.tolist() == [6, 6, 6]
    # with a baseline array: w_i (x_i - x'_i)
    base = np.asarray(jax.random.normal(jax.random.key(1), (3, 5)))
    b = guided_integrated_gradients(m, x, target=1, steps=6, baseline=base)
    np.testing.assert_allclose(b.values, (x - base) * m.params["w"][:, 1], rtol=1e-4, atol=1e-5)


def test_completeness_improves_with_steps(linen_cnn):
    x = images(2)
    few = guided_integrated_gradients(linen_cnn, x, steps=4)
    many = guided_integrated_gradients(linen_cnn, x, steps=64)
    assert np.abs(np.asarray(many.convergence_delta)).max() < np.abs(np.asarray(few.convergence_delta)).max()


def test_memory_budget_does_not_change_the_result(linen_cnn):
    x = images(3)
    whole = guided_integrated_gradients(linen_cnn, x, steps=8)
    two_rows = guided_integrated_gradients(linen_cnn, x, steps=8, memory_budget=2 * chunking.row_bytes(linen_cnn))
    np.testing.assert_allclose(two_rows.values, whole.values, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(two_rows.convergence_delta, whole.convergence_delta, rtol=1e-4, atol=1e-6)


def test_core_under_jit_and_vmap_equals_the_wrapper(linen_cnn):
    x, cls = images(3), np.array([1, 2, 0])
    kw = dict(steps=8, fraction=0.3, max_dist=0.05)
    want = guided_integrated_gradients(linen_cnn, x, target=cls, **kw)
    t = prepare(linen_cnn, x, target=cls).target
    assert_core_equals_wrapper(guided_integrated_gradients_core, linen_cnn, x, t, want, **kw)


def test_errors(linen_cnn):
    x = images(1)
    with CompileCounter() as c:
        with pytest.raises(ValueError, match=r"expected fraction >= 0 and <= 1, got 1.5"):
            guided_integrated_gradients(linen_cnn, x, fraction=1.5)
        with pytest.raises(ValueError, match=r"expected fraction in \(0, 1\], got 0"):
            guided_integrated_gradients(linen_cnn, x, fraction=0.0)
        with pytest.raises(ValueError, match=r"expected steps >= 1, got 0"):
            guided_integrated_gradients(linen_cnn, x, steps=0)
        with pytest.raises(ValueError, match=r"target='all' is not supported"):
            guided_integrated_gradients(linen_cnn, x, target="all")
    assert c.count == 0

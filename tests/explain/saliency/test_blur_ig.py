"""Blur IG: exact blur derivative, completeness, the closed form on a linear model, chunking, pure core."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from saliency_testlib import CompileCounter, assert_core_equals_wrapper, images, linear_image_model, linear_model

from explain import chunking
from explain.gradients import prepare
from explain.saliency.blur_ig import blur_integrated_gradients, blur_integrated_gradients_core
from explain.saliency.integrated import gaussian_blur


def test_gaussian_blur_identity_and_mean_preserving():
    x = jax.random.uniform(jax.random.key(0), (2, 6, 6, 2))
    np.testing.assert_allclose(gaussian_blur(x, 0.0), x, atol=1e-6)
    const = np.full((1, 6, 6, 2), 0.3, np.float32)
    np.testing.assert_allclose(gaussian_blur(jax.numpy.asarray(const), 2.0), const, rtol=1e-6)


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
    assert fine.method == "blur_integrated_gradients" and fine.steps.tolist() == [128, 128]


def test_memory_budget_does_not_change_the_result(linen_cnn):
    x = images(3)
    whole = blur_integrated_gradients(linen_cnn, x, max_sigma=3.0, steps=7)
    # 2 rows per call: 2 samples (+ a padded 1) x 1 step; 6 rows: 3 samples x 2 steps, last step chunk padded
    for rows in (2, 6):
        part = blur_integrated_gradients(
            linen_cnn, x, max_sigma=3.0, steps=7, memory_budget=rows * chunking.row_bytes(linen_cnn)
        )
        np.testing.assert_allclose(part.values, whole.values, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(part.convergence_delta, whole.convergence_delta, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("sqrt", [False, True])
def test_core_under_jit_and_vmap_equals_the_wrapper(linen_cnn, sqrt):
    x, cls = images(3), np.array([2, 0, 1])
    want = blur_integrated_gradients(linen_cnn, x, target=cls, max_sigma=3.0, steps=6, sqrt=sqrt)
    t = prepare(linen_cnn, x, target=cls).target
    kw = dict(max_sigma=3.0, steps=6, sqrt=sqrt)
    assert_core_equals_wrapper(blur_integrated_gradients_core, linen_cnn, x, t, want, static=tuple(kw), **kw)


def test_target_all_equals_stacked(linen_cnn):
    x = images(2)
    a = blur_integrated_gradients(linen_cnn, x, target="all", max_sigma=2.0, steps=4)
    assert a.values.shape == (2, 3, 8, 8, 3) and a.convergence_delta.shape == (2, 3)
    for k in range(3):
        b = blur_integrated_gradients(linen_cnn, x, target=k, max_sigma=2.0, steps=4)
        np.testing.assert_allclose(a.values[:, k], b.values, rtol=1e-4, atol=1e-7)


def test_errors_before_compilation():
    img, tab, m = np.zeros((1, 6, 6, 2), np.float32), linear_model(), linear_image_model()
    with CompileCounter() as c:
        with pytest.raises(ValueError, match=r"blur_integrated_gradients needs image inputs"):
            blur_integrated_gradients(tab, np.zeros((1, 5), np.float32))
        with pytest.raises(ValueError, match=r"expected max_sigma > 0"):
            blur_integrated_gradients(m, img, max_sigma=0.0)
        with pytest.raises(ValueError, match=r"expected steps >= 1, got 0"):
            blur_integrated_gradients(m, img, steps=0)
        with pytest.raises(ValueError, match=r"memory_budget \(bytes\) >= 1, got 0"):
            blur_integrated_gradients(m, img, memory_budget=0)
    assert c.count == 0

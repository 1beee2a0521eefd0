"""Blur IG: both paddings by hand, completeness, the closed form on a linear model, chunking, pure core."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from saliency_testlib import (
    CompileCounter,
    assert_core_equals_wrapper,
    images,
    linear_apply,
    linear_image_model,
    linear_model,
    make_model,
)
from scipy import ndimage

from explain import chunking
from explain.gradients import prepare
from explain.saliency.blur_ig import BLURS, blur_integrated_gradients, blur_integrated_gradients_core
from explain.saliency.integrated import gaussian_blur

# exp(-d² / 2σ²) = 2^(-d²) at this σ: kernel weights 1, 1/2, 1/16, 1/512, ... by hand.
SIGMA_HALF = float(np.sqrt(1.0 / (2.0 * np.log(2.0))))


def test_gaussian_blur_identity_and_mean_preserving():
    x = jax.random.uniform(jax.random.key(0), (2, 6, 6, 2))
    np.testing.assert_allclose(gaussian_blur(x, 0.0), x, atol=1e-6)
    const = np.full((1, 6, 6, 2), 0.3, np.float32)
    np.testing.assert_allclose(gaussian_blur(jax.numpy.asarray(const), 2.0), const, rtol=1e-6)


def test_blurred_start_by_hand_for_each_padding():
    # One row of three pixels (1, 2, 4), kernel weights 2^(-d²). Renormalised: each pixel averages the
    # pixels that exist, e.g. the first (1·1 + 2·1/2 + 4·1/16) / (1 + 1/2 + 1/16) = 1.44; the one-pixel
    # height axis is the identity. Zero padding divides by the whole line's Σ_d 2^(-d²) on both axes.
    x = np.array([1.0, 2.0, 4.0], np.float32).reshape(1, 1, 3, 1)
    renorm = np.asarray(BLURS["renormalise"](x, SIGMA_HALF)).ravel()
    np.testing.assert_allclose(renorm, [1.44, 2.25, 3.24], rtol=1e-5)
    mass = 1 + 2 * sum(2.0 ** -(d * d) for d in range(1, 6))  # 2.1289...; d = 6 adds 2^-36
    zero = np.asarray(BLURS["zero"](x, SIGMA_HALF)).ravel()
    np.testing.assert_allclose(zero, np.array([2.25, 4.5, 5.0625]) / mass**2, rtol=1e-5)
    # ... which is PAIR's blur: scipy's constant mode (the 4σ truncation differs by < 1e-4).
    pair = ndimage.gaussian_filter(x[0], sigma=[SIGMA_HALF, SIGMA_HALF, 0], mode="constant")
    np.testing.assert_allclose(zero, pair.ravel(), atol=1e-4)


def test_zero_padding_is_pairs_blur_at_every_scale():
    x = np.asarray(images(1, seed=3))
    for sigma in (0.3, 1.0, 2.5, 50.0):
        pair = ndimage.gaussian_filter(x[0], sigma=[sigma, sigma, 0], mode="constant", truncate=20.0)
        np.testing.assert_allclose(np.asarray(BLURS["zero"](x, sigma))[0], pair, atol=1e-6)
    # At σ = 50 an 8×8 image keeps ≈ (8 / (√(2π) 50))² ≈ 0.4% of its mass: nearly black. Renormalised: the mean.
    np.testing.assert_allclose(np.asarray(BLURS["zero"](x, 50.0)).sum(), x.sum() * 0.0041, rtol=0.05)
    flat = np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape)
    np.testing.assert_allclose(np.asarray(BLURS["renormalise"](x, 50.0)), flat, atol=2e-3)


@pytest.mark.parametrize("padding", ["renormalise", "zero"])
def test_start_and_completeness_by_hand(padding):
    # A linear F on the hand-computed row: Σ BlurIG ≈ F(x) - F(x_σmax) = w · (x - start) (completeness).
    m = make_model(linear_apply, (1, 3, 1), k=1, value_range=(0.0, 8.0), name="row")
    x = np.array([1.0, 2.0, 4.0], np.float32).reshape(1, 1, 3, 1)
    mass = 1 + 2 * sum(2.0 ** -(d * d) for d in range(1, 6))
    start = [1.44, 2.25, 3.24] if padding == "renormalise" else np.array([2.25, 4.5, 5.0625]) / mass**2
    w = np.asarray(m.params["w"][:, 0])
    a = blur_integrated_gradients(m, x, target=0, max_sigma=SIGMA_HALF, steps=256, padding=padding)
    diff = w @ (x.ravel() - start)
    # Σ values - delta is F(x) - F(the start the method used): the hand-computed start, to rounding ...
    np.testing.assert_allclose(np.asarray(a.values).sum() - float(a.convergence_delta[0]), diff, rtol=1e-5)
    # ... and the left Riemann sum in σ reaches it (the blur changes fastest near σ = 0.5: 0.1% at 256 steps).
    assert abs(float(a.convergence_delta[0])) < 3e-3 * abs(diff)


@pytest.mark.parametrize("padding", ["renormalise", "zero"])
def test_linear_model_closed_form_and_completeness(padding):
    # F linear: BlurIG = w ⊙ (x - x_σmax) up to the Riemann error in σ, which shrinks with steps.
    m = linear_image_model()
    x = jax.random.uniform(jax.random.key(1), (2, 6, 6, 2))
    w = np.asarray(m.params["w"][:, 0]).reshape(6, 6, 2)
    expect = w * (np.asarray(x) - np.asarray(BLURS[padding](x, 3.0)))
    coarse = blur_integrated_gradients(m, x, target=0, max_sigma=3.0, steps=8, padding=padding)
    fine = blur_integrated_gradients(m, x, target=0, max_sigma=3.0, steps=128, padding=padding)
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


@pytest.mark.parametrize(("sqrt", "padding"), [(False, "renormalise"), (True, "zero")])
def test_core_under_jit_and_vmap_equals_the_wrapper(linen_cnn, sqrt, padding):
    x, cls = images(3), np.array([2, 0, 1])
    want = blur_integrated_gradients(linen_cnn, x, target=cls, max_sigma=3.0, steps=6, sqrt=sqrt, padding=padding)
    t = prepare(linen_cnn, x, target=cls).target
    kw = dict(max_sigma=3.0, steps=6, sqrt=sqrt, padding=padding)
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
        with pytest.raises(ValueError, match=r"unknown padding 'reflect'; expected one of \['renormalise', 'zero'\]"):
            blur_integrated_gradients(m, img, padding="reflect")
        with pytest.raises(ValueError, match=r"memory_budget \(bytes\) >= 1, got 0"):
            blur_integrated_gradients(m, img, memory_budget=0)
    assert c.count == 0

"""Expected Gradients / GradientSHAP: closed form on a linear model, completeness, keys, chunking, pure core, errors."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from saliency_testlib import CompileCounter, assert_core_equals_wrapper, images, linear_model, quadratic_model
from testlib import to_float64

from explain import chunking
from explain.gradients import prepare
from explain.saliency.expected import (
    expected_gradients,
    expected_gradients_core,
    gradient_shap,
    gradient_shap_core,
)


def test_linear_model_single_reference_is_exact():
    m = linear_model()
    x = jax.random.normal(jax.random.key(0), (3, 5))
    ref = jax.random.normal(jax.random.key(1), (1, 5))
    a = expected_gradients(m, x, references=ref, key=jax.random.key(2), target=1, n_samples=4)
    np.testing.assert_allclose(a.values, (x - ref) * m.params["w"][:, 1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.convergence_delta, 0.0, atol=1e-5)
    assert a.method == "expected_gradients" and a.steps.tolist() == [4, 4, 4]


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
    # GradientSHAP is Expected Gradients with n_samples=5, draw for draw
    e = expected_gradients(linen_cnn, x, references=refs, key=jax.random.key(0), n_samples=5)
    np.testing.assert_array_equal(a.values, e.values)


def test_memory_budget_does_not_change_the_draws(linen_cnn):
    # Draw s of row i uses fold_in(fold_in(key, s), i): 2 rows per call (2 + a padded 1, 1 draw each)
    # and a budget that holds every row and draw at once give the same baselines, α and noise.
    x, refs, key = images(3), images(4, seed=1), jax.random.key(3)
    kw = dict(references=refs, key=key, n_samples=5, noise_level=0.1)
    whole = expected_gradients(linen_cnn, x, **kw)
    two_rows = expected_gradients(linen_cnn, x, memory_budget=2 * chunking.row_bytes(linen_cnn), **kw)
    np.testing.assert_allclose(two_rows.values, whole.values, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(two_rows.convergence_delta, whole.convergence_delta, rtol=1e-4, atol=1e-6)
    # a row's draws do not depend on the other rows of the batch
    last = expected_gradients(linen_cnn, x[:2], **kw)
    np.testing.assert_allclose(last.values, whole.values[:2], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("core", "wrapper", "n", "fixture"),
    [
        (expected_gradients_core, expected_gradients, 4, "linen_cnn"),  # declared range: one σ for every row
        (gradient_shap_core, gradient_shap, 5, "nnx_mlp"),  # no declared range: σ from each row's max - min
    ],
)
def test_core_under_jit_and_vmap_equals_the_wrapper(request, core, wrapper, n, fixture):
    model = request.getfixturevalue(fixture)
    shape = model.input_spec.shape
    x = jax.random.uniform(jax.random.key(0), (3, *shape))
    refs = jax.random.uniform(jax.random.key(1), (4, *shape))
    key, cls = jax.random.key(4), np.array([0, 2, 1])
    want = wrapper(model, x, references=refs, key=key, target=cls, n_samples=n, noise_level=0.1)
    t = prepare(model, x, target=cls).target
    kw = dict(references=refs, key=key, n_samples=n, noise_level=0.1, value_range=model.input_spec.value_range)
    got = assert_core_equals_wrapper(core, model, x, t, want, static=("n_samples", "value_range"), row_ids=True, **kw)
    assert got.method == wrapper.__name__


def test_target_all_equals_stacked(linen_cnn):
    x, refs, key = images(2), images(3, seed=1), jax.random.key(2)
    a = expected_gradients(linen_cnn, x, references=refs, key=key, n_samples=3, target="all")
    assert a.values.shape == (2, 3, 8, 8, 3) and a.convergence_delta.shape == (2, 3)
    for k in range(3):
        b = expected_gradients(linen_cnn, x, references=refs, key=key, n_samples=3, target=k)
        np.testing.assert_allclose(a.values[:, k], b.values, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(a.convergence_delta[:, k], b.convergence_delta, rtol=1e-3, atol=1e-6)


def test_bad_references_noise_level_and_key():
    m, x = linear_model(), np.zeros((2, 5), np.float32)
    with pytest.raises(ValueError, match=r"expected references of shape \(N, 5\)"):
        expected_gradients(m, x, references=np.zeros((3, 4), np.float32), key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"expected noise_level >= 0, got -1"):
        expected_gradients(m, x, references=x, key=jax.random.key(0), noise_level=-1.0)
    with pytest.raises(ValueError, match=r"pass an explicit key"):
        expected_gradients(m, x, references=x, key=None)
    with pytest.raises(ValueError, match=r"expected n_samples >= 1, got 0"):
        gradient_shap(m, x, references=x, key=jax.random.key(0), n_samples=0)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'stdevs'"):
        gradient_shap(m, x, references=x, key=jax.random.key(0), stdevs=0.1)


def test_sigma_zero_raises_before_compilation():
    # constant rows and no declared range: σ = noise_level · (max - min) = 0 would silently add no noise
    m, x = linear_model(), np.ones((2, 5), np.float32)
    with CompileCounter() as c, pytest.raises(ValueError, match=r"sigma = 0 for sample\(s\) \[0, 1\]"):
        expected_gradients(m, x, references=x, key=jax.random.key(0), noise_level=0.1)
    assert c.count == 0


def test_noise_level_is_a_fraction_of_the_range():
    # Linear F, one reference b = 0, α irrelevant: EG = mean_s x_s ⊙ w, x_s = x + σ ε_s with σ = level · (max - min).
    # The mean noise over n draws has std σ/√n per feature; it is not zero and scales with noise_level.
    m = linear_model()
    x = jax.random.normal(jax.random.key(0), (2, 5))
    w = np.asarray(m.params["w"][:, 0])
    ref, key, n = np.zeros((1, 5), np.float32), jax.random.key(1), 64
    small = expected_gradients(m, x, references=ref, key=key, target=0, n_samples=n, noise_level=0.05).values
    big = expected_gradients(m, x, references=ref, key=key, target=0, n_samples=n, noise_level=0.1).values
    sigma = 0.1 * (np.ptp(np.asarray(x), axis=1))[:, None]
    noise_big = np.asarray(big) / w - np.asarray(x)  # mean_s σ ε_s
    noise_small = np.asarray(small) / w - np.asarray(x)
    np.testing.assert_allclose(
        noise_big, 2 * noise_small, rtol=1e-4, atol=1e-6
    )  # same ε, σ doubled (float32 sums of 64)
    assert (np.abs(noise_big) < 5 * sigma / np.sqrt(n)).all() and np.abs(noise_big).max() > 0


def test_noisy_inputs_delta_is_against_the_noisy_forward():
    # Linear F: Σ EG = mean_s (F(x_s) - F(b_s)) exactly, x_s = x + noise; F(x) would miss by ~σ·|w|.
    with jax.enable_x64(True):
        m = to_float64(linear_model())
        x = jax.random.normal(jax.random.key(0), (3, 5), jax.numpy.float64)
        refs = jax.random.normal(jax.random.key(1), (4, 5), jax.numpy.float64)
        a = expected_gradients(m, x, references=refs, key=jax.random.key(2), target=1, n_samples=5, noise_level=0.5)
        np.testing.assert_allclose(a.convergence_delta, 0.0, atol=1e-12)
        assert a.values.dtype == np.float64

"""The primer's worked examples: each factor by JAX, multiplied, equals jax.grad and the closed form."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from explain.primer import chain_rule


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("x", [-2.0, -1 / 3, 0.0, 0.7, 5.0])
def test_square_of_affine(x):
    ex = chain_rule.square_of_affine(x)
    (name_u, dy_du), (name_x, du_dx) = ex.factors
    np.testing.assert_allclose(dy_du, 2 * (3 * x + 1), rtol=1e-12)
    np.testing.assert_allclose(du_dx, 3.0, rtol=1e-12)
    np.testing.assert_allclose(ex.chained, ex.autodiff, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ex.closed_form, 6 * (3 * x + 1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ex.chained, ex.closed_form, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("t", [-1.3, 0.0, 0.4, 2.0])
def test_two_paths_sum_over_paths(t):
    ex = chain_rule.two_paths(t)
    f = dict(ex.factors)
    x, y = t**2, np.exp(t)
    np.testing.assert_allclose(f["dz/dx"], y + np.cos(x), rtol=1e-12)
    np.testing.assert_allclose(f["dz/dy"], x, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(f["dx/dt"], 2 * t, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(f["dy/dt"], np.exp(t), rtol=1e-12)
    np.testing.assert_allclose(ex.chained, ex.autodiff, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ex.chained, ex.closed_form, rtol=1e-12, atol=1e-12)
    # One path alone is not the derivative (unless the other path contributes nothing).
    if t != 0.0:
        assert abs(f["dz/dx"] * f["dx/dt"] - ex.autodiff) > 1e-6


def test_two_paths_custom_functions_have_no_closed_form():
    ex = chain_rule.two_paths(0.5, f=lambda x, y: x / (1 + y**2), g=lambda t: 3 * t, h=lambda t: t**3)
    np.testing.assert_allclose(ex.chained, ex.autodiff, rtol=1e-12)
    assert np.isnan(ex.closed_form)


@pytest.mark.parametrize(("w", "b", "x", "y"), [(0.5, -0.2, 1.5, 1.0), (-2.0, 0.3, -0.7, 0.0), (3.0, 1.0, 2.0, 0.5)])
def test_single_neuron(w, b, x, y):
    ex = chain_rule.single_neuron(w, b, x, y)
    z = w * x + b
    s = 1 / (1 + np.exp(-z))
    (_, dl_dyhat), (_, dyhat_dz), (_, dz_dw) = ex.factors
    np.testing.assert_allclose(dl_dyhat, 2 * (s - y), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dyhat_dz, s * (1 - s), rtol=1e-12)
    np.testing.assert_allclose(dz_dw, x, rtol=1e-12)
    np.testing.assert_allclose(ex.chained, ex.autodiff, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ex.closed_form, 2 * (s - y) * s * (1 - s) * x, rtol=1e-12, atol=1e-15)


def test_sigmoid_derivative_at_most_a_quarter_on_a_dense_grid():
    m = chain_rule.sigmoid_derivative_max()
    assert m <= 0.25 + 1e-15
    assert m >= 0.25 - 1e-12  # attained at x = 0, which is on the grid


def test_sigmoid_chain_bound():
    bound = chain_rule.sigmoid_chain_bound(20)
    np.testing.assert_allclose(bound, 9.094947017729282e-13, rtol=1e-12)
    print(f"(0.25)^20 = {bound:.3e}")
    assert chain_rule.sigmoid_chain_bound(1) == 0.25


@pytest.mark.parametrize("depth", [0, -3, 2.5, True])
def test_bad_depth(depth):
    with pytest.raises(ValueError, match="expected depth >= 1"):
        chain_rule.sigmoid_chain_bound(depth)


def test_bad_grid():
    with pytest.raises(ValueError, match="expected low < high"):
        chain_rule.sigmoid_derivative_max(low=1.0, high=-1.0)

"""Minimal-ε search against the closed form of a two-class linear model."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import explain
from explain.adversarial import AttackConfig, min_eps


@pytest.fixture(scope="module")
def two_class():
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(6, 2)), jnp.float32), "b": jnp.asarray(rng.normal(size=2), jnp.float32)}
    model = explain.Model(lambda p, x: x @ p["w"] + p["b"], params, explain.InputSpec((6,), None), name="lin2")
    x = rng.normal(size=(8, 6)).astype(np.float32) * 0.3
    w, b = np.asarray(params["w"], np.float64), np.asarray(params["b"], np.float64)
    margin = x @ (w[:, 0] - w[:, 1]) + (b[0] - b[1])
    exact = np.abs(margin) / np.abs(w[:, 0] - w[:, 1]).sum()  # L∞: FGSM moves the margin by ε‖w0 − w1‖₁
    return model, x, exact


def test_bisection_brackets_the_closed_form(two_class):
    model, x, exact = two_class
    r = min_eps(model, x, eps_max=2.0, bisect_steps=12, config=AttackConfig("fgsm"))
    eps = np.asarray(r.eps, np.float64)
    assert np.all(np.asarray(r.found)) and r.label_source == "predictions"
    assert np.all(eps >= exact - 1e-5) and np.all(eps <= exact + 2.0 / 2**12 + 1e-5)
    flipped = np.argmax(np.asarray(model.apply(model.params, r.x_adv)), 1) != np.argmax(
        np.asarray(model.apply(model.params, jnp.asarray(x))), 1
    )
    assert np.all(flipped)


def test_grid_picks_the_first_flipping_eps_and_inf_when_none(two_class):
    model, x, exact = two_class
    grid = [0.0, 0.05, 0.1, 0.2, 0.4]
    r = min_eps(model, x, grid=grid, config=AttackConfig("fgsm"))
    for e, ex in zip(np.asarray(r.eps), exact):
        expected = next((g for g in grid if g >= ex), np.inf)
        assert e == pytest.approx(expected)
    assert np.array_equal(np.asarray(r.found), np.isfinite(np.asarray(r.eps)))


def test_search_errors(two_class):
    model, x, _ = two_class
    with pytest.raises(ValueError, match="unknown search 'golden'"):
        min_eps(model, x, eps_max=1.0, search="golden")
    with pytest.raises(ValueError, match="needs eps_max"):
        min_eps(model, x, search="bisect")
    with pytest.raises(ValueError, match=r"expected eps >= 0 \(finite\)"):
        min_eps(model, x, grid=[0.1, -1.0])
    with pytest.raises(ValueError, match="needs an explicit key"):
        min_eps(model, x, eps_max=1.0, config=AttackConfig("pgd"), key=None)

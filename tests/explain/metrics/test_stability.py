"""Stability: zero for a linear model's gradient, positive and keyed for a curved one, the frozen target, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from beartype import beartype
from jaxtyping import jaxtyped

import explain
from explain.metrics import local_lipschitz, max_sensitivity


def checked(fn):
    """``fn`` with its jaxtyping annotations checked by beartype (test time only, as tests/explain/test_annotations.py)."""
    return jaxtyped(typechecker=beartype)(fn)


def _linear_classifier() -> explain.Model:
    w = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)), jnp.float32)
    spec = explain.InputSpec(shape=(6,), value_range=(0.0, 1.0))
    return explain.Model(lambda p, x: x @ p, w, spec, name="linear")


@pytest.fixture(scope="module")
def rows():
    return np.random.default_rng(1).uniform(size=(4, 6)).astype(np.float32)


@pytest.mark.parametrize("metric", [max_sensitivity, local_lipschitz])
def test_a_linear_models_gradient_does_not_move(metric, rows, key):
    # The gradient of x @ w is w wherever x is; radius 0.3 also makes some predictions flip, and the target
    # frozen at x keeps explaining the same class, so the map still does not move.
    m = _linear_classifier()
    out = checked(metric)(m, rows, method="vanilla_gradient", key=key, radius=0.3, n_samples=4)
    np.testing.assert_array_equal(out, np.zeros(4))
    moved = [
        np.clip(
            rows
            + np.asarray(
                jax.random.uniform(
                    jax.random.fold_in(jax.random.fold_in(key, 0), i), rows.shape, minval=-0.3, maxval=0.3
                )
            ),
            0,
            1,
        )
        for i in range(4)
    ]  # the module's perturbations
    pred = [np.argmax(np.asarray(m.apply(m.params, p)), axis=1) for p in [rows, *moved]]
    assert any((p != pred[0]).any() for p in pred[1:])  # some prediction did flip


def test_a_curved_model_moves_and_the_estimates_agree_with_their_definitions(nnx_mlp, key):
    x = np.random.default_rng(2).normal(size=(3, 5)).astype(np.float32)
    sens = np.asarray(max_sensitivity(nnx_mlp, x, method="vanilla_gradient", key=key, radius=0.1, n_samples=3))
    lip = np.asarray(local_lipschitz(nnx_mlp, x, method="vanilla_gradient", key=key, radius=0.1, n_samples=3))
    assert np.all(sens > 0) and np.all(lip > 0)
    # By hand: the same perturbations (key folded as the module does), the gradient at each, the worst ratio.
    g0 = np.asarray(explain.vanilla_gradient(nnx_mlp, x, target="pred").values, np.float64)
    pred = np.argmax(np.asarray(nnx_mlp.apply(nnx_mlp.params, x)), axis=1)
    ratios_s, ratios_l = [], []
    for i in range(3):
        d = np.asarray(
            jax.random.uniform(jax.random.fold_in(jax.random.fold_in(key, 0), i), x.shape, minval=-0.1, maxval=0.1)
        )
        g = np.asarray(explain.vanilla_gradient(nnx_mlp, x + d, target=pred).values, np.float64)
        ratios_s.append(np.linalg.norm(g - g0, axis=1) / np.linalg.norm(g0, axis=1))
        ratios_l.append(np.linalg.norm(g - g0, axis=1) / np.linalg.norm(d, axis=1))
    np.testing.assert_allclose(sens, np.max(ratios_s, axis=0), rtol=1e-4)
    np.testing.assert_allclose(lip, np.max(ratios_l, axis=0), rtol=1e-4)
    linf = max_sensitivity(nnx_mlp, x, method="vanilla_gradient", key=key, radius=0.1, n_samples=3, norm="linf")
    assert np.all(np.asarray(linf) > 0)


def test_method_options_and_random_methods(rows, key):
    m = _linear_classifier()
    # SmoothGrad of a linear model is w too, with the same key at x and at every x + δ.
    out = max_sensitivity(m, rows, method="smoothgrad", options={"n_samples": 2}, key=key, n_samples=2)
    np.testing.assert_allclose(out, 0.0, atol=1e-6)


def test_errors(rows, key):
    m = _linear_classifier()
    with pytest.raises(ValueError, match="unknown saliency method 'gradient'"):
        max_sensitivity(m, rows, method="gradient", key=key)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['steps'\] for 'vanilla_gradient'"):
        local_lipschitz(m, rows, method="vanilla_gradient", options={"steps": 3}, key=key)
    with pytest.raises(ValueError, match="grad_cam needs image inputs"):
        max_sensitivity(m, rows, method="grad_cam", key=key)
    with pytest.raises(ValueError, match="pass an explicit key"):
        max_sensitivity(m, rows, method="vanilla_gradient", key=None)
    with pytest.raises(ValueError, match="unknown norm 'l1'"):
        max_sensitivity(m, rows, method="vanilla_gradient", key=key, norm="l1")
    with pytest.raises(ValueError, match=r"expected n_samples >= 1, got 0"):
        local_lipschitz(m, rows, method="vanilla_gradient", key=key, n_samples=0)
    with pytest.raises(ValueError, match=r"expected x of shape \(N, 6\)"):
        local_lipschitz(m, rows[:, :5], method="vanilla_gradient", key=key)

"""Saliency under attack: the overlap and rank-correlation measures, and the sweep over ε."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from explain.adversarial import AttackConfig
from explain.adversarial.explanations import saliency_under_attack, spearman, topk_overlap


def test_measures_on_closed_forms():
    a = jnp.asarray(np.random.default_rng(0).normal(size=(3, 50)))
    np.testing.assert_allclose(topk_overlap(a, a, 5), 1.0)
    np.testing.assert_allclose(spearman(a, a), 1.0, atol=1e-6)
    np.testing.assert_allclose(spearman(a, -a), -1.0, atol=1e-6)
    np.testing.assert_allclose(spearman(a, 3 * a**3 + 1), 1.0, atol=1e-6)  # ranks only
    np.testing.assert_allclose(topk_overlap(a, -a, 5), 0.0)
    b = jnp.arange(10.0)[None]
    c = b.at[0, 9].set(-1.0)  # the top feature falls to the bottom
    np.testing.assert_allclose(topk_overlap(b, c, 2), 0.5)


def test_saliency_shift_is_identity_at_eps0_and_moves_under_attack(linen_cnn):
    x = jax.random.uniform(jax.random.key(0), (4, 8, 8, 3))
    s = saliency_under_attack(
        linen_cnn, x, eps=[0.0, 0.3], key=jax.random.key(1), config=AttackConfig("pgd", steps=3), k=10
    )
    assert s.topk_overlap.shape == (2, 4) and s.spearman.shape == (2, 4) and s.k == 10
    assert s.method == "vanilla_gradient" and s.success.shape == (2, 4)
    np.testing.assert_allclose(s.topk_overlap[0], 1.0)
    np.testing.assert_allclose(s.spearman[0], 1.0, atol=1e-6)
    assert s.spearman[1].mean() < 1.0
    assert [row["eps"] for row in s.summary()] == [0.0, 0.3]
    # a callable method computing the same map gives the same measures
    import explain

    def grad_map(model, xs):
        return jnp.abs(explain.input_gradients(model, xs, target="pred").values).sum(-1)

    c = saliency_under_attack(
        linen_cnn, x, eps=[0.0, 0.3], key=jax.random.key(1), config=AttackConfig("pgd", steps=3), k=10, method=grad_map
    )
    assert c.method == "grad_map"
    np.testing.assert_allclose(c.topk_overlap, s.topk_overlap)
    np.testing.assert_allclose(c.spearman, s.spearman, atol=1e-6)


def test_saliency_errors(linen_cnn):
    x = jax.random.uniform(jax.random.key(0), (2, 8, 8, 3))
    with pytest.raises(ValueError, match=r"expected 1 <= k <= 64"):
        saliency_under_attack(linen_cnn, x, eps=[0.0], key=jax.random.key(0), k=65)
    with pytest.raises(ValueError, match="unknown saliency method 'grad'"):
        saliency_under_attack(linen_cnn, x, eps=[0.0], key=jax.random.key(0), method="grad")
    with pytest.raises(TypeError, match="method"):  # "expected method to be a saliency method name or a callable"
        saliency_under_attack(linen_cnn, x, eps=[0.0], key=jax.random.key(0), method=3)

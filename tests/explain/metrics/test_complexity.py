"""Complexity: Gini sparseness and entropy against their closed forms, and their errors."""

from __future__ import annotations

import numpy as np
import pytest
from beartype import beartype
from jaxtyping import jaxtyped

from explain.metrics import entropy, sparseness


def checked(fn):
    """``fn`` with its jaxtyping annotations checked by beartype (test time only, as tests/explain/test_annotations.py)."""
    return jaxtyped(typechecker=beartype)(fn)


def _one_hot_and_constant(n: int = 12) -> np.ndarray:
    one_hot = np.zeros((3, 4), np.float32)
    one_hot[1, 2] = -5.0  # magnitudes: the sign does not matter
    return np.stack([one_hot, np.full((3, 4), 0.7, np.float32)])  # (2, 3, 4): n = 12 features each


def test_gini_of_one_hot_and_constant_maps():
    g = np.asarray(checked(sparseness)(_one_hot_and_constant()))
    np.testing.assert_allclose(g, [11 / 12, 0.0], atol=1e-6)


def test_gini_matches_the_mean_absolute_difference_form():
    # Gini = Σ_ij |a_i - a_j| / (2 n Σ a): an independent formula of the same index.
    a = np.abs(np.random.default_rng(0).normal(size=(4, 30)))
    expect = np.abs(a[:, :, None] - a[:, None, :]).sum((1, 2)) / (2 * 30 * a.sum(1))
    np.testing.assert_allclose(sparseness(a), expect, rtol=1e-5)


def test_entropy_of_constant_and_one_hot_maps():
    h = np.asarray(checked(entropy)(_one_hot_and_constant()))
    np.testing.assert_allclose(h, [0.0, np.log(12)], atol=1e-6)


def test_all_zero_map_is_nan():
    zero = np.zeros((1, 5), np.float32)
    assert np.isnan(sparseness(zero)).all() and np.isnan(entropy(zero)).all()


def test_errors():
    with pytest.raises(ValueError, match=r"at least 2 features, got \(3,\)"):
        sparseness(np.ones(3))
    with pytest.raises(ValueError, match="finite relevance"):
        entropy(np.array([[1.0, np.nan]]))
    with pytest.raises(TypeError, match="numeric relevance"):
        entropy(np.array([["a", "b"]]))

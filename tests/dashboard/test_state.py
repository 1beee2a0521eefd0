"""Shared loaders: test-image filtering and load failures reported, not raised."""

from __future__ import annotations

import numpy as np
import pytest

from dashboard import state


def test_filter_indices_by_class_and_correctness():
    y = np.array([0, 1, 2, 1, 0, 2])
    correct = np.array([True, False, True, True, False, True])
    np.testing.assert_array_equal(state.filter_indices(y, correct, classes=None, correctness="all"), np.arange(6))
    np.testing.assert_array_equal(state.filter_indices(y, correct, classes=[1], correctness="all"), [1, 3])
    np.testing.assert_array_equal(state.filter_indices(y, correct, classes=[0, 1], correctness="incorrect"), [1, 4])
    np.testing.assert_array_equal(state.filter_indices(y, correct, classes=[], correctness="correct"), [0, 2, 3, 5])
    with pytest.raises(ValueError, match="expected correctness 'all', 'correct' or 'incorrect', got 'wrong'"):
        state.filter_indices(y, correct, classes=None, correctness="wrong")


def test_unknown_model_is_a_load_failure():
    failure = state.try_bundle("no_such_model")
    assert isinstance(failure, state.LoadFailure)
    assert "unknown model 'no_such_model'" in failure.message


def test_test_predictions_match_a_direct_forward_pass():
    p = state.test_predictions("digits_cnn")
    b = state.bundle("digits_cnn")
    probs = state.probabilities("digits_cnn", b.dataset.test.x[:7])
    np.testing.assert_array_equal(p.pred[:7], probs.argmax(1))
    np.testing.assert_allclose(p.confidence[:7], probs.max(1), rtol=1e-5)
    np.testing.assert_array_equal(p.correct, p.pred == b.dataset.test.y)
    assert len(p.pred) == len(b.dataset.test)  # one prediction per test image, whatever the chunking


def test_compilation_cache_can_be_turned_off(monkeypatch):
    import jax

    before = jax.config.jax_compilation_cache_dir
    monkeypatch.setenv(state.CACHE_ENV, "")
    jax.config.update("jax_compilation_cache_dir", None)
    try:
        assert state.enable_compilation_cache() is None
        assert jax.config.jax_compilation_cache_dir is None
    finally:
        jax.config.update("jax_compilation_cache_dir", before)

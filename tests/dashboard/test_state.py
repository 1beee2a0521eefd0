"""Shared loaders: test-image filtering and load failures reported, not raised."""

from __future__ import annotations

import numpy as np
import pytest

from dashboard import state
from explain import specs


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
    failure = state.try_entry("no_such_model")
    assert isinstance(failure, state.LoadFailure)
    assert "unknown model 'no_such_model'" in failure.message


def test_shipped_models_are_specs_resolved_with_their_test_split():
    e = state.entry("digits_cnn")
    resolved = specs.resolve("digits_cnn")
    assert e.key == e.name == "digits_cnn" and e.shipped and e.is_image and not e.is_tabular
    assert e.class_names == resolved.class_names and e.x.shape[0] == len(resolved.dataset.test)
    np.testing.assert_array_equal(e.labels, resolved.dataset.test.y)
    assert state.twins("shapes_cnn") == ("shapes_cnn_robust",) and state.twins("digits_cnn") == ()


def test_class_names_fall_back_to_numbered_classes():
    import explain

    model = explain.as_model(state.entry("digits_cnn").model)
    assert state.class_names_of(model, None, ("a", "b")) == tuple(f"class {i}" for i in range(10))  # wrong count
    assert state.class_names_of(model, None, tuple("abcdefghij"))[:2] == ("a", "b")
    assert state.class_names_of(state.entry("friedman1_mlp").model, ("a",)) is None  # regression


def test_test_predictions_match_a_direct_forward_pass():
    p = state.test_predictions("digits_cnn")
    e = state.entry("digits_cnn")
    probs = state.probabilities("digits_cnn", e.x[:7])
    np.testing.assert_array_equal(p.pred[:7], probs.argmax(1))
    np.testing.assert_allclose(p.confidence[:7], probs.max(1), rtol=1e-5)
    np.testing.assert_array_equal(p.correct, p.pred == e.labels)
    assert len(p.pred) == e.n  # one prediction per test image, whatever the chunking

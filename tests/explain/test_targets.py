import jax
import jax.numpy as jnp
import numpy as np
import pytest

from explain import targets


@pytest.fixture
def outs():
    return jnp.array([[1.0, 2.0, 0.5], [3.0, -1.0, 0.0]])


def test_shortcuts_resolve_to_the_documented_scores(linen_cnn, outs):
    fn, aux, _ = targets.resolve(linen_cnn, None, 2)
    np.testing.assert_allclose(fn(outs, aux), [2.0, 3.0])  # predicted logit
    fn, aux, _ = targets.resolve(linen_cnn, 2, 2)
    np.testing.assert_allclose(fn(outs, aux), [0.5, 0.0])
    fn, aux, _ = targets.resolve(linen_cnn, np.array([0, 1]), 2)
    np.testing.assert_allclose(fn(outs, aux), [1.0, -1.0])


def test_prob_and_log_prob(linen_cnn, outs):
    p = jax.nn.softmax(outs, axis=1)
    fn, aux, _ = targets.resolve(linen_cnn, targets.class_score(1, "prob"), 2)
    np.testing.assert_allclose(fn(outs, aux), p[:, 1], rtol=1e-6)
    fn, aux, _ = targets.resolve(linen_cnn, targets.class_score("pred", "log_prob"), 2)
    np.testing.assert_allclose(fn(outs, aux), jnp.log(p.max(axis=1)), rtol=1e-6)


def test_losses(linen_cnn, nnx_mlp, outs):
    fn, aux, name = targets.resolve(linen_cnn, "loss", 2, labels=np.array([2, 0]))
    expected = -jnp.log(jax.nn.softmax(outs, axis=1)[jnp.arange(2), jnp.array([2, 0])])
    np.testing.assert_allclose(fn(outs, aux), expected, rtol=1e-6)
    assert name == "loss[ce]"
    fn, aux, name = targets.resolve(nnx_mlp, targets.loss(np.ones((2, 3)), "mse"), 2)
    np.testing.assert_allclose(fn(outs, aux), ((outs - 1) ** 2).mean(axis=1), rtol=1e-6)


def test_custom_callable(linen_cnn, outs):
    fn, aux, name = targets.resolve(linen_cnn, lambda o: o.sum(axis=1), 2)
    np.testing.assert_allclose(fn(outs, aux), outs.sum(axis=1))
    assert name == "<lambda>"


@pytest.mark.parametrize(
    "target, labels, match",
    [
        (3, None, r"class index 3 out of range; model .* has 3 classes \(0..2\)"),
        (np.array([0, -1]), None, r"class index -1 out of range"),
        (np.array([0, 1, 2]), None, r"one class index per sample, shape \(2,\), got \(3,\)"),
        (np.array([0.5, 1.0]), None, r"class indices as integers"),
        ("loss", None, r"needs labels="),
        ("loss", np.array([0, 7]), r"class index 7 out of range"),
        ("best", None, r"unknown target 'best'"),
    ],
)
def test_bad_targets_raise_clear_errors(linen_cnn, target, labels, match):
    with pytest.raises((ValueError, TypeError), match=match):
        targets.resolve(linen_cnn, target, 2, labels=labels)


def test_class_target_on_regression_model_is_refused(nnx_mlp):
    import dataclasses

    reg = dataclasses.replace(nnx_mlp, output_kind="regression")
    with pytest.raises(ValueError, match="class targets need a classification model"):
        targets.resolve(reg, 1, 2)
    with pytest.raises(ValueError, match="cross-entropy loss needs a classification model"):
        targets.resolve(reg, targets.loss(np.array([0, 1]), "ce"), 2)
    with pytest.raises(ValueError, match="output index 5 out of range"):
        targets.resolve(reg, targets.output(5), 2)


def test_scalar_regression_labels_are_refused(nnx_mlp):
    import dataclasses

    reg = dataclasses.replace(nnx_mlp, output_kind="regression")
    with pytest.raises(ValueError, match=r"expected 2 regression labels"):
        targets.resolve(reg, "loss", 2, labels=1.0)

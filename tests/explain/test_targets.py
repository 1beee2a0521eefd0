import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from explain import targets


@pytest.fixture
def outs():
    return jnp.array([[1.0, 2.0, 0.5], [3.0, -1.0, 0.0]])


def _resolve(model, target, n, labels=None):
    t = targets.resolve(model, target, n, labels=labels)
    return t.fn, t.aux, t.name


def test_shortcuts_resolve_to_the_documented_scores(linen_cnn, outs):
    fn, aux, _ = _resolve(linen_cnn, None, 2)
    np.testing.assert_allclose(fn(outs, aux), [2.0, 3.0])  # predicted logit
    fn, aux, _ = _resolve(linen_cnn, 2, 2)
    np.testing.assert_allclose(fn(outs, aux), [0.5, 0.0])
    fn, aux, _ = _resolve(linen_cnn, np.array([0, 1]), 2)
    np.testing.assert_allclose(fn(outs, aux), [1.0, -1.0])


def test_prob_and_log_prob(linen_cnn, outs):
    p = jax.nn.softmax(outs, axis=1)
    fn, aux, _ = _resolve(linen_cnn, targets.class_score(1, "prob"), 2)
    np.testing.assert_allclose(fn(outs, aux), p[:, 1], rtol=1e-6)
    fn, aux, _ = _resolve(linen_cnn, targets.class_score("pred", "log_prob"), 2)
    np.testing.assert_allclose(fn(outs, aux), jnp.log(p.max(axis=1)), rtol=1e-6)


def test_losses(linen_cnn, nnx_mlp, outs):
    fn, aux, name = _resolve(linen_cnn, "loss", 2, np.array([2, 0]))
    expected = -jnp.log(jax.nn.softmax(outs, axis=1)[jnp.arange(2), jnp.array([2, 0])])
    np.testing.assert_allclose(fn(outs, aux), expected, rtol=1e-6)
    assert name == "loss[ce]"
    fn, aux, name = _resolve(nnx_mlp, targets.loss(np.ones((2, 3)), "mse"), 2)
    np.testing.assert_allclose(fn(outs, aux), ((outs - 1) ** 2).mean(axis=1), rtol=1e-6)


def test_custom_callable(linen_cnn, outs):
    fn, aux, name = _resolve(linen_cnn, lambda o: o.sum(axis=1), 2)
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
        _resolve(linen_cnn, target, 2, labels)


def test_class_target_on_regression_model_is_refused(nnx_mlp):
    import dataclasses

    reg = dataclasses.replace(nnx_mlp, output_kind="regression")
    with pytest.raises(ValueError, match="class targets need a classification model"):
        _resolve(reg, 1, 2)
    with pytest.raises(ValueError, match="loss .ce. needs a classification model"):
        _resolve(reg, targets.loss(np.array([0, 1]), "ce"), 2)
    with pytest.raises(ValueError, match="output index 5 out of range"):
        _resolve(reg, targets.output(5), 2)


def test_scalar_regression_labels_are_refused(nnx_mlp):
    import dataclasses

    reg = dataclasses.replace(nnx_mlp, output_kind="regression")
    with pytest.raises(ValueError, match=r"expected 2 regression labels"):
        _resolve(reg, "loss", 2, 1.0)


def test_all_is_refused_unless_allowed(linen_cnn):
    with pytest.raises(ValueError, match="target='all' is not supported"):
        targets.resolve(linen_cnn, "all", 2)
    assert targets.resolve(linen_cnn, "all", 2, allow_all=True).all_outputs


def test_bound_target_rows_and_tile_slice_the_per_row_data(linen_cnn, outs):
    t = targets.resolve(linen_cnn, np.array([2, 0]), 2)
    np.testing.assert_array_equal(t.rows(np.array([1, 1, 0])).aux, [0, 0, 2])
    np.testing.assert_array_equal(t.tile(2).aux, [2, 0, 2, 0])


def _exact_ce_gradient(z: np.ndarray, y: int) -> np.ndarray:
    """``softmax(z) - onehot(y)`` in float64 with the true-class entry as ``-Σ_{k≠y} p_k`` (no cancellation)."""
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    g = p.copy()
    g[:, y] = -np.delete(p, y, axis=1).sum(axis=1)
    return g


def test_cross_entropy_gradient_is_exact_when_the_true_class_saturates():
    # p_y rounds to 1 in float32; the textbook form's gradient entry p_y - 1 would be exactly 0.
    z = jnp.array([[19.5, 0.0, -1.0, -3.0]], jnp.float32)
    y = jnp.array([0])
    g = jax.grad(lambda z: targets.cross_entropy(z, y).sum())(z)
    np.testing.assert_allclose(g, _exact_ce_gradient(np.asarray(z, np.float64), 0), rtol=1e-5)
    assert float(g[0, 0]) < 0


@settings(max_examples=60, deadline=None)
@example(gap=79.0, rest=[5.0, -4.0], label=0)  # one entry at e^-88: a float32 denormal, flushed to 0
@given(
    gap=st.floats(0.0, 80.0),
    rest=st.lists(st.floats(-5.0, 5.0), min_size=2, max_size=6),
    label=st.integers(0, 6),
)
def test_cross_entropy_float32_gradient_matches_float64(gap, rest, label):
    """Relative 1e-5 (max-norm) against float64 for logit gaps up to 80: below e^-87 float32 has no normal numbers."""
    k = len(rest) + 1
    y = label % k
    z = np.insert(np.asarray(rest, np.float64), y, max(rest) + gap)[None].astype(np.float32)
    g32 = np.asarray(jax.grad(lambda z: targets.cross_entropy(z, jnp.array([y])).sum())(jnp.asarray(z)))
    g64 = _exact_ce_gradient(z.astype(np.float64), y)
    scale = np.abs(g64).max()
    # entries below float32's smallest normal number (e^-87) are flushed to zero by XLA on CPU
    assert np.abs(g32 - g64).max() <= 1e-5 * scale + np.finfo(np.float32).tiny
    assert g32[0, y] < 0  # never cancels to 0


def test_margin_losses_match_their_definitions(linen_cnn):
    z = jnp.array([[3.0, 1.0, -2.0], [0.5, 4.0, 1.5]])
    y = np.array([0, 2])
    cw = _resolve(linen_cnn, targets.loss(y, "cw"), 2)
    np.testing.assert_allclose(cw[0](z, cw[1]), [1.0 - 3.0, 4.0 - 1.5])
    d = _resolve(linen_cnn, targets.loss(y, "dlr"), 2)
    np.testing.assert_allclose(d[0](z, d[1]), [(1.0 - 3.0) / (3.0 + 2.0), (4.0 - 1.5) / (4.0 - 0.5)], rtol=1e-6)
    assert d[2] == "loss[dlr]"


def test_dlr_is_invariant_to_shifting_and_scaling_the_logits(linen_cnn):
    z = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.float32)
    y = jnp.array([0, 1, 2, 0])
    np.testing.assert_allclose(targets.dlr(1000.0 * z + 7.0, y), targets.dlr(z, y), rtol=1e-4)


def test_margin_loss_gradients_match_finite_differences(nnx_mlp):
    from testlib import central_difference, to_float64

    import explain

    with jax.enable_x64(True):
        model = to_float64(nnx_mlp)
        x = np.random.default_rng(5).normal(size=(1, 5))
        for kind in ("cw", "dlr"):
            target = targets.loss(np.array([1]), kind)
            g = np.asarray(explain.input_gradients(model, x, target=target).values)
            bound = explain.gradients.prepare(model, x, target=target).target
            fd = central_difference(lambda v, bound=bound: bound(model.apply(model.params, v[None]))[0], x[0])
            np.testing.assert_allclose(g[0], fd, rtol=1e-5, atol=1e-9)


def test_margin_losses_need_a_classifier_and_dlr_three_classes(nnx_mlp):
    import dataclasses

    reg = dataclasses.replace(nnx_mlp, output_kind="regression")
    with pytest.raises(ValueError, match="loss .cw. needs a classification model"):
        targets.resolve(reg, targets.loss(np.array([0, 1]), "cw"), 2)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        targets.loss(np.array([0]), "hinge")


def test_dlr_needs_three_classes():
    from saliency_testlib import linear_apply, make_model

    two = make_model(linear_apply, (4,), k=2)
    with pytest.raises(ValueError, match="loss .dlr. needs at least 3 classes; .* has 2"):
        targets.resolve(two, targets.loss(np.array([0, 1]), "dlr"), 2)


def test_targeted_dlr_matches_its_definition_and_is_scale_invariant():
    from saliency_testlib import linear_apply, make_model

    four = make_model(linear_apply, (4,), k=5)
    z = jnp.array([[3.0, 1.0, -2.0, 0.5, -1.0], [0.5, 4.0, 1.5, 2.0, -3.0]])
    fn, aux, name = _resolve(four, targets.loss(np.array([0, 1]), "dlr_targeted", goal=np.array([2, 3])), 2)
    # sorted rows: [3, 1, 0.5, -1, -2] and [4, 2, 1.5, 0.5, -3]
    expected = [(-2.0 - 3.0) / (3.0 - 0.5 * (0.5 - 1.0)), (2.0 - 4.0) / (4.0 - 0.5 * (1.5 + 0.5))]
    np.testing.assert_allclose(fn(z, aux), expected, rtol=1e-6)
    np.testing.assert_allclose(fn(100.0 * z - 3.0, aux), expected, rtol=1e-5)
    assert name == "loss[dlr_targeted]"


def test_targeted_dlr_needs_a_goal_unlike_the_label_and_four_classes():
    from saliency_testlib import linear_apply, make_model

    three = make_model(linear_apply, (4,), k=3)
    five = make_model(linear_apply, (4,), k=5)
    with pytest.raises(ValueError, match="goal= .* goes with loss 'dlr_targeted'"):
        targets.loss(np.array([0]), "dlr_targeted")
    with pytest.raises(ValueError, match="goal= .* goes with loss 'dlr_targeted'"):
        targets.loss(np.array([0]), "cw", goal=1)
    with pytest.raises(ValueError, match="needs at least 4 classes; .* has 3"):
        targets.resolve(three, targets.loss(np.array([0]), "dlr_targeted", goal=1), 1)
    with pytest.raises(ValueError, match="goal classes different from the labels"):
        targets.resolve(five, targets.loss(np.array([0, 1]), "dlr_targeted", goal=np.array([2, 1])), 2)
    with pytest.raises(ValueError, match="goal class 7 out of range"):
        targets.resolve(five, targets.loss(np.array([0]), "dlr_targeted", goal=7), 1)


def test_loss_kind_strings_select_the_loss(linen_cnn):
    y = np.array([0, 2])
    for kind in ("ce", "cw", "dlr"):
        assert targets.resolve(linen_cnn, f"loss:{kind}", 2, labels=y).name == f"loss[{kind}]"
    with pytest.raises(ValueError, match="unknown target 'loss:hinge'.*'loss:cw'"):
        targets.resolve(linen_cnn, "loss:hinge", 2, labels=y)


def _loss_and_aux(kind: str, k: int, y: int):
    if kind == "dlr_targeted":
        return targets.dlr_targeted, jnp.array([[y, (y + 1) % k]])
    if kind == "mse":
        return targets.mean_squared_error, jnp.arange(k, dtype=jnp.float32)[None] / k
    return {"ce": targets.cross_entropy, "cw": targets.cw_margin, "dlr": targets.dlr}[kind], jnp.array([y])


@settings(max_examples=25, deadline=None)
@example(kind="dlr", gap=0.0, rest=[0.0, 0.0, 1.0, 1.0], label=0)  # the label ties the 3rd logit
@given(
    kind=st.sampled_from(targets.LOSS_KINDS),
    gap=st.floats(0.0, 80.0),
    rest=st.lists(st.floats(-5.0, 5.0), min_size=4, max_size=7),
    label=st.integers(0, 7),
)
def test_every_loss_float32_gradient_matches_float64(kind, gap, rest, label):
    """Each loss kind's float32 gradient against the same function in float64, relative 1e-5 (max-norm)."""
    k = len(rest) + 1
    y = label % k
    z = np.insert(np.asarray(rest, np.float64), y, max(rest) + gap)[None]
    # distinct logits: the margin losses are not differentiable at ties
    z = z + np.arange(k) * 1e-2
    fn, aux = _loss_and_aux(kind, k, y)
    g32 = np.asarray(jax.grad(lambda v: fn(v, aux).sum())(jnp.asarray(z, jnp.float32)))
    with jax.enable_x64(True):
        aux64 = aux.astype(jnp.float64) if kind == "mse" else aux
        g64 = np.asarray(jax.grad(lambda v: fn(v, aux64).sum())(jnp.asarray(z, jnp.float64)))
    # CE is exact to the last denormal; the margin losses' gradients are O(1/denominator) or exactly 0 at
    # ties (where float64 keeps rounding noise of ~1e-10), so they get an absolute floor
    floor = 1e-30 if kind == "ce" else 1e-7
    assert np.abs(g32 - g64).max() <= 1e-5 * np.abs(g64).max() + floor

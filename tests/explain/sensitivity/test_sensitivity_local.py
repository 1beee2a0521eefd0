"""Local sensitivity: gradients against finite differences, gradient × input on a linear model, batch = single rows."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from testlib import central_difference, to_float64
from testlib import linear_regression_model as linear_model

import explain
from explain.sensitivity import local_sensitivity


def test_gradient_times_input_sums_to_first_order_change_on_linear_model():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        w, x = rng.normal(size=6), rng.normal(size=(4, 6))
        m = linear_model(w, 0.7)
        s = local_sensitivity(m, x, methods=("grad", "gxi", "ig"), ig_baseline="zero", ig_steps=4)
        t0 = float(m.apply(m.params, jnp.zeros((1, 6)))[0, 0])
        np.testing.assert_allclose(s.values["grad"], np.broadcast_to(w, x.shape), rtol=1e-12)
        np.testing.assert_allclose(s.values["gxi"].sum(axis=1), s.target_values - t0, rtol=1e-12, atol=1e-12)
        # IG of a linear model with a zero baseline is gradient × input exactly.
        np.testing.assert_allclose(s.values["ig"], s.values["gxi"], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "target",
    [None, explain.targets.class_score(1, "prob"), "loss"],
    ids=["logit", "prob", "loss"],
)
def test_gradient_matches_central_differences_for_each_target_kind(nnx_mlp, target):
    with jax.enable_x64(True):
        m = to_float64(nnx_mlp)
        x = np.random.default_rng(1).normal(size=(1, 5))
        labels = np.array([2])
        s = local_sensitivity(m, x, target=target, labels=labels, methods="grad")
        fn, aux, _ = explain.sensitivity.local.resolve_target(m, jnp.asarray(x), target, labels)
        numeric = central_difference(lambda z: fn(m.apply(m.params, z), aux)[0], x)
        np.testing.assert_allclose(s.values["grad"], numeric, rtol=1e-6, atol=1e-9)


def test_regression_output_target_and_batch_equals_single_rows():
    with jax.enable_x64(True):
        m = to_float64(dataclasses.replace(_nnx_regression(), name="reg"))
        rng = np.random.default_rng(2)
        x, reference = rng.normal(size=(2, 5)), rng.normal(size=(6, 5))
        methods = ("grad", "gxi", "ig")
        batch = local_sensitivity(m, x, methods=methods, reference=reference, ig_steps=8)
        for i in range(2):
            # IG too: its baseline comes from the reference, never from the other rows of the batch.
            one = local_sensitivity(m, x[i : i + 1], methods=methods, reference=reference, ig_steps=8)
            for method in methods:
                np.testing.assert_allclose(one.values[method][0], batch.values[method][i], rtol=1e-10, atol=1e-12)
        # IG completeness against the "mean" baseline (the feature means of the reference rows).
        f = lambda z: m.apply(m.params, z)[:, 0]  # noqa: E731
        expected = np.asarray(f(x) - f(reference.mean(0, keepdims=True)))
        np.testing.assert_allclose(batch.values["ig"].sum(1), expected, rtol=1e-6, atol=1e-8)
        assert batch.settings["ig_baseline"] == {"mean of reference": reference.mean(0).tolist()}
        # Feature means (F,) as the reference give the same attributions as the rows they summarise.
        means = local_sensitivity(m, x, methods="ig", reference=reference.mean(0), ig_steps=8)
        np.testing.assert_allclose(means.values["ig"], batch.values["ig"], rtol=1e-10, atol=1e-12)


def _nnx_regression() -> explain.Model:
    from flax import nnx
    from testlib import TinyMLP

    return explain.from_nnx(TinyMLP(nnx.Rngs(3), out=1), input_shape=(5,), output_kind="regression")


def test_ranked_orders_by_magnitude_and_keeps_sign():
    m = linear_model(np.array([0.5, -3.0, 1.0, 0.0], np.float32), 0.0)
    s = local_sensitivity(m, np.ones((2, 4), np.float32), methods=("grad",))
    assert s.ranked(0, "grad") == [("f1", -3.0), ("f2", 1.0), ("f0", 0.5), ("f3", 0.0)]
    frame = s.to_frame()
    assert list(frame.loc[frame.row == 1, "feature"]) == ["f1", "f2", "f0", "f3"]
    assert "f1 -3" in str(s)
    with pytest.raises(ValueError, match="method 'ig' was not computed"):
        s.ranked(0, "ig")


def test_unknown_method_raises_before_compiling(nnx_mlp):
    with pytest.raises(ValueError, match="unknown method 'shap'"):
        local_sensitivity(nnx_mlp, np.zeros((1, 5), np.float32), methods=("grad", "shap"))


def test_ig_needs_a_reference_for_the_mean_baseline(nnx_mlp):
    row = np.ones((1, 5), np.float32)
    with pytest.raises(ValueError, match=r"no reference was given.*identically 0"):
        local_sensitivity(nnx_mlp, row, methods="ig")
    with pytest.raises(ValueError, match="both an ig_baseline array and a reference"):
        local_sensitivity(nnx_mlp, row, methods="ig", ig_baseline=np.zeros(5), reference=np.zeros(5))
    with pytest.raises(ValueError, match="finite reference"):
        local_sensitivity(nnx_mlp, row, methods="ig", reference=np.full(5, np.nan))

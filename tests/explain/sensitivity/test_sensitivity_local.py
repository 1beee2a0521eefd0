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
from explain import gradients
from explain.saliency.integrated import integrated_gradients
from explain.sensitivity import LocalSensitivity, local_sensitivity

ALL = ("vanilla_gradient", "gradient_x_input", "integrated_gradients")


def test_gradient_times_input_sums_to_first_order_change_on_linear_model():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        w, x = rng.normal(size=6), rng.normal(size=(4, 6))
        m = linear_model(w, 0.7)
        s = local_sensitivity(m, x, methods=ALL, baseline="zero", steps=4)
        t0 = float(m.apply(m.params, jnp.zeros((1, 6)))[0, 0])
        np.testing.assert_allclose(s.values["vanilla_gradient"], np.broadcast_to(w, x.shape), rtol=1e-12)
        np.testing.assert_allclose(
            s.values["gradient_x_input"].sum(axis=1), s.target_values - t0, rtol=1e-12, atol=1e-12
        )
        # IG of a linear model with a zero baseline is gradient × input exactly.
        np.testing.assert_allclose(
            s.values["integrated_gradients"], s.values["gradient_x_input"], rtol=1e-10, atol=1e-12
        )
        assert s.settings["baseline"] == "zero" and s.settings["steps"] == 4


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
        s = local_sensitivity(m, x, target=target, labels=labels, methods="vanilla_gradient")
        bound = gradients.prepare(
            m, x, target=target, labels=labels
        ).target  # the predicted class frozen at x, as in the method
        numeric = central_difference(lambda z: bound(m.apply(m.params, z))[0], x)
        np.testing.assert_allclose(s.values["vanilla_gradient"], numeric, rtol=1e-6, atol=1e-9)


def test_regression_output_target_and_batch_equals_single_rows():
    with jax.enable_x64(True):
        m = to_float64(dataclasses.replace(_nnx_regression(), name="reg"))
        rng = np.random.default_rng(2)
        x, references = rng.normal(size=(2, 5)), rng.normal(size=(6, 5))
        batch = local_sensitivity(m, x, methods=ALL, references=references, steps=8)
        for i in range(2):
            # IG too: its baseline comes from the references, never from the other rows of the batch.
            one = local_sensitivity(m, x[i : i + 1], methods=ALL, references=references, steps=8)
            for method in ALL:
                np.testing.assert_allclose(one.values[method][0], batch.values[method][i], rtol=1e-10, atol=1e-12)
        # IG completeness against the "mean" baseline (the feature means of the reference rows).
        f = lambda z: m.apply(m.params, z)[:, 0]  # noqa: E731
        expected = np.asarray(f(x) - f(references.mean(0, keepdims=True)))
        np.testing.assert_allclose(batch.values["integrated_gradients"].sum(1), expected, rtol=1e-6, atol=1e-8)
        assert batch.settings["baseline"] == {"mean of references": references.mean(0).tolist()}
        # Feature means (F,) as the references give the same attributions as the rows they summarise.
        means = local_sensitivity(m, x, methods="integrated_gradients", references=references.mean(0), steps=8)
        np.testing.assert_allclose(
            means.values["integrated_gradients"], batch.values["integrated_gradients"], rtol=1e-10, atol=1e-12
        )


def test_integrated_gradients_is_the_saliency_method_with_the_same_baseline(nnx_mlp):
    with jax.enable_x64(True):
        m = to_float64(nnx_mlp)
        rng = np.random.default_rng(5)
        x, references = rng.normal(size=(3, 5)), rng.normal(size=(10, 5))
        s = local_sensitivity(m, x, target=2, methods="integrated_gradients", references=references, steps=12)
        a = integrated_gradients(m, x, target=2, baseline=references.mean(0), steps=12)
        np.testing.assert_allclose(s.values["integrated_gradients"], a.values, rtol=1e-12, atol=1e-14)


def test_results_do_not_depend_on_the_memory_budget(nnx_mlp):
    with jax.enable_x64(True):
        m = to_float64(nnx_mlp)
        rng = np.random.default_rng(3)
        x, references = rng.normal(size=(7, 5)), rng.normal(size=(4, 5))
        whole = local_sensitivity(m, x, target="loss", labels=np.arange(7) % 3, references=references, steps=5)
        # One row and one quadrature node per compiled call: 7 row chunks (the last padded), 5 node chunks.
        tiny = local_sensitivity(
            m, x, target="loss", labels=np.arange(7) % 3, references=references, steps=5, memory_budget=1
        )
        for method in ALL:
            np.testing.assert_allclose(tiny.values[method], whole.values[method], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(tiny.target_values, whole.target_values, rtol=1e-12)


def test_result_is_a_pytree_with_static_names_and_settings(nnx_mlp):
    x = np.random.default_rng(4).normal(size=(3, 5)).astype(np.float32)
    s = local_sensitivity(nnx_mlp, x, methods=("vanilla_gradient", "gradient_x_input"))
    assert isinstance(s.values["vanilla_gradient"], jax.Array) and s.values["vanilla_gradient"].shape == (3, 5)
    host = s.to_numpy()
    assert isinstance(host, LocalSensitivity) and isinstance(host.values["gradient_x_input"], np.ndarray)
    assert host.feature_names == tuple("abcde") and host.settings == s.settings
    doubled = jax.jit(lambda r: jax.tree_util.tree_map(lambda v: 2 * v, r))(s)
    np.testing.assert_allclose(doubled.values["vanilla_gradient"], 2 * s.values["vanilla_gradient"], rtol=1e-6)
    assert len(jax.tree_util.tree_leaves(s)) == 3  # two value arrays and the target values
    with pytest.raises(TypeError):
        s.settings["model"] = "other"  # settings are read-only (static pytree data)


def _nnx_regression() -> explain.Model:
    from flax import nnx
    from testlib import TinyMLP

    return explain.from_nnx(TinyMLP(nnx.Rngs(3), out=1), input_shape=(5,), output_kind="regression")


def test_ranked_orders_by_magnitude_and_keeps_sign():
    m = linear_model(np.array([0.5, -3.0, 1.0, 0.0], np.float32), 0.0)
    s = local_sensitivity(m, np.ones((2, 4), np.float32), methods=("vanilla_gradient",))
    assert s.ranked(0, "vanilla_gradient") == [("f1", -3.0), ("f2", 1.0), ("f0", 0.5), ("f3", 0.0)]
    frame = s.to_frame()
    assert list(frame.loc[frame.row == 1, "feature"]) == ["f1", "f2", "f0", "f3"]
    assert set(frame["method"]) == {"vanilla_gradient"}
    assert "f1 -3" in str(s)
    with pytest.raises(ValueError, match="method 'integrated_gradients' was not computed"):
        s.ranked(0, "integrated_gradients")


def test_unknown_method_raises_before_compiling(nnx_mlp):
    with pytest.raises(ValueError, match="unknown method 'grad'"):
        local_sensitivity(nnx_mlp, np.zeros((1, 5), np.float32), methods=("vanilla_gradient", "grad"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, "steps >= 1"),
        ({"memory_budget": 0}, "memory_budget"),
        ({"baseline": "blur"}, "unknown baseline 'blur'"),
        ({"baseline": np.zeros(4), "references": None}, r"baseline of shape \(5,\)"),
        ({"target": "all"}, "target='all' is not supported"),
    ],
)
def test_bad_options_raise(nnx_mlp, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        local_sensitivity(nnx_mlp, np.ones((2, 5), np.float32), **{"references": np.zeros(5), **kwargs})


def test_ig_needs_references_for_the_mean_baseline(nnx_mlp):
    row = np.ones((1, 5), np.float32)
    with pytest.raises(ValueError, match=r"no references were given.*identically 0"):
        local_sensitivity(nnx_mlp, row, methods="integrated_gradients")
    with pytest.raises(ValueError, match="both a baseline array and references"):
        local_sensitivity(nnx_mlp, row, methods="integrated_gradients", baseline=np.zeros(5), references=np.zeros(5))
    with pytest.raises(ValueError, match="finite references"):
        local_sensitivity(nnx_mlp, row, methods="integrated_gradients", references=np.full(5, np.nan))

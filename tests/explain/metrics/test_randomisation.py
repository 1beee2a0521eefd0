"""Model-parameter randomisation: similarity measures by hand, layer groups, re-drawing, the check itself."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from saliency_testlib import images
from scipy import stats

import explain
from explain.metrics.randomisation import (
    data_randomisation,
    parameter_groups,
    parameter_randomisation,
    randomise,
    spearman,
    ssim,
)
from explain.specs import resolve


def _two_group_model() -> explain.Model:
    """Linen-style variables with a group the forward pass never reads: randomising it changes nothing."""
    rng = np.random.default_rng(0)
    params = {
        "params": {
            "dense": {"kernel": jnp.asarray(0.1 * rng.normal(size=(48, 3)), jnp.float32)},  # tanh unsaturated
            "unused": {"kernel": jnp.asarray(rng.normal(size=(4, 4)), jnp.float32)},
        }
    }
    spec = explain.InputSpec(shape=(4, 4, 3), value_range=(0.0, 1.0))

    def apply(p, x):
        h = x.reshape(x.shape[0], -1)
        return jnp.tanh(h @ p["params"]["dense"]["kernel"]) @ jnp.eye(3)

    return explain.Model(apply, params, spec, name="two_groups")


# ----------------------------------------------------------------------------- similarity by hand


def test_spearman_by_hand_with_ties_and_signs():
    a = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 1.0, 2.0]])
    b = np.array([[1.0, 2.0, 4.0, 3.0], [0.0, 0.0, -2.0, 1.0]])  # |.|: signs do not count
    # 1 - 6 Σd² / (n (n² - 1)) = 1 - 12/60; tied ranks (1.5, 1.5, 3, 4) vs (1.5, 1.5, 4, 3): 3.5 / 4.5.
    np.testing.assert_allclose(spearman(a, b), [0.8, 3.5 / 4.5], rtol=1e-12)
    np.testing.assert_allclose(spearman(a, b), [stats.spearmanr(np.abs(u), np.abs(v))[0] for u, v in zip(a, b)])
    np.testing.assert_allclose(spearman(a, -a), [1.0, 1.0])
    assert np.isnan(spearman(np.ones((1, 4)), a[:1])).all()  # a constant map has no ranks


def test_ssim_of_a_map_with_itself_is_one_and_scale_free():
    a = np.asarray(images(3, seed=1)) - 0.5
    np.testing.assert_allclose(ssim(a, a), 1.0, rtol=1e-12)
    np.testing.assert_allclose(ssim(a, -3.0 * a), 1.0, rtol=1e-6)  # Σ_c |a| normalised to its maximum
    assert (ssim(a, np.roll(a, 1, axis=0)) < 0.9).all()


def test_ssim_by_hand_flat_against_empty():
    # Flat map (μ = 1, σ = 0) against a zero map: C₁ C₂ / ((1 + C₁) C₂) = C₁ / (1 + C₁), in every window.
    flat, empty = np.ones((1, 8, 8, 1)), np.zeros((1, 8, 8, 1))
    np.testing.assert_allclose(ssim(flat, empty), 1e-4 / (1 + 1e-4), rtol=1e-9)
    np.testing.assert_allclose(ssim(np.ones((1, 3, 2, 1)), np.zeros((1, 3, 2, 1))), 1e-4 / (1 + 1e-4), rtol=1e-9)


# ----------------------------------------------------------------------------- groups and re-drawing


def test_groups_in_forward_order(linen_cnn, nnx_mlp):
    assert parameter_groups(linen_cnn) == ("conv1", "conv2", "head")
    assert parameter_groups(nnx_mlp) == ("fc1", "fc2")
    # digits_cnn taps "block1/conv", "block1", ... "fc/dense", "fc", "head": a group covers its sublayers.
    assert parameter_groups(resolve("digits_cnn").model) == ("block1", "block2", "fc", "head")
    assert parameter_groups(_two_group_model()) == ("dense", "unused")  # no taps: pytree order


def test_randomise_matches_moments_and_keeps_the_rest():
    m = resolve("digits_cnn").model
    key = jax.random.key(4)
    new = randomise(m, ["fc"], key)
    fc, fc_new = m.params["params"]["fc"]["dense"], new["params"]["fc"]["dense"]
    kept = lambda p, g: jax.tree_util.tree_leaves(p["params"][g])  # noqa: E731
    assert all(a is b for g in ("block1", "head") for a, b in zip(kept(new, g), kept(m.params, g), strict=True))
    w, w_new = np.asarray(fc["kernel"]), np.asarray(fc_new["kernel"])
    assert w_new.shape == w.shape and w_new.dtype == w.dtype
    assert abs(w_new.std() / w.std() - 1) < 0.03 and abs(w_new.mean() - w.mean()) < 0.03 * w.std()
    assert abs(np.corrcoef(w.ravel(), w_new.ravel())[0, 1]) < 0.05  # nothing learned survives
    # Same key, same draws for a layer whatever else is re-drawn (cascading and independent agree on it).
    both = randomise(m, ["fc", "head"], key)
    np.testing.assert_array_equal(both["params"]["fc"]["dense"]["kernel"], fc_new["kernel"])


def test_randomise_nnx_state(nnx_mlp):
    new = randomise(nnx_mlp, ["fc2"], jax.random.key(0))
    assert type(new) is type(nnx_mlp.params)
    (b1, k1, b2, k2), (b1_new, k1_new, b2_new, k2_new) = (jax.tree_util.tree_leaves(p) for p in (nnx_mlp.params, new))
    assert b1_new is b1 and k1_new is k1
    assert not np.allclose(k2_new, k2) and k2_new.shape == k2.shape


# ----------------------------------------------------------------------------- the check


def test_an_unused_layer_leaves_the_map_unchanged():
    m, x = _two_group_model(), np.asarray(images(3, seed=2))[:, :4, :4]
    r = parameter_randomisation(m, x, method="vanilla_gradient", key=jax.random.key(0), layers=["unused"])
    assert r.layers == ("unused",) and r.spearman.shape == (1, 3) and r.ssim.shape == (1, 3)
    np.testing.assert_allclose(r.to_numpy().spearman, 1.0, rtol=1e-6)
    np.testing.assert_allclose(r.to_numpy().ssim, 1.0, rtol=1e-6)
    moved = parameter_randomisation(m, x, method="vanilla_gradient", key=jax.random.key(0), layers=["dense"])
    assert (np.asarray(moved.spearman) < 0.9).all()


def test_cascade_independent_and_determinism(linen_cnn):
    x, key = images(4, seed=5), jax.random.key(7)
    kw = dict(method="vanilla_gradient", key=key)
    cascade = parameter_randomisation(linen_cnn, x, **kw).to_numpy()
    assert cascade.layers == ("head", "conv2", "conv1") and cascade.method == "vanilla_gradient" and cascade.cascade
    assert cascade.spearman.shape == cascade.ssim.shape == (3, 4)
    again = parameter_randomisation(linen_cnn, x, **kw).to_numpy()
    np.testing.assert_array_equal(cascade.spearman, again.spearman)
    np.testing.assert_array_equal(cascade.ssim, again.ssim)
    other = parameter_randomisation(linen_cnn, x, method="vanilla_gradient", key=jax.random.key(8)).to_numpy()
    assert not np.allclose(cascade.spearman, other.spearman)
    single = parameter_randomisation(linen_cnn, x, cascade=False, **kw).to_numpy()
    assert not single.cascade
    np.testing.assert_array_equal(single.spearman[0], cascade.spearman[0])  # the top layer: the same model
    assert not np.allclose(single.spearman[1:], cascade.spearman[1:])


def test_tabular_maps_have_spearman_and_no_ssim(nnx_mlp):
    x = np.asarray(jax.random.normal(jax.random.key(0), (3, 5)), np.float32)
    r = parameter_randomisation(nnx_mlp, x, method="vanilla_gradient", key=jax.random.key(1)).to_numpy()
    assert r.layers == ("fc2", "fc1") and np.isfinite(r.spearman).all() and np.isnan(r.ssim).all()


def test_digits_gradient_decorrelates_when_every_layer_is_random():
    # The sanity target: the gradient's mean Spearman falls below 0.3 once all layers are random
    # (16 test images: 0.20 for key 0; the trained head alone already gives 0.28).
    spec = resolve("digits_cnn")
    x = spec.dataset.test.x[:16]
    r = parameter_randomisation(spec.model, x, method="vanilla_gradient", key=jax.random.key(0)).to_numpy()
    assert r.layers == ("head", "fc", "block2", "block1")
    assert np.nanmean(r.spearman[-1]) < 0.3 and np.nanmean(r.ssim[-1]) < 0.3


def test_errors_before_any_work(linen_cnn):
    x = images(2)
    bare = explain.Model(lambda p, x: x.reshape(x.shape[0], -1)[:, :3] * p, jnp.ones(()), linen_cnn.input_spec)
    for m in (bare, explain.Model(bare.apply, {}, linen_cnn.input_spec, name="empty")):
        with pytest.raises(ValueError, match=r"needs the model's params grouped by layer .* model '(model|empty)'"):
            parameter_randomisation(m, x, method="vanilla_gradient", key=jax.random.key(0))
    kw = dict(method="vanilla_gradient", key=jax.random.key(0))
    with pytest.raises(
        ValueError, match=r"unknown layer\(s\) \['conv3'\]; expected some of .*\['conv1', 'conv2', 'head'\]"
    ):
        parameter_randomisation(linen_cnn, x, layers=["conv3"], **kw)
    with pytest.raises(ValueError, match=r"expected at least one layer"):
        parameter_randomisation(linen_cnn, x, layers=[], **kw)
    with pytest.raises(TypeError, match=r"expected layers as a sequence of names, got the string 'head'"):
        parameter_randomisation(linen_cnn, x, layers="head", **kw)
    with pytest.raises(ValueError, match=r"parameter_randomisation is random: pass an explicit key"):
        parameter_randomisation(linen_cnn, x, method="vanilla_gradient", key=None)
    with pytest.raises(TypeError, match=r"expected options as a mapping"):
        parameter_randomisation(linen_cnn, x, options=[("steps", 4)], **kw)


# ----------------------------------------------------------------------------- data (label) randomisation


@pytest.fixture(scope="module")
def digits_label_randomisation():
    """digits_cnn retrained on 128 permuted (and, as control, true) labels for 20 epochs; gradient maps of 16 images."""
    spec = resolve("digits_cnn")
    ds = spec.dataset
    kw = dict(
        train=(ds.train.x[:128], ds.train.y[:128]), test=(ds.test.x, ds.test.y), methods=["vanilla_gradient"],
        key=jax.random.key(0), epochs=20,
    )  # fmt: skip
    return spec.model, ds.test.x[:16], kw, data_randomisation(spec.model, ds.test.x[:16], **kw).to_numpy()


def test_label_randomised_gradient_decorrelates_more_than_a_true_label_retrain(digits_label_randomisation):
    # Measured (key 0): the random-label model memorises 65% of its labels and scores 13% on the test split
    # (chance 10%); the control 83%. Gradient Spearman 0.14 against the control's 0.28, SSIM 0.15 against 0.26.
    *_, r = digits_label_randomisation
    assert r.methods == ("vanilla_gradient",) and r.spearman.shape == r.control_ssim.shape == (1, 16)
    assert r.train_accuracy > 3 * r.chance  # it memorised: the test is not void
    assert r.test_accuracy < 0.25 and r.control_test_accuracy > 0.7
    assert np.nanmean(r.spearman) < np.nanmean(r.control_spearman) - 0.08
    assert np.nanmean(r.ssim) < np.nanmean(r.control_ssim) - 0.05


def test_label_randomisation_is_deterministic_from_its_key(digits_label_randomisation):
    m, x, kw, r = digits_label_randomisation
    again = data_randomisation(m, x, **kw).to_numpy()
    for field in ("spearman", "ssim", "control_spearman", "control_ssim", "train_accuracy", "test_accuracy"):
        np.testing.assert_array_equal(getattr(again, field), getattr(r, field))


def test_label_randomisation_errors_before_any_training(digits_label_randomisation, nnx_mlp):
    m, x, kw, _ = digits_label_randomisation
    xt, yt = kw["train"]
    with pytest.raises(ValueError, match=r"expected train\[1\] as \(128,\) integer class labels in \[0, 10\)"):
        data_randomisation(m, x, **{**kw, "train": (xt, yt + 5)})
    with pytest.raises(TypeError, match=r"expected test as a pair \(x, y\)"):
        data_randomisation(m, x, **{**kw, "test": xt})
    with pytest.raises(ValueError, match=r"options name \['smoothgrad'\], which are not in methods"):
        data_randomisation(m, x, options={"smoothgrad": {}}, **kw)
    with pytest.raises(ValueError, match=r"unknown saliency method .no_such_method."):
        data_randomisation(m, x, **{**kw, "methods": ["no_such_method"]})
    with pytest.raises(ValueError, match=r"expected epochs >= 1, got 0"):
        data_randomisation(m, x, **{**kw, "epochs": 0})
    reg = explain.Model(nnx_mlp.apply, nnx_mlp.params, nnx_mlp.input_spec, output_kind="regression", name="reg")
    with pytest.raises(ValueError, match=r"retrains a classifier .* 'reg' is a regression"):
        data_randomisation(reg, np.zeros((2, 5), np.float32), **kw)

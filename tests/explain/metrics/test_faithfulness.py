"""Faithfulness: closed forms on linear and constant models, ROAD's imputation against a direct solve,
chunking independence, and the errors."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sparse
import scipy.sparse.linalg as sparse_linalg
from beartype import beartype
from jaxtyping import jaxtyped

import explain
from explain import chunking
from explain.metrics import (
    deletion,
    faithfulness_correlation,
    infidelity,
    insertion,
    linear_imputation,
    noisy_linear_imputation,
    perturbation_drops,
    road,
    subset_drops,
)
from explain.metrics.imputation import NEIGHBOUR_WEIGHTS


def checked(fn):
    """``fn`` with its jaxtyping annotations checked by beartype (test time only, as tests/explain/test_annotations.py)."""
    return jaxtyped(typechecker=beartype)(fn)


@functools.cache  # one model object per configuration: compiled functions are reused across tests
def _linear(shape, *, seed=0, positive=False, kind="regression") -> explain.Model:
    """``F(x) = flatten(x) · w + b`` (one output; ``kind="classification"`` with a second, constant logit)."""
    rng = np.random.default_rng(seed)
    d = int(np.prod(shape))
    w = np.abs(rng.normal(size=d)) if positive else rng.normal(size=d)
    params = {"w": jnp.asarray(w, jnp.float32), "b": jnp.float32(0.5)}

    def apply(p, x):
        t = x.reshape(x.shape[0], -1) @ p["w"] + p["b"]
        return t[:, None] if kind == "regression" else jnp.stack([t, jnp.zeros_like(t)], axis=1)

    spec = explain.InputSpec(shape=tuple(shape), value_range=(0.0, 1.0))
    return explain.Model(apply, params, spec, output_kind=kind, name="linear")


@functools.cache
def _constant(shape) -> explain.Model:
    """Logits ``(1, 2, 3)`` whatever the input."""
    spec = explain.InputSpec(shape=tuple(shape), value_range=(0.0, 1.0))
    return explain.Model(
        lambda p, x: jnp.broadcast_to(p, (x.shape[0], 3)) + 0 * x.sum(), jnp.array([1.0, 2.0, 3.0]), spec
    )


def _uniform(shape, seed=0):
    return np.random.default_rng(seed).uniform(0.05, 1.0, size=shape).astype(np.float32)


def test_deletion_of_a_constant_model_is_flat():
    x = _uniform((3, 6, 6, 2))
    c = checked(deletion)(_constant((6, 6, 2)), x, _uniform(x.shape, seed=1), steps=6)
    p = float(jax.nn.softmax(jnp.array([1.0, 2.0, 3.0]))[2])
    np.testing.assert_allclose(c.scores, p, rtol=1e-6)
    np.testing.assert_allclose(c.auc, p, rtol=1e-6)
    np.testing.assert_allclose(c.fractions, np.arange(7) / 6)
    assert c.kind == "deletion" and c.target_name == "prob[pred]"


def test_deletion_and_insertion_of_a_linear_model_are_exact_and_own_gradient_x_input_drops_fastest():
    # Positive weights and inputs: every feature adds to F, so removing the largest w_i x_i first is the
    # lowest curve any order can give, and each point is b + the contributions left.
    m = _linear((12,), positive=True)
    x = _uniform((4, 12))
    gxi = explain.gradient_x_input(m, x).values
    c = np.asarray(x) * np.asarray(m.params["w"])
    top_first = -np.sort(-c, axis=1)
    removed = np.concatenate([np.zeros((4, 1)), np.cumsum(top_first, axis=1)], axis=1)  # (N, 13)
    d = deletion(m, x, gxi, steps=12)
    np.testing.assert_allclose(d.scores, 0.5 + c.sum(1, keepdims=True) - removed, rtol=1e-5, atol=1e-5)
    i = checked(insertion)(m, x, gxi, steps=12)
    np.testing.assert_allclose(i.scores, 0.5 + removed, rtol=1e-5, atol=1e-5)
    rand = deletion(m, x, np.random.default_rng(3).uniform(size=x.shape), steps=12)
    assert np.all(np.asarray(d.scores) <= np.asarray(rand.scores) + 1e-5)
    assert np.all(np.asarray(d.auc) < np.asarray(rand.auc))


def test_patches_remove_whole_blocks_by_their_summed_relevance():
    m = _linear((4, 4, 1), positive=True)
    x = _uniform((2, 4, 4, 1))
    c = np.asarray(x)[..., 0] * np.asarray(m.params["w"]).reshape(4, 4)
    blocks = c.reshape(2, 2, 2, 2, 2).sum(axis=(2, 4))  # (N, 2, 2): 2x2 patches
    removed = np.concatenate([np.zeros((2, 1)), np.cumsum(-np.sort(-blocks.reshape(2, 4), axis=1), axis=1)], axis=1)
    d = deletion(m, x, explain.gradient_x_input(m, x).values, steps=4, patch=2)
    np.testing.assert_allclose(d.scores, 0.5 + c.sum((1, 2))[:, None] - removed, rtol=1e-5, atol=1e-5)


def test_baselines_and_scores():
    m = _linear((5,), kind="classification")
    x = _uniform((2, 5))
    a = np.ones_like(x)
    logit = deletion(m, x, a, steps=5, baseline=0.25, score="logit", target=0)
    np.testing.assert_allclose(logit.scores[:, -1], 0.25 * float(np.asarray(m.params["w"]).sum()) + 0.5, rtol=1e-5)
    per_sample = deletion(m, x, a, steps=5, baseline=np.full(x.shape, 0.25, np.float32), score="logit", target=0)
    np.testing.assert_allclose(per_sample.scores, logit.scores)
    prob = deletion(m, x, a, steps=5, baseline=0.25, target=0)
    np.testing.assert_allclose(prob.scores, jax.nn.sigmoid(logit.scores), rtol=1e-5)  # two logits (t, 0)


def test_chunking_does_not_change_any_result(key):
    # The known-answer cases below, again with 3 rows per call: samples and draws chunked, last chunks padded.
    # Deletion places each step in its column; correlation and infidelity also draw per (draw, sample) keys.
    cases = [
        (deletion, _linear((12,), positive=True), _uniform((4, 12)), {"steps": 12}),
        (faithfulness_correlation, _linear((10,)), _uniform((3, 10)), {"key": key, "n_subsets": 16}),
        (infidelity, _linear((4, 4, 2)), _uniform((3, 4, 4, 2)), {"key": key, "baseline": "zero"}),
    ]
    for fn, m, x, kw in cases:
        a = _uniform(x.shape, seed=4)
        whole, chunked = fn(m, x, a, **kw), fn(m, x, a, memory_budget=3 * chunking.row_bytes(m), **kw)
        np.testing.assert_allclose(
            np.asarray(getattr(whole, "scores", whole)), np.asarray(getattr(chunked, "scores", chunked)), rtol=1e-5
        )


def _direct_imputation(img: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Rong et al.'s sparse system, assembled pixel by pixel and solved directly."""
    h, w, _ = img.shape
    unknown = np.argwhere(removed)
    index = -np.ones((h, w), int)
    index[removed] = np.arange(len(unknown))
    a = sparse.lil_matrix((len(unknown), len(unknown)))
    b = np.zeros((len(unknown), img.shape[2]))
    for k, (i, j) in enumerate(unknown):
        for dy, dx, wt in NEIGHBOUR_WEIGHTS:
            y, x = i + dy, j + dx
            if 0 <= y < h and 0 <= x < w:
                a[k, k] += wt
                if removed[y, x]:
                    a[k, index[y, x]] = -wt
                else:
                    b[k] += wt * img[y, x]
    out = img.astype(np.float64).copy()
    out[removed] = sparse_linalg.spsolve(a.tocsc(), b).reshape(len(unknown), -1)
    return out


def test_linear_imputation_solves_the_papers_system():
    rng = np.random.default_rng(5)
    img = rng.uniform(size=(3, 10, 10, 2)).astype(np.float32)
    removed = np.stack([rng.uniform(size=(10, 10)) < q for q in (0.2, 0.6, 0.95)])
    removed[2, 0, 0] = False  # keep one pixel so the system is regular
    got = np.asarray(checked(linear_imputation)(jnp.asarray(img), jnp.asarray(removed), iterations=60))
    for i in range(3):
        np.testing.assert_allclose(got[i], _direct_imputation(img[i], removed[i]), atol=2e-5)
    keys = jax.random.split(jax.random.key(0), 3)
    noisy = np.asarray(noisy_linear_imputation(img, removed, keys, noise_std=0.01))
    np.testing.assert_array_equal(noisy[~removed], img[~removed])  # kept pixels untouched
    residual = (noisy - got)[removed]
    assert 0.007 < residual.std() < 0.013 and abs(residual.mean()) < 0.002


def test_imputing_a_whole_image_keeps_it_constant():
    img = np.zeros((1, 5, 5, 1), np.float32)
    got = np.asarray(linear_imputation(img, np.ones((1, 5, 5), bool), iterations=10))
    np.testing.assert_array_equal(got, 0.0)  # singular system: stays at the (empty) mean, no NaN


def test_road_most_relevant_first_loses_more_than_least_relevant_first(key):
    # A contrasting image: the relevant (bright) half is rebuilt from its neighbours, so MoRF loses more.
    m = _linear((6, 6, 1), positive=True)
    img = np.full((2, 6, 6, 1), 0.1, np.float32)
    img[:, :, :3] = 0.9
    gxi = explain.gradient_x_input(m, img).values
    morf = checked(road)(m, img, gxi, key=key, fractions=(0.25, 0.5))
    lerf = road(m, img, gxi, key=key, fractions=(0.25, 0.5), order="lerf")
    assert np.all(np.asarray(morf.scores) < np.asarray(lerf.scores))
    assert morf.kind == "road_morf" and lerf.kind == "road_lerf"
    np.testing.assert_allclose(morf.fractions, [9 / 36, 18 / 36])
    np.testing.assert_array_equal(road(m, img, gxi, key=key, fractions=(0.25, 0.5)).scores, morf.scores)  # keyed


def test_faithfulness_correlation_known_answers(key):
    m = _linear((10,))
    x = _uniform((3, 10))
    # Gradient x input of a linear model sums to the exact drop of any subset set to zero: correlation 1.
    exact = checked(faithfulness_correlation)(m, x, explain.gradient_x_input(m, x).values, key=key, n_subsets=16)
    np.testing.assert_allclose(exact, 1.0, atol=1e-5)
    rand = faithfulness_correlation(m, x, np.random.default_rng(6).normal(size=x.shape), key=key, n_subsets=16)
    assert np.all(np.asarray(rand) < 0.9)
    flat = faithfulness_correlation(_constant((10,)), x, x, key=key, n_subsets=16)
    assert np.isnan(flat).all()  # the drop never varies: undefined


def test_infidelity_known_answers(key):
    m = _linear((4, 4, 2))
    x = _uniform((3, 4, 4, 2))
    grad = explain.vanilla_gradient(m, x).values
    gxi = explain.gradient_x_input(m, x).values
    np.testing.assert_allclose(checked(infidelity)(m, x, gxi, key=key, baseline="zero"), 0.0, atol=1e-8)
    np.testing.assert_allclose(infidelity(m, x, grad, key=key), 0.0, atol=1e-8)  # local map, I·w = ΔF
    wrong = infidelity(m, x, 3 * grad, key=key)  # Iᵀ(3w) - Iᵀw = 2 Iᵀw: E = 4 σ² |w|²
    np.testing.assert_allclose(wrong, 4 * 0.01 * float((np.asarray(m.params["w"]) ** 2).sum()), rtol=0.5)
    np.testing.assert_allclose(infidelity(m, x, 3 * grad, key=key, normalize=True), 0.0, atol=1e-6)


def test_the_model_half_is_shared_between_maps(key):
    """Precomputed drops (what evaluate shares across methods) give exactly the numbers of a standalone call."""
    m, x = _linear((4, 4, 2), kind="classification"), _uniform((3, 4, 4, 2))
    maps = [explain.vanilla_gradient(m, x).values, np.random.default_rng(1).normal(size=x.shape)]
    sub = subset_drops(m, x, key=key, n_subsets=8, patch=2, subset_fraction=0.5)
    per = perturbation_drops(m, x, key=key, n_samples=8)
    assert sub.drops.shape == per.shape == (3, 8) and sub.units.shape == (3, 8, 2)  # 2 of 4 patches
    for a in maps:
        np.testing.assert_allclose(
            faithfulness_correlation(m, x, a, key=key, n_subsets=8, patch=2, subset_fraction=0.5, drops=sub),
            faithfulness_correlation(m, x, a, key=key, n_subsets=8, patch=2, subset_fraction=0.5), rtol=1e-6,
        )  # fmt: skip
        for kw in ({}, {"baseline": "zero", "normalize": True}):
            np.testing.assert_allclose(
                infidelity(m, x, a, key=key, n_samples=8, drops=per, **kw),
                infidelity(m, x, a, key=key, n_samples=8, **kw), rtol=1e-5,
            )  # fmt: skip
    with pytest.raises(ValueError, match=r"expected drops of shape \(3, 16\) from subset_drops"):
        faithfulness_correlation(m, x, maps[0], key=key, n_subsets=16, drops=sub)
    with pytest.raises(TypeError, match=r"expected drops from subset_drops \(a SubsetDrops\), got ndarray"):
        faithfulness_correlation(m, x, maps[0], key=key, n_subsets=8, drops=sub.drops)


def test_errors(key):
    m = _linear((6, 6, 1), kind="classification")
    x = _uniform((2, 6, 6, 1))
    with pytest.raises(ValueError, match=r"attributions shaped like x \(2, 6, 6, 1\), got \(2, 6, 6\)"):
        deletion(m, x, x[..., 0])
    with pytest.raises(ValueError, match=r"steps <= 9"):
        deletion(m, x, x, steps=10, patch=2)
    with pytest.raises(ValueError, match="score='logit' applies to class targets"):
        insertion(m, x, x, target=lambda out: out[:, 0], score="logit")
    with pytest.raises(ValueError, match="unknown score 'p'"):
        deletion(m, x, x, score="p")
    with pytest.raises(ValueError, match=r"expected baseline 'zero', a number, one sample \(6, 6, 1\)"):
        deletion(m, x, x, baseline=np.zeros(3))
    with pytest.raises(ValueError, match="road needs image inputs"):
        road(_linear((5,)), _uniform((2, 5)), _uniform((2, 5)), key=key)
    with pytest.raises(ValueError, match="increasing sequence of fractions"):
        road(m, x, x, key=key, fractions=(0.5, 0.2))
    with pytest.raises(ValueError, match="pass an explicit key"):
        faithfulness_correlation(m, x, x, key=None)
    with pytest.raises(ValueError, match="expected patch=1 for inputs of shape"):
        deletion(_linear((5,)), _uniform((2, 5)), _uniform((2, 5)), patch=2)
    with pytest.raises(ValueError, match="finite attributions"):
        infidelity(m, x, np.full(x.shape, np.nan), key=key)

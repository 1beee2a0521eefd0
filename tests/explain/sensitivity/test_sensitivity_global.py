"""Global rankings: ground truth on Friedman #1, the bootstrap against its definition, agreement with permutation importance."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models
from explain import gradients, sensitivity
from explain.sensitivity import global_, permutation

GRADIENTS = ("vanilla_gradient", "gradient_x_input", "integrated_gradients")


@pytest.fixture(scope="module")
def friedman():
    return models.load("friedman1_mlp")


@pytest.fixture(scope="module")
def friedman_ranking(friedman):
    x = friedman.dataset.test.x
    return sensitivity.rank(
        friedman,
        x,
        key=jax.random.key(0),
        methods=GRADIENTS,
        references=friedman.dataset.train.x,
        steps=16,
        permutation_samples=3,
    )


def test_friedman1_relevant_features_rank_top_in_95_percent_of_resamples(friedman_ranking):
    r = friedman_ranking
    assert list(r.rankings) == [*GRADIENTS, "permutation_importance"]
    for method, ranking in r.rankings.items():
        assert (np.asarray(ranking.top_k_share)[:5] >= 0.95).all(), (method, ranking.top_k_share)
        assert set(ranking.order()[5:]) == {5, 6, 7, 8, 9}, method
        assert (ranking.lower <= ranking.scores).all() and (ranking.scores <= ranking.upper).all()
    for method in GRADIENTS:
        assert -1.0 <= float(r[method].spearman) <= 1.0
    assert r["permutation_importance"].spearman is None
    assert list(r.to_frame()["method"].unique()) == list(r.rankings)


def test_bootstrap_means_are_means_of_index_resamples():
    scores = np.random.default_rng(0).exponential(size=(50, 3)).astype(np.float32)
    words = global_.uniform_words(np.random.default_rng(1), (7, 50), 50, np.uint16)
    idx = words % 50
    np.testing.assert_allclose(global_._resampled_means(words, jnp.asarray(scores)), scores[idx].mean(1), rtol=1e-5)
    # Resample b is drawn from its own segment of the key's stream, so it is the same in any chunk.
    key = jax.random.key(2)
    drawn = global_.resample_words(key, np.arange(10), 50) % 50
    expected = scores[drawn].mean(1)
    per_resample = 50 * global_._COUNT_BYTES
    budgets = {
        "default: 4 pipelined device calls of 3 resamples, the last with 2 extra ones dropped": None,
        "2 resamples per device call, one call at a time": scores.nbytes + 2 * per_resample,
        "host counting, one row per call": 1,
    }
    for what, budget in budgets.items():
        a = np.asarray(global_.bootstrap_means(scores, n_bootstrap=10, key=key, memory_budget=budget))
        np.testing.assert_allclose(a, expected, rtol=1e-5, err_msg=what)
    b = global_.bootstrap_means(scores, n_bootstrap=10, key=key)
    np.testing.assert_array_equal(b, global_.bootstrap_means(scores, n_bootstrap=10, key=key))
    assert not np.allclose(b, global_.bootstrap_means(scores, n_bootstrap=10, key=jax.random.key(3)))
    # The first 10 of 20 resamples are the 10 resamples: B only adds draws.
    np.testing.assert_allclose(global_.bootstrap_means(scores, n_bootstrap=20, key=key)[:10], b, rtol=1e-6)


def test_resample_indices_are_exactly_uniform():
    # 2^16 = 49152 + 16384: plain `word % n` would make indices below 16384 twice as likely (share 1/2, not 1/3).
    # The share of m uniform indices below 16384 has standard error sqrt(p (1 - p) / m), p = 1/3; the tolerance is
    # 5 standard errors (a biased draw is off by 1/6, over 100 standard errors).
    n, p = 49152, 1 / 3
    for name, idx in {
        "uniform_words": global_.uniform_words(np.random.default_rng(0), (200_000,), n, np.uint16) % n,
        # A quarter of the 16-bit words are >= 49152 and redrawn from each resample's child stream.
        "resample_words": global_.resample_words(jax.random.key(1), np.arange(5), n, np.uint16) % n,
    }.items():
        assert idx.max() < n
        se = np.sqrt(p * (1 - p) / idx.size)
        share = (idx < 16384).mean()
        assert abs(share - p) < 5 * se, (name, share, se)
    words = global_.resample_words(jax.random.key(1), np.arange(6), 1000)
    np.testing.assert_array_equal(global_.resample_words(jax.random.key(1), np.array([4, 1]), 1000), words[[4, 1]])
    with pytest.raises(ValueError, match=r"fewer than 2\*\*31 rows"):
        global_.word_dtype(2**31)


def test_bootstrap_spread_matches_standard_error():
    scores = np.random.default_rng(4).normal(size=(400, 1)).astype(np.float32)
    boot = np.asarray(global_.bootstrap_means(scores, n_bootstrap=400, key=jax.random.key(5)))[:, 0]
    se = float(np.std(scores) / np.sqrt(400))  # the bootstrap's target: the plug-in standard error of the mean
    # The mean of B = 400 bootstrap means has standard deviation se / sqrt(B) = 0.05 se: 0.3 se is 6 of them.
    assert abs(boot.mean() - float(scores.mean())) < 0.3 * se
    # The standard deviation of B normal-ish means has relative standard error 1 / sqrt(2 (B - 1)) = 3.5%:
    # ±20% is over 5 of them.
    assert 0.8 * se < boot.std() < 1.2 * se


def test_breast_cancer_reports_spearman_against_permutation_importance():
    b = models.load("breast_cancer_mlp")
    r = sensitivity.rank(
        b, b.dataset.test.x, key=jax.random.key(0), methods=("vanilla_gradient", "gradient_x_input"),
        permutation_samples=2,
    )  # fmt: skip
    frame = r.to_frame()
    rho = frame.groupby("method")["spearman_vs_permutation_importance"].first()
    assert np.isfinite(rho[["vanilla_gradient", "gradient_x_input"]]).all() and np.isnan(rho["permutation_importance"])
    assert "Spearman vs permutation importance" in r.table("vanilla_gradient", top=3)


def test_permutation_importance_of_an_unused_feature_is_zero_and_grows_with_the_weight():
    from testlib import linear_regression_model as linear_model

    m = linear_model(np.array([0.0, 1.0, 2.0, 4.0], np.float32), 0.5)
    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    p = sensitivity.permutation_importance(m, x, key=jax.random.key(0), n_samples=3, n_bootstrap=20, top_k=2)
    scores = np.asarray(p["permutation_importance"].scores)
    # Score k estimates |w_k| E|x - x'| = 1.128 |w_k| with relative standard error about
    # sd|x - x'| / (1.128 sqrt(64 · 3)) = 0.853 / (1.128 · 13.9) = 5.5%; weights double, so each gap is ~12 of them.
    assert scores[0] < 1e-6 * scores[1] and scores[1] < scores[2] < scores[3]
    assert p.settings["permutation_kind"] == "abs_change" and p.settings["permutation_samples"] == 3
    # For a loss target the importance is the loss increase (sklearn's definition), computed per row.
    y = np.asarray(m.apply(m.params, x))[:, 0]
    q = sensitivity.permutation_importance(
        m, x, key=jax.random.key(0), target="loss", labels=y, n_samples=3, n_bootstrap=20, top_k=2
    )
    assert (
        q.settings["permutation_kind"] == "increase" and (np.asarray(q["permutation_importance"].scores)[1:] > 0).all()
    )


def test_permutation_importance_is_its_definition_whatever_the_memory_budget():
    from testlib import linear_regression_model as linear_model

    with jax.enable_x64(True):
        w = np.array([0.3, -1.0, 2.0])
        m = linear_model(w, 0.1)
        x = np.random.default_rng(6).normal(size=(9, 3))
        key = jax.random.key(7)
        # Δ_ik = mean_r |w_k (x[π_rk(i), k] - x_ik)| with the permutations π_rk of the key, recomputed here.
        expected = np.zeros((9, 3))
        for r in range(4):
            for k in range(3):
                expected[:, k] += np.abs(w[k] * (x[permutation.permutation(key, r, k, 9), k] - x[:, k])) / 4
        p = gradients.prepare(m, x)
        for budget in (None, 1):  # one call, or one row and one feature per call
            got = permutation.permutation_rows(p, n_samples=4, key=key, kind="abs_change", memory_budget=budget)
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
        # t(x) given (as rank passes its gradient pass's target values) replaces the forward pass, same effects.
        t = np.asarray(m.apply(m.params, x))[:, 0]
        got = permutation.permutation_rows(p, n_samples=4, key=key, kind="abs_change", base=t)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


def test_ranking_does_not_depend_on_the_memory_budget(nnx_mlp):
    x = np.random.default_rng(8).normal(size=(6, 5)).astype(np.float32)
    kwargs = dict(
        key=jax.random.key(1), target="loss", labels=np.arange(6) % 3, methods=GRADIENTS, references=x, steps=3,
        n_bootstrap=7, top_k=2, permutation_samples=2,
    )  # fmt: skip
    whole, tiny = sensitivity.rank(nnx_mlp, x, **kwargs), sensitivity.rank(nnx_mlp, x, memory_budget=1, **kwargs)
    for method in whole.rankings:
        for field in ("scores", "lower", "upper", "top_k_share"):
            np.testing.assert_allclose(
                getattr(tiny[method], field), getattr(whole[method], field), rtol=1e-5, atol=1e-7, err_msg=method
            )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"key": None}, "explicit key"),
        ({"ci": 1.0}, "ci strictly between 0 and 1"),
        ({"top_k": 6}, "top_k <= 5"),
        ({"n_bootstrap": 0}, "n_bootstrap >= 1"),
        ({"methods": ()}, "nothing to rank"),
        ({"methods": "grad"}, "unknown method 'grad'"),
        ({"permutation_samples": 1, "permutation_kind": "drop"}, "unknown permutation kind"),
        ({"methods": "integrated_gradients"}, "no references were given"),
        (
            {"methods": "integrated_gradients", "references": np.zeros((2, 4))},
            r"references of shape \(5,\) .* got \(2, 4\)",
        ),
        ({"memory_budget": -1}, "memory_budget"),
        ({"methods": "vanilla_gradient", "target": "all"}, "target='all' is not supported"),
    ],
)
def test_bad_options_raise(nnx_mlp, kwargs, match):
    kwargs = {"key": jax.random.key(0), **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        sensitivity.rank(nnx_mlp, np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32), **kwargs)


def test_permutation_importance_needs_at_least_one_sample(nnx_mlp):
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="n_samples >= 1"):
        sensitivity.permutation_importance(nnx_mlp, x, key=jax.random.key(0), n_samples=0)


def test_one_row_is_refused_and_a_constant_feature_warns(nnx_mlp):
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="needs at least 2 rows"):
        sensitivity.rank(nnx_mlp, np.ones((1, 5), np.float32), key=key, methods="vanilla_gradient")
    with pytest.raises(ValueError, match="needs at least 2 rows"):
        sensitivity.interactions(nnx_mlp, np.ones((1, 5), np.float32))
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    x[:, 3] = 2.0
    with pytest.warns(RuntimeWarning, match=r"feature\(s\) \['d'\] are constant over the 4 rows"):
        r = sensitivity.rank(nnx_mlp, x, key=key, methods="vanilla_gradient", n_bootstrap=5, top_k=1)
    assert float(r["vanilla_gradient"].scores[3]) == 0.0


def test_rank_validates_rows_and_freezes_the_target_once(nnx_mlp, monkeypatch):
    from explain.model import InputSpec

    calls = {"validate": 0, "prepare": 0, "forward": 0, "target values": 0}
    originals = {"validate": InputSpec.validate, "prepare": gradients.prepare, "forward": gradients.forward}
    originals["target values"] = permutation._target_values

    def counting(name):
        def wrapper(*a, **k):
            calls[name] += 1
            return originals[name](*a, **k)

        return wrapper

    monkeypatch.setattr(InputSpec, "validate", counting("validate"))
    monkeypatch.setattr(gradients, "prepare", counting("prepare"))
    monkeypatch.setattr(gradients, "forward", counting("forward"))  # the forward pass that freezes "pred"
    monkeypatch.setattr(permutation, "_target_values", counting("target values"))  # permutations' reference t(x)
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    r = sensitivity.rank(
        nnx_mlp, x, key=jax.random.key(0), methods=GRADIENTS, references=x, steps=2,
        n_bootstrap=5, top_k=1, permutation_samples=1,
    )  # fmt: skip
    # The permutations take t(x) from the gradient pass: no forward pass of their own.
    assert calls == {"validate": 1, "prepare": 1, "forward": 1, "target values": 0}
    assert r.settings["target"] == "logit[pred]"
    sensitivity.permutation_importance(nnx_mlp, x, key=jax.random.key(0), n_samples=1, n_bootstrap=5, top_k=1)
    assert calls == {"validate": 2, "prepare": 2, "forward": 2, "target values": 1}  # no gradients: one forward pass

"""Global rankings: ground truth on Friedman #1, the bootstrap against its definition, agreement with permutation importance."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from explain import sensitivity
from explain.sensitivity import global_

models = pytest.importorskip("models")


@pytest.fixture(scope="module")
def friedman():
    return models.load("friedman1_mlp")


@pytest.fixture(scope="module")
def friedman_ranking(friedman):
    x = friedman.dataset.test.x
    return sensitivity.rank(
        friedman, x, key=jax.random.key(0), methods=("grad", "gxi", "ig"), ig_steps=16, permutation_repeats=3
    )


def test_friedman1_relevant_features_rank_top_in_95_percent_of_resamples(friedman_ranking):
    r = friedman_ranking
    assert list(r.rankings) == ["grad", "gxi", "ig", "permutation"]
    for method, ranking in r.rankings.items():
        assert (ranking.top_k_share[:5] >= 0.95).all(), (method, ranking.top_k_share)
        assert set(ranking.order()[5:]) == {5, 6, 7, 8, 9}, method
        assert (ranking.lower <= ranking.scores).all() and (ranking.scores <= ranking.upper).all()
    for method in ("grad", "gxi", "ig"):
        assert -1.0 <= r[method].spearman <= 1.0
    assert r["permutation"].spearman is None


def test_bootstrap_means_are_means_of_index_resamples():
    scores = jnp.asarray(np.random.default_rng(0).exponential(size=(50, 3)), jnp.float32)
    keys = jax.random.split(jax.random.key(1), 7)
    idx = global_._resample_indices(keys, 50)
    assert idx.shape == (7, 50) and int(idx.min()) >= 0 and int(idx.max()) < 50
    np.testing.assert_allclose(
        global_._resampled_means(idx, scores), np.asarray(scores)[np.asarray(idx)].mean(1), rtol=1e-5
    )
    # Chunked (7 resamples per call, last chunk padded) equals one call, and the key decides the result.
    a = global_.bootstrap_means(scores, n_bootstrap=10, key=jax.random.key(2))
    global_.BOOTSTRAP_BUDGET, old = 50 * 12 * 7, global_.BOOTSTRAP_BUDGET
    try:
        b = global_.bootstrap_means(scores, n_bootstrap=10, key=jax.random.key(2))
    finally:
        global_.BOOTSTRAP_BUDGET = old
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert not np.allclose(a, global_.bootstrap_means(scores, n_bootstrap=10, key=jax.random.key(3)))


def test_bootstrap_spread_matches_standard_error():
    scores = jnp.asarray(np.random.default_rng(4).normal(size=(400, 1)), jnp.float32)
    boot = np.asarray(global_.bootstrap_means(scores, n_bootstrap=400, key=jax.random.key(5)))[:, 0]
    se = float(np.std(np.asarray(scores)) / np.sqrt(400))
    assert abs(boot.mean() - float(scores.mean())) < 0.3 * se
    assert 0.8 * se < boot.std() < 1.2 * se


def test_breast_cancer_reports_spearman_against_permutation_importance():
    b = models.load("breast_cancer_mlp")
    r = sensitivity.rank(b, b.dataset.test.x, key=jax.random.key(0), methods=("grad", "gxi"), permutation_repeats=2)
    frame = r.to_frame()
    rho = frame.groupby("method")["spearman_vs_permutation"].first()
    assert np.isfinite(rho[["grad", "gxi"]]).all() and np.isnan(rho["permutation"])
    assert "Spearman vs permutation importance" in r.table("grad", top=3)


def test_permutation_importance_of_an_unused_feature_is_zero_and_grows_with_the_weight():
    from test_sensitivity_local import linear_model

    m = linear_model(np.array([0.0, 1.0, 2.0, 4.0], np.float32), 0.5)
    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    p = sensitivity.permutation_importance(m, x, key=jax.random.key(0), n_repeats=3, n_bootstrap=20, top_k=2)
    scores = p["permutation"].scores
    assert scores[0] < 1e-6 * scores[1] and scores[1] < scores[2] < scores[3]
    assert p.settings["permutation_kind"] == "abs_change"
    # For a loss target the importance is the loss increase (sklearn's definition), computed per row.
    y = np.asarray(m.apply(m.params, x))[:, 0]
    q = sensitivity.permutation_importance(
        m, x, key=jax.random.key(0), target="loss", labels=y, n_repeats=3, n_bootstrap=20, top_k=2
    )
    assert q.settings["permutation_kind"] == "increase" and (q["permutation"].scores[1:] > 0).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"key": None}, "explicit key"),
        ({"ci": 1.0}, "ci strictly between 0 and 1"),
        ({"top_k": 6}, "top_k <= 5"),
        ({"n_bootstrap": 0}, "n_bootstrap >= 1"),
        ({"methods": ()}, "nothing to rank"),
        ({"permutation_repeats": 1, "permutation_kind": "drop"}, "unknown permutation kind"),
    ],
)
def test_bad_options_raise(nnx_mlp, kwargs, match):
    kwargs = {"key": jax.random.key(0), **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        sensitivity.rank(nnx_mlp, np.zeros((4, 5), np.float32), **kwargs)

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
        friedman,
        x,
        key=jax.random.key(0),
        methods=("grad", "gxi", "ig"),
        reference=friedman.dataset.train.x,
        ig_steps=16,
        permutation_repeats=3,
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
    words = global_.uniform_words(np.random.default_rng(1), (7, 50), 50, np.uint16)
    idx = words % 50
    np.testing.assert_allclose(global_._resampled_means(words, scores), np.asarray(scores)[idx].mean(1), rtol=1e-5)
    # Chunked (3 resamples per call, the last chunk padded): the resamples are drawn in order from the
    # generator of the key, so the result is exactly the means of those index draws.
    global_.BOOTSTRAP_BUDGET, old = 50 * 12 * 3, global_.BOOTSTRAP_BUDGET
    try:
        a = np.asarray(global_.bootstrap_means(scores, n_bootstrap=10, key=jax.random.key(2)))
    finally:
        global_.BOOTSTRAP_BUDGET = old
    rng = global_.bootstrap_generator(jax.random.key(2))
    drawn = np.concatenate([global_.uniform_words(rng, (c, 50), 50, np.uint32) for c in (3, 3, 3, 1)]) % 50
    np.testing.assert_allclose(a, np.asarray(scores)[drawn].mean(1), rtol=1e-5)
    b = global_.bootstrap_means(scores, n_bootstrap=10, key=jax.random.key(2))
    np.testing.assert_array_equal(b, global_.bootstrap_means(scores, n_bootstrap=10, key=jax.random.key(2)))
    assert not np.allclose(b, global_.bootstrap_means(scores, n_bootstrap=10, key=jax.random.key(3)))


def test_resample_indices_are_exactly_uniform():
    # 2^16 = 49152 + 16384: plain `word % n` would make indices below 16384 twice as likely (share 1/2, not 1/3).
    n = 49152
    idx = global_.uniform_words(np.random.default_rng(0), (200_000,), n, np.uint16) % n
    assert idx.max() < n
    share = (idx < 16384).mean()
    assert abs(share - 1 / 3) < 0.005, share
    with pytest.raises(ValueError, match=r"fewer than 2\*\*31 rows"):
        global_.word_dtype(2**31)


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
    from testlib import linear_regression_model as linear_model

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
        ({"methods": "ig"}, "no reference was given"),
        ({"methods": "ig", "reference": np.zeros((2, 4))}, r"reference of shape \(5,\) .* got \(2, 4\)"),
    ],
)
def test_bad_options_raise(nnx_mlp, kwargs, match):
    kwargs = {"key": jax.random.key(0), **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        sensitivity.rank(nnx_mlp, np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32), **kwargs)


def test_one_row_is_refused_and_a_constant_feature_warns(nnx_mlp):
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="needs at least 2 rows"):
        sensitivity.rank(nnx_mlp, np.ones((1, 5), np.float32), key=key, methods="grad")
    with pytest.raises(ValueError, match="needs at least 2 rows"):
        sensitivity.interactions(nnx_mlp, np.ones((1, 5), np.float32))
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    x[:, 3] = 2.0
    with pytest.warns(RuntimeWarning, match=r"feature\(s\) \['d'\] are constant over the 4 rows"):
        r = sensitivity.rank(nnx_mlp, x, key=key, methods="grad", n_bootstrap=5, top_k=1)
    assert r["grad"].scores[3] == 0.0


def test_rank_validates_rows_and_freezes_the_target_once(nnx_mlp, monkeypatch):
    from explain.model import InputSpec
    from explain.saliency import _common

    calls = {"validate": 0, "freeze": 0}
    validate, freeze = InputSpec.validate, _common.freeze_pred

    def counting_validate(self, *a, **k):
        calls["validate"] += 1
        return validate(self, *a, **k)

    def counting_freeze(*a, **k):
        calls["freeze"] += 1
        return freeze(*a, **k)

    monkeypatch.setattr(InputSpec, "validate", counting_validate)
    monkeypatch.setattr(_common, "freeze_pred", counting_freeze)
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    sensitivity.rank(
        nnx_mlp, x, key=jax.random.key(0), methods=("grad", "gxi", "ig"), reference=x, ig_steps=2,
        n_bootstrap=5, top_k=1, permutation_repeats=1,
    )  # fmt: skip
    assert calls == {"validate": 1, "freeze": 1}

"""Chart specs: the data behind each chart is what the page claims to draw."""

from __future__ import annotations

import numpy as np

from dashboard import charts


def test_ranking_sorted_best_first_with_intervals():
    df, spec = charts.ranking_with_intervals(
        ["a", "b", "c"], np.array([0.2, 0.9, 0.5]), np.array([0.1, 0.8, 0.4]), np.array([0.3, 1.0, 0.6]), title="t"
    )
    assert df["feature"].tolist() == ["b", "c", "a"]
    assert (df["ci_low"] <= df["score"]).all() and (df["score"] <= df["ci_high"]).all()
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["bar", "rule"]
    assert spec["layer"][0]["encoding"]["y"]["sort"] == ["b", "c", "a"]


def test_signed_bars_by_magnitude_and_sign():
    df, spec = charts.signed_bars(["a", "b", "c"], np.array([0.1, -0.7, 0.3]), title="t", value_title="v")
    assert df["feature"].tolist() == ["b", "c", "a"]
    assert df["sign"].tolist() == ["negative", "positive", "positive"]
    assert spec["encoding"]["color"]["scale"]["range"] == [charts.POSITIVE, charts.NEGATIVE]


def test_heatmap_long_form_round_trips():
    m = np.arange(9.0).reshape(3, 3)
    df, spec = charts.heatmap(m, ["x", "y", "z"], title="t", value_title="v")
    back = df.pivot(index="feature_i", columns="feature_j", values="value").loc[["x", "y", "z"], ["x", "y", "z"]]
    np.testing.assert_array_equal(back.to_numpy(), m)
    assert spec["mark"] == "rect"

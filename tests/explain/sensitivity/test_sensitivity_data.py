"""Bad input raises clear errors before compiling; DataFrames and CSV files are matched by column name."""

from __future__ import annotations

import json

import jax
import numpy as np
import pandas as pd
import pytest

from explain import sensitivity

KEY = jax.random.key(0)


def test_wrong_column_count_raises(nnx_mlp):
    with pytest.raises(
        ValueError, match=r"expected x with 5 feature columns \['a', 'b', 'c', 'd', 'e'\].*got 4 columns"
    ):
        sensitivity.rank(nnx_mlp, np.zeros((3, 4), np.float32), key=KEY)


def test_feature_names_that_do_not_match_raise(nnx_mlp):
    with pytest.raises(ValueError, match=r"missing \['e'\]; unexpected \['z'\]"):
        sensitivity.local_sensitivity(nnx_mlp, np.zeros((1, 5), np.float32), names=list("abcdz"))
    frame = pd.DataFrame(np.zeros((2, 5), np.float32), columns=list("abcda"))
    with pytest.raises(ValueError, match=r"duplicated \['a'\]"):
        sensitivity.interactions(nnx_mlp, frame)


def test_nan_rows_raise_naming_the_rows(nnx_mlp):
    x = np.zeros((6, 5), np.float32)
    x[[2, 4], 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf in 2 row\(s\), first at row 2 \(rows \[2, 4\]\)"):
        sensitivity.rank(nnx_mlp, x, key=KEY)


def test_integer_columns_are_refused_by_the_one_dtype_policy(nnx_mlp):
    with pytest.raises(TypeError, match=r"expected x with a floating dtype \(float32 or float64\), got int64"):
        sensitivity.local_sensitivity(nnx_mlp, np.zeros((2, 5), np.int64))
    frame = pd.DataFrame(np.zeros((2, 5), np.int64), columns=list("abcde"))
    with pytest.raises(TypeError, match="floating dtype"):
        sensitivity.interactions(nnx_mlp, frame)


def test_image_model_is_refused(linen_cnn):
    with pytest.raises(ValueError, match=r"need a tabular model.*shape \(8, 8, 3\).*saliency"):
        sensitivity.rank(linen_cnn, np.zeros((2, 8, 8, 3), np.float32), key=KEY)


def test_dataframe_and_csv_columns_are_matched_by_name(nnx_mlp, tmp_path):
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    ref = sensitivity.local_sensitivity(nnx_mlp, x, methods="vanilla_gradient").values["vanilla_gradient"]
    shuffled = pd.DataFrame(x, columns=list("abcde"))[list("ecadb")]
    by_name = sensitivity.local_sensitivity(nnx_mlp, shuffled, methods="vanilla_gradient").values["vanilla_gradient"]
    np.testing.assert_array_equal(by_name, ref)
    named = sensitivity.local_sensitivity(nnx_mlp, shuffled.to_numpy(), names=list("ecadb"), methods="vanilla_gradient")
    np.testing.assert_array_equal(named.values["vanilla_gradient"], ref)
    path = tmp_path / "rows.csv"
    shuffled.assign(label=[0, 1, 2, 0]).to_csv(path, index=False)
    rows, labels = sensitivity.read_csv(path, nnx_mlp, label_column="label")
    np.testing.assert_array_equal(rows, x)
    assert labels.tolist() == [0, 1, 2, 0]
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        shuffled.drop(columns="b").to_csv(path, index=False)
        sensitivity.read_csv(path, nnx_mlp)
    with pytest.raises(ValueError, match="label column 'y' not in"):
        sensitivity.read_csv(path, nnx_mlp, label_column="y")


def test_exports_carry_names_values_intervals_and_settings(nnx_mlp, tmp_path):
    x = np.random.default_rng(1).normal(size=(16, 5)).astype(np.float32)
    r = sensitivity.rank(nnx_mlp, x, key=KEY, methods="vanilla_gradient", n_bootstrap=20, top_k=2)
    frame = r.to_frame()
    assert list(frame.columns) == [
        "method", "rank", "feature", "feature_index", "score", "ci_low", "ci_high", "top2_share",
        "spearman_vs_permutation_importance",
    ]  # fmt: skip
    assert set(frame["method"]) == {"vanilla_gradient"}
    r.save(tmp_path / "r.csv")
    back = pd.read_csv(tmp_path / "r.csv", comment="#")
    np.testing.assert_allclose(back["score"], frame["score"], rtol=1e-6)
    assert (tmp_path / "r.csv").read_text().startswith("# settings: {")
    r.save(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["settings"]["n_bootstrap"] == 20 and data["settings"]["top_k"] == 2
    assert data["rows"][0]["feature"] == r.top("vanilla_gradient", 1)[0] and "ci_low" in data["rows"][0]
    assert data["rows"][0]["method"] == "vanilla_gradient" and data["settings"]["methods"] == ["vanilla_gradient"]
    assert r.top("vanilla_gradient", 1)[0] in r.table("vanilla_gradient", top=1)
    with pytest.raises(ValueError, match=r"ending in .csv or .json"):
        r.save(tmp_path / "r.txt")


def test_json_is_strict_with_nan_and_inf(tmp_path):
    nan = np.float32("nan")
    ranking = sensitivity.MethodRanking(
        "vanilla_gradient", "d", np.array([nan, 1.0]), np.array([0.0, np.inf]), np.array([1.0, 2.0]),
        np.array([0.5, 1.0]),
    )  # fmt: skip
    settings = {"model": "m", "ci": 0.9, "top_k": 1, "rho": np.float64("nan"), "std": np.array([np.inf, 1.0])}
    r = sensitivity.GlobalSensitivity(("a", "b"), {"vanilla_gradient": ranking}, settings)

    def refuse(constant):
        raise AssertionError(f"non-JSON constant {constant} in the output")

    data = json.loads(r.to_json(tmp_path / "r.json"), parse_constant=refuse)
    assert data["settings"]["rho"] is None and data["settings"]["std"] == [None, 1.0]
    assert data["rows"][1]["score"] is None and data["rows"][0]["ci_low"] is None
    json.loads(r.to_csv().splitlines()[0].removeprefix("# settings: "), parse_constant=refuse)


def test_a_failed_write_leaves_the_previous_file_whole(nnx_mlp, tmp_path, monkeypatch):
    x = np.random.default_rng(1).normal(size=(6, 5)).astype(np.float32)
    r = sensitivity.rank(nnx_mlp, x, key=KEY, methods="vanilla_gradient", n_bootstrap=5, top_k=1)
    import explain.io

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(explain.io.os, "replace", fail)
    for name in ("r.csv", "r.json"):
        (tmp_path / name).write_text("previous")
        with pytest.raises(OSError, match="disk full"):
            r.save(tmp_path / name)
        assert (tmp_path / name).read_text() == "previous"
    from explain.cli.sensitivity import plot_bars

    (tmp_path / "bars.png").write_bytes(b"previous")
    with pytest.raises(OSError, match="disk full"):
        plot_bars(r, "vanilla_gradient", 3, tmp_path / "bars.png")
    assert (tmp_path / "bars.png").read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bars.png", "r.csv", "r.json"]  # no temporary files left

"""Sensitivity page, driven through AppTest: every control changed at least once."""

from __future__ import annotations

import numpy as np
import pytest

import models

PAGE = "dashboard/sensitivity.py"


@pytest.fixture(scope="module")
def at(ui):
    return ui.open_page(PAGE)


def prediction(ui, at) -> str:
    (line,) = [t for t in ui.texts(at) if t.startswith("**Prediction: ")]
    return line


def test_global_ranking_with_intervals(ui, at):
    ui.no_errors(at)
    b = models.load("breast_cancer_mlp")
    f = len(b.model.input_spec.feature_names)
    spec, df = ui.chart(at, "bootstrap intervals")
    assert len(df) == f and set(df["feature"]) == set(b.model.input_spec.feature_names)
    assert np.all(np.diff(df["score"].to_numpy()) <= 0)  # best first
    assert np.all(df["ci_low"] <= df["score"] + 1e-9) and np.all(df["score"] <= df["ci_high"] + 1e-9)

    at.multiselect(key="sens_methods").set_value(["vanilla_gradient", "integrated_gradients"]).run()
    at.radio(key="sens_show").set_value("integrated_gradients").run()
    ui.no_errors(at)
    _, df_ig = ui.chart(at, "integrated gradients")
    width = (df_ig["ci_high"] - df_ig["ci_low"]).to_numpy()
    at.select_slider(key="sens_boot").set_value(50).run()
    ui.no_errors(at)
    assert any(f"{len(b.dataset.test)} rows, 50 resamples" in c.value for c in at.caption)
    _, df50 = ui.chart(at, "integrated gradients")
    # Same rows, same scores; other resamples, other intervals.
    np.testing.assert_allclose(df50["score"], df_ig["score"], rtol=1e-6)
    assert not np.allclose((df50["ci_high"] - df50["ci_low"]).to_numpy(), width)

    at.selectbox(key="sens_target").set_value("loss (cross-entropy)").run()
    ui.no_errors(at)
    assert any("target loss[ce]" in c.value for c in at.caption)
    assert len(at.get("download_button")) == 3


def test_row_edit_updates_prediction_and_local_gradients(ui, at):
    at.selectbox(key="sens_target").set_value("predicted class").run()
    at.number_input(key="sens_row").set_value(2).run()
    ui.no_errors(at)
    before = prediction(ui, at)
    _, local_before = ui.chart(at, "gradient ∂t/∂x")
    assert "row 2" in before and "edited" not in before and "was" not in before  # unchanged: said once

    # Push the most sensitive feature hard against its gradient: the prediction must move.
    top = local_before.iloc[0]
    names = list(models.load("breast_cancer_mlp").model.input_spec.feature_names)
    slider = at.slider(key=f"sens_f2_{names.index(top['feature'])}")
    slider.set_value(slider.min if top["value"] > 0 else slider.max).run()
    ui.no_errors(at)
    after = prediction(ui, at)
    assert "1 feature(s) edited" in after and after.split("·")[0] != before.split("·")[0]
    assert f"was: {before.split('**')[1].removeprefix('Prediction: ')}" in after or "Δ P(" in after
    _, local_after = ui.chart(at, "gradient ∂t/∂x")
    assert not np.allclose(local_after.set_index("feature")["value"], local_before.set_index("feature")["value"])

    at.radio(key="sens_local_method").set_value("gradient_x_input").run()
    ui.no_errors(at)
    spec, df = ui.chart(at, "gradient × input")
    assert set(df["sign"]) <= {"positive", "negative"}
    assert (df["sign"] == "positive").tolist() == (df["value"] >= 0).tolist()

    at.button(key="sens_reset").click().run()
    ui.no_errors(at)
    assert "edited" not in prediction(ui, at)


def test_interactions_find_friedman_pair(ui, at):
    at.selectbox(key="sens_model").set_value("friedman1_mlp").run()
    ui.no_errors(at)
    _, df = ui.chart(at, "∂²t")
    m = df.pivot(index="feature_i", columns="feature_j", values="value")
    np.testing.assert_allclose(m.to_numpy(), m.to_numpy().T, rtol=1e-4, atol=1e-6)
    # Friedman #1 has one product term, sin(π x0 x1): that pair must lead.
    assert any(t.startswith("Strongest pairs: x0 × x1") for t in ui.texts(at))
    # Every feature labelled on both axes (Vega's overlap reduction used to drop every other one).
    spec, _ = ui.chart(at, "∂²t")
    assert (
        spec["encoding"]["x"]["axis"]["labelOverlap"] is False
        and spec["encoding"]["y"]["axis"]["labelOverlap"] is False
    )
    assert "standardised" in prediction(ui, at)

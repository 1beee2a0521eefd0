"""Chain rule and gradient flow page, driven through AppTest: every control changed at least once."""

from __future__ import annotations

import numpy as np
import pytest

import models

PAGE = "dashboard/gradflow.py"


@pytest.fixture(scope="module")
def at(ui):
    return ui.open_page(PAGE)


def test_layer_norms_on_log_scale(ui, at):
    ui.no_errors(at)
    spec, df = ui.chart(at, "gradient norms per layer")
    assert spec["encoding"]["y"]["scale"] == {"type": "log"}
    layers = [n for n in models.load("shapes_cnn").model.layer_names if "/" not in n]
    acts = df[df["gradient"].str.startswith("‖∂L/∂h‖")]
    assert acts["layer"].tolist() == layers and (acts["norm"] > 0).all()

    at.radio(key="gf_target").set_value("pred").run()
    ui.no_errors(at)
    _, df_pred = ui.chart(at, "gradient norms per layer")
    assert not np.allclose(df_pred["norm"].to_numpy(), df["norm"].to_numpy())
    at.number_input(key="gf_index").set_value(4).run()
    ui.no_errors(at)
    at.selectbox(key="gf_model").set_value("breast_cancer_mlp").run()
    ui.no_errors(at)
    _, df_tab = ui.chart(at, "breast_cancer_mlp: gradient norms")
    assert set(df_tab["layer"]) <= set(models.load("breast_cancer_mlp").model.layer_names)
    # The norms table in scientific notation: fixed decimals printed 1e-10 as 0.0000000001.
    (table,) = [d for d in at.dataframe if "layer" in d.value.columns]
    assert table.proto.columns.count('"%.3e"') == 2


def test_depth_experiment_vanishes_for_sigmoid(ui, at):
    spec, df = ui.chart(at, "first-layer / last-layer")
    assert spec["encoding"]["y"]["scale"] == {"type": "log"}
    assert df["depth"].max() == 10
    assert spec["encoding"]["x"]["axis"] == {"format": "d", "tickMinStep": 1}  # integer depths, no 2.5
    legend = spec["encoding"]["color"]["legend"]
    assert legend["orient"] == "bottom" and legend["labelLimit"] == 0  # long curve names never clipped
    sig = df[df["curve"] == "sigmoid / glorot"].set_index("depth")["ratio"]
    assert sig[10] < 1e-3 < sig[2]  # vanishing with depth

    at.slider(key="gf_depth").set_value(12).run()
    at.multiselect(key="gf_acts").set_value(["sigmoid", "relu"]).run()
    at.multiselect(key="gf_inits").set_value(["normal", "he"]).run()
    at.radio(key="gf_stage").set_value("trained").run()
    ui.no_errors(at)
    spec, df = ui.chart(at, "(trained)")
    assert set(df["curve"]) == {"sigmoid / normal", "sigmoid / he", "relu / normal", "relu / he", "0.25^(d−1) bound"}
    assert df["depth"].max() == 12
    at.radio(key="gf_stage").set_value("init").run()
    _, df = ui.chart(at, "(init)")
    relu_normal = df[df["curve"] == "relu / normal"].set_index("depth")["ratio"]
    assert relu_normal[12] > 1e3  # standard-normal weights explode a ReLU chain


def test_single_neuron_factors_match_hand_formulas(ui, at):
    for key, value in (("gf_w", -1.2), ("gf_b", 0.7), ("gf_x", 2.5), ("gf_y", 0.0)):
        at.slider(key=key).set_value(value).run()
    ui.no_errors(at)
    table = [d.value for d in at.dataframe if "factor" in d.value.columns][0]
    assert len(table) == 5
    np.testing.assert_allclose(table["JAX"], table["hand formula"], rtol=1e-5, atol=1e-6)
    z = -1.2 * 2.5 + 0.7
    s = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(table["JAX"].iloc[-1], 2 * s * s * (1 - s) * 2.5, rtol=1e-5)

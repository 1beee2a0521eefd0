"""Which map to trust, driven through AppTest: the page's numbers are :func:`explain.metrics.report.evaluate`'s."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import models
from dashboard import state, trust
from explain.metrics import report as quality
from models.datasets import load_dataset

PAGE = "dashboard/trust.py"
METHODS = ["vanilla_gradient", "grad_cam"]
# The cheap metrics (faithfulness correlation and infidelity would double the compile time), and one that needs masks.
METRICS = ["deletion_auc", "insertion_auc", "relevance_mass", "entropy"]
N, SEED = 8, 3


@pytest.fixture(scope="module")
def at(ui):
    """The page on digits_cnn (8x8 images, no masks), 8 images, two methods, four metrics, seed 3, evaluated."""
    at = ui.open_page(PAGE)
    ui.no_errors(at)
    assert not at.dataframe and [b.label for b in at.button] == ["Evaluate"]  # nothing runs before it is asked
    assert at.multiselect(key="trust_metrics").value == list(quality.DEFAULT_METRICS)
    assert at.multiselect(key="trust_methods").value == list(trust.DEFAULT_METHODS)
    at.selectbox(key="trust_model").set_value("digits_cnn").run()
    at.slider(key="trust_n").set_value(N).run()
    at.multiselect(key="trust_methods").set_value(METHODS).run()
    at.multiselect(key="trust_metrics").set_value(METRICS).run()
    at.number_input(key="trust_seed").set_value(SEED).run()
    assert not at.dataframe
    return at.button(key="trust_run").click().run()


def direct(name: str = "digits_cnn", n: int = N, masks=None) -> quality.Report:
    x = np.asarray(state.entry(name).x[:n], np.float32)
    return quality.evaluate(
        state.entry(name).model, x, methods=METHODS, metrics=METRICS, masks=masks, key=jax.random.key(SEED)
    )


def test_table_equals_evaluate_called_directly(ui, at):
    ui.no_errors(at)
    scores, timing = (d.value for d in at.dataframe)
    assert list(scores.index) == list(timing.index) == METHODS
    expected = direct()
    assert expected.metrics == ("deletion_auc", "insertion_auc", "entropy")  # relevance_mass: no masks
    for k in expected.metrics:
        column = quality.METRICS[k].column
        np.testing.assert_allclose(scores[column].to_numpy(), expected.values[:, expected.metrics.index(k)], rtol=1e-6)
    assert list(scores.columns) == ["deletion_auc (↓)", "insertion_auc (↑)", "entropy (↓)"]
    assert list(timing.columns) == ["seconds", "cost"] and (timing.to_numpy() > 0).all()


def test_each_metric_has_its_sentence_and_missing_masks_are_said(ui, at):
    text = "\n".join(ui.texts(at))
    for k in METRICS:
        info = quality.METRICS[k]
        assert (info.sentence in text) != info.needs_masks, k
    (note,) = at.info
    assert "needs object masks" in note.value and "relevance_mass" in note.value


def test_deletion_curve_per_method_integrates_to_the_table(ui, at):
    _, df = ui.chart(at, "deletion curves (8 images)")
    assert set(df["method"]) == set(METHODS)
    frame = at.dataframe[0].value
    for method, curve in df.groupby("method"):
        fractions = curve["fraction"].to_numpy()
        assert fractions[0] == 0 and fractions[-1] == 1 and np.all(np.diff(fractions) > 0)
        # The trapezoid rule is linear: the area of the mean curve is the mean of the areas.
        area = np.trapezoid(curve["score"].to_numpy(), fractions)
        np.testing.assert_allclose(area, frame.loc[method, "deletion_auc (↓)"], rtol=1e-5)


def test_rerun_keeps_the_result_and_a_new_seed_asks_again(ui, at):
    at.run()  # cached: shown again without a click
    ui.no_errors(at)
    assert at.dataframe and not [b for b in at.button if b.label == "Evaluate"]
    before = at.dataframe[0].value
    at.number_input(key="trust_seed").set_value(SEED + 1).run()
    assert not at.dataframe and at.button(key="trust_run").label == "Evaluate"
    at.number_input(key="trust_seed").set_value(SEED).run()  # back: cached, no click needed
    assert at.dataframe[0].value.equals(before)


def test_rank_colours_green_best_red_worst_grey_undefined():
    ranks = np.array([[1.0, np.nan], [2.0, 1.0], [3.0, 1.0]])
    colours = trust.rank_colours(ranks, 3)
    assert colours[0, 0] == "#1a994f" and colours[2, 0] == "#d63026"  # BEST and WORST
    assert colours[1, 0] == "#ffffbf" and colours[0, 1] == trust.UNDEFINED
    assert colours[1, 1] == colours[2, 1] == colours[0, 0]  # ties share the better rank's colour


def test_masks_come_from_the_shapes_test_split_only():
    shapes = state.entry("shapes_cnn")
    m = trust.sample_masks(shapes, 5)
    expected = load_dataset(models.SPECS["shapes_cnn"].dataset).test.mask[:5]
    assert m.dtype == np.bool_ and m.shape == (5, 64, 64) and np.array_equal(m, expected)
    assert trust.sample_masks(state.entry("digits_cnn"), 5) is None


def test_localisation_columns_appear_with_masks(ui):
    """Shapes: the masks reach evaluate, so the localisation metrics are columns (one cheap metric)."""
    at = ui.open_page(PAGE)
    at.slider(key="trust_n").set_value(N).run()
    at.multiselect(key="trust_methods").set_value(["grad_cam"]).run()
    at.multiselect(key="trust_metrics").set_value(["pointing_game"]).run()
    at.button(key="trust_run").click().run()
    ui.no_errors(at)
    frame = at.dataframe[0].value
    assert list(frame.columns) == ["pointing_game (↑)"]
    masks = trust.sample_masks(state.entry("shapes_cnn"), N)
    x = np.asarray(state.entry("shapes_cnn").x[:N], np.float32)
    expected = quality.evaluate(
        state.entry("shapes_cnn").model, x, methods=["grad_cam"], metrics=["pointing_game"], masks=masks,
        key=jax.random.key(0),
    )  # fmt: skip
    assert frame.loc["grad_cam", "pointing_game (↑)"] == expected.values[0, 0]
    assert not at.info

"""Adversarial lab page, driven through AppTest: every control changed at least once."""

from __future__ import annotations

import re

import numpy as np
import pytest

PAGE = "dashboard/adversarial.py"


@pytest.fixture(scope="module")
def at(ui):
    return ui.open_page(PAGE)


def headline(ui, at) -> str:
    (line,) = [t for t in ui.texts(at) if t.startswith("**FGSM ") or t.startswith("**PGD ")]
    return line


def linf(ui, at) -> float:
    (cap,) = [c for c in ui.captions(at) if c.startswith("perturbation ×")]
    return float(re.search(r"‖δ‖∞ = ([0-9.]+)/255", cap).group(1))


def test_fgsm_moves_exactly_eps(ui, at):
    ui.no_errors(at)
    caps = ui.captions(at)
    assert (
        caps[0].startswith("original: ")
        and caps[1].startswith("perturbation ×")
        and caps[2].startswith("adversarial: ")
    )
    assert linf(ui, at) == pytest.approx(8.0, abs=0.01)
    at.slider(key="adv_eps").set_value(2.0).run()
    ui.no_errors(at)
    assert linf(ui, at) == pytest.approx(2.0, abs=0.01)
    assert "ε = 2/255" in headline(ui, at)
    at.number_input(key="adv_index").set_value(5).run()
    ui.no_errors(at)
    assert any(c.startswith("gradient, adversarial") for c in ui.captions(at))
    assert any(m.label == "top-10% overlap" for m in at.metric)


def test_pgd_targeted_and_untargeted(ui, at):
    at.radio(key="adv_attack").set_value("PGD").run()
    at.slider(key="adv_steps").set_value(5).run()
    at.slider(key="adv_eps").set_value(32.0).run()
    ui.no_errors(at)
    line = headline(ui, at)
    assert line.startswith("**PGD succeeded**"), line
    before, after = re.search(r"\*\*(\w+) \([0-9.]+%\) → (\w+) \(", line).groups()
    assert before != after
    assert linf(ui, at) <= 32.0 + 0.01

    at.checkbox(key="adv_targeted").check().run()
    at.selectbox(key="adv_target").set_value("star").run()
    at.number_input(key="adv_seed").set_value(3).run()
    ui.no_errors(at)
    line = headline(ui, at)
    assert "towards 'star'" in line
    if line.startswith("**PGD succeeded**"):
        assert "→ star (" in line


def test_robustness_curve_and_checks(ui, monkeypatch):
    from dashboard import adversarial

    # A bounded curve for the test: the page reads these at call time.
    monkeypatch.setattr(adversarial, "CURVE_EXAMPLES", 16)
    monkeypatch.setattr(adversarial, "CURVE_EPS_255", (0, 8, 32))
    monkeypatch.setattr(adversarial, "CURVE_PGD_STEPS", 3)
    at = ui.open_page(PAGE)
    at.selectbox(key="adv_model").set_value("digits_cnn").run()
    ui.no_errors(at)
    assert not ui.charts(at)  # not computed until asked for
    at.button(key="adv_curve").click().run()
    ui.no_errors(at)
    ((spec, df),) = ui.charts(at)
    assert set(df["curve"]) == {"FGSM", "PGD-3", "chance"}
    pgd = df[df["curve"] == "PGD-3"].sort_values("eps_255")
    fgsm = df[df["curve"] == "FGSM"].sort_values("eps_255")
    assert pgd["eps_255"].tolist() == [0, 8, 32]
    assert pgd["accuracy"].iloc[0] == fgsm["accuracy"].iloc[0]  # ε = 0 is the clean point for both
    assert np.all(np.diff(pgd["accuracy"].to_numpy()) <= 1 / 16 + 1e-9)
    checks = at.dataframe[0].value
    assert checks.set_index("check").loc["eps0_is_clean", "result"] == "passed"
    assert len(checks) == 8
    # The curve stays on for this session.
    at.number_input(key="adv_index").set_value(1).run()
    assert len(ui.charts(at)) == 1


def test_compare_with_the_robust_twin(ui, monkeypatch):
    import pandas as pd

    from dashboard import adversarial

    accuracy = {"shapes_cnn": [1.0, 0.1], "shapes_cnn_robust": [0.9, 0.6]}

    def curve(name, seed=0):  # the computation itself is covered above; this checks the comparison
        rows = pd.DataFrame({"attack": "FGSM", "eps": [0.0, 8 / 255], "accuracy": accuracy[name]})
        rows["eps_255"] = rows["eps"] * 255
        checks = pd.DataFrame({"check": ["eps0_is_clean"], "result": ["passed"], "detail": [name]})
        return rows, checks, accuracy[name][0], 0.25

    monkeypatch.setattr(adversarial, "robustness", curve)
    at = ui.open_page(PAGE)
    at.multiselect(key="adv_compare").set_value(["shapes_cnn_robust"]).run()
    at.button(key="adv_curve").click().run()
    ui.no_errors(at)
    ((spec, df),) = ui.charts(at)
    assert "shapes_cnn vs shapes_cnn_robust" in spec["title"]
    at8 = df[df["eps_255"] == 8].set_index("curve")["accuracy"]
    assert at8["shapes_cnn_robust · FGSM"] > at8["shapes_cnn · FGSM"]
    assert set(at.dataframe[0].value["model"]) == {"shapes_cnn", "shapes_cnn_robust"}

"""The dashboard on the user's trained package (issue 12's acceptance): every page each model fits.

The NNX CNN (BatchNorm, Dropout, ``__call__(self, x, rngs)``) and the linen MLP (``train`` flag) of
``tests/user_package``, trained outside the repository by :func:`usermodel_testlib.trained_package`,
named only by their specs through ``$EXPLAIN_MODELS`` with ``EXPLAIN_ONLY=1``, as a deployment would.
"""

from __future__ import annotations

import pytest
from usermodel_testlib import CNN, MLP, trained_package

from dashboard import config


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    return trained_package(tmp_path_factory)


@pytest.fixture
def open_with(ui, monkeypatch, user):
    monkeypatch.syspath_prepend(str(user))

    def open_page(page, *specs):
        monkeypatch.setenv(config.ENV_MODELS, ";".join(specs))
        monkeypatch.setenv(config.ENV_ONLY, "1")
        at = ui.open_page(page)
        ui.no_errors(at)
        return at

    return open_page


def test_saliency_page_explains_the_users_cnn_on_its_own_test_split(ui, open_with):
    at = open_with(None, CNN)
    assert at.selectbox(key="sal_model").value == CNN
    (line,) = [t for t in ui.texts(at) if t.startswith("**Prediction: ")]
    # The trained CNN names the quadrant of the first test image's square correctly.
    predicted, truth = line.split("**Prediction: ")[1].split(" (")[0], line.split("true label: ")[1].split(" · ")[0]
    assert predicted == truth and predicted in ("top-left", "top-right", "bottom-left", "bottom-right")
    assert any(c.startswith("integrated_gradients for ") for c in ui.captions(at))


def test_adversarial_page_attacks_the_users_cnn(ui, open_with):
    at = open_with("dashboard/adversarial.py", CNN)
    assert at.selectbox(key="adv_model").value == CNN
    assert [t for t in ui.texts(at) if t.startswith("**PGD ")]


@pytest.mark.parametrize("spec", [CNN, MLP])
def test_gradient_flow_page_on_both_user_models(ui, open_with, spec):
    at = open_with("dashboard/gradflow.py", spec)
    assert at.selectbox(key="gf_model").value == spec
    (table,) = [d for d in at.dataframe if "layer" in d.value.columns]
    assert len(table.value) >= 3 and table.value["act_grad_mean"].gt(0).all()


def test_sensitivity_page_ranks_the_users_mlp_features(ui, open_with):
    at = open_with("dashboard/sensitivity.py", MLP)
    assert at.selectbox(key="sens_model").value == MLP
    _, df = ui.chart(at, "bootstrap intervals")
    assert {"age", "dose", "noise_a"} <= set(df["feature"])

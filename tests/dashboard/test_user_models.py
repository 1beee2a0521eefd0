"""The dashboard on a user's models (issue 12): ``--model path/to/file.py:factory`` beside the shipped ones.

Real (tiny, randomly initialised) linen models wrapped with ``explain.from_linen`` in a file of their
own, named by spec through ``$EXPLAIN_MODELS`` (AppTest runs app.py inside pytest, whose ``sys.argv``
is not the dashboard's), with ``.npz`` data files read by ``explain.data.load``.
"""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from dashboard import config

HERE = Path(__file__).resolve().parent
FEATURES = ("age", "dose", "weight", "score")


@pytest.fixture(scope="module")
def user(tmp_path_factory) -> SimpleNamespace:
    """A user's folder: the model file and labelled data for each model, and the specs naming them."""
    folder = tmp_path_factory.mktemp("user")
    shutil.copy(HERE / "user_models.py", folder / "user_models.py")
    rng = np.random.default_rng(0)
    np.savez(folder / "images.npz", x=rng.uniform(0, 1, (12, 16, 16, 3)).astype(np.float32), y=np.arange(12) % 3)
    np.savez(folder / "rows.npz", x=rng.normal(size=(40, 4)).astype(np.float32), y=np.arange(40) % 2)
    file = folder / "user_models.py"
    return SimpleNamespace(
        folder=folder,
        cnn=f"{file}:cnn@{folder / 'images.npz'}",
        cnn_bare=f"{file}:cnn",
        mlp=f"{file}:mlp@{folder / 'rows.npz'}",
        mlp_bare=f"{file}:mlp",
        broken=f"{file}:broken",
    )


def open_with(ui, monkeypatch, page, *keys, only=False):
    monkeypatch.setenv(config.ENV_MODELS, ";".join(keys))
    monkeypatch.setenv(config.ENV_ONLY, "1" if only else "0")
    return ui.open_page(page)


def prediction_line(ui, at) -> str:
    (line,) = [t for t in ui.texts(at) if t.startswith("**Prediction: ")]
    return line


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_saliency_on_the_users_image_model_with_its_data(ui, monkeypatch, user):
    at = open_with(ui, monkeypatch, None, user.cnn)
    ui.no_errors(at)
    box = at.selectbox(key="sal_model")
    assert box.options[:3] == ["shapes_cnn", "shapes_cnn_robust", "digits_cnn"]  # shipped first, then the user's
    (label,) = [o for o in box.options if o.startswith("tiny_cnn")]
    assert str(user.folder) not in label and "user_models.py:cnn" in label  # the spec, without server folders
    at.multiselect(key="sal_methods").set_value(["vanilla_gradient", "grad_cam"]).run()
    at.selectbox(key="sal_model").set_value(user.cnn).run()  # a fresh handle: elements go stale after a run
    ui.no_errors(at)
    line = prediction_line(ui, at)
    assert line.startswith("**Prediction: class ") and "images.npz[0]" in line  # no class names: numbered
    assert "true label: class 0" in line  # labels from the .npz's y
    predicted = re.match(r"\*\*Prediction: (class \d) \(", line).group(1)
    maps = [c for c in ui.captions(at) if " for '" in c]
    assert maps == [f"vanilla_gradient for '{predicted}'", f"grad_cam for '{predicted}'"]
    # Labelled data: the class filter works on the user's data too.
    at.multiselect(key="sal_classes").set_value(["class 2"]).run()
    ui.no_errors(at)
    assert any(t == "4 images match" for t in ui.texts(at)) and "true label: class 2" in prediction_line(ui, at)


def test_a_model_without_data_takes_uploads(ui, monkeypatch, user):
    at = open_with(ui, monkeypatch, None, user.cnn_bare, only=True)
    ui.no_errors(at)
    assert at.selectbox(key="sal_model").options == ["tiny_cnn · user_models.py:cnn"]  # --only: the user's model only
    assert "sal_source" not in [r.key for r in at.radio]  # no data: nothing to choose but an upload
    assert any("came without data" in c.value for c in at.caption)
    red = png(Image.new("RGB", (40, 40), (200, 0, 0)))
    at.file_uploader(key="sal_upload").set_value(("red.png", red, "image/png")).run()
    ui.no_errors(at)
    assert "upload red.png" in prediction_line(ui, at)
    assert any(c.startswith("vanilla_gradient for 'class ") for c in ui.captions(at))


def test_adversarial_lab_attacks_the_users_images(ui, monkeypatch, user):
    at = open_with(ui, monkeypatch, "dashboard/adversarial.py", user.cnn, only=True)
    ui.no_errors(at)
    assert at.selectbox(key="adv_model").value == user.cnn
    (line,) = [t for t in ui.texts(at) if t.startswith("**PGD ")]
    assert "ε = 8/255" in line and "true label: class" in line
    assert not at.get("multiselect") or "adv_compare" not in [m.key for m in at.multiselect]  # no twins
    at.slider(key="adv_eps").set_value(2.0).run()
    at.button(key="adv_curve").click().run()
    ui.no_errors(at)
    spec, df = ui.chart(at, "accuracy under attack (12 test images)")
    assert set(df["curve"]) == {"FGSM", "PGD-10", "chance"}


def test_gradient_flow_of_the_users_models(ui, monkeypatch, user):
    at = open_with(ui, monkeypatch, "dashboard/gradflow.py", user.cnn, user.mlp_bare, only=True)
    ui.no_errors(at)
    _, df = ui.chart(at, "tiny_cnn: gradient norms per layer")
    assert set(df["layer"]) == {"conv", "head"}
    (table,) = [d for d in at.dataframe if "layer" in d.value.columns]
    assert table.value["act_grad_mean"].gt(0).all()
    assert '"%.3e"' in table.proto.columns  # scientific notation: norms span many decades
    # The tabular model has no data: the page says so instead of failing.
    at.selectbox(key="gf_model").set_value(user.mlp_bare).run()
    ui.no_errors(at)
    assert any("came without data" in i.value for i in at.info)


def test_sensitivity_on_the_users_tabular_model(ui, monkeypatch, user):
    at = open_with(ui, monkeypatch, "dashboard/sensitivity.py", user.mlp, only=True)
    ui.no_errors(at)
    _, df = ui.chart(at, "bootstrap intervals")
    assert set(df["feature"]) == set(FEATURES)
    assert any("40 rows, 200 resamples" in c.value and "rows.npz" in c.value for c in at.caption)
    assert "loss (cross-entropy)" in at.selectbox(key="sens_target").options  # labelled: the loss is offered
    before = prediction_line(ui, at)
    assert "edited" not in before and "was" not in before and "Δ" not in before  # nothing changed, nothing repeated
    slider = at.slider(key="sens_f0_1")
    slider.set_value(slider.max).run()
    ui.no_errors(at)
    after = prediction_line(ui, at)
    assert "1 feature(s) edited" in after and ("was: " in after or "Δ P(" in after)
    spec, df = ui.chart(at, "∂²t")
    assert set(df["feature_i"]) == set(FEATURES)
    assert spec["encoding"]["x"]["axis"]["labelOverlap"] is False  # every feature labelled


def test_sensitivity_without_data_is_a_typed_what_if(ui, monkeypatch, user):
    at = open_with(ui, monkeypatch, "dashboard/sensitivity.py", user.mlp_bare, only=True)
    ui.no_errors(at)
    assert "loss (cross-entropy)" not in at.selectbox(key="sens_target").options
    assert "typed row" in prediction_line(ui, at)
    infos = " ".join(i.value for i in at.info)
    assert "global ranking needs data rows" in infos and "Interactions average Hessians" in infos
    at.slider(key="sens_f0_3").set_value(2.5).run()
    ui.no_errors(at)
    assert "1 feature(s) edited" in prediction_line(ui, at)


def test_a_spec_that_fails_is_one_line_and_the_rest_works(ui, monkeypatch, user):
    at = open_with(ui, monkeypatch, None, "no_such_model", user.broken, user.cnn)
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 2 and all("\n" not in e for e in errors)
    assert errors[0].startswith("Model no_such_model could not be loaded: SpecError: unknown model 'no_such_model'")
    assert errors[1].startswith("Model user_models.py:broken could not be loaded: FileNotFoundError: ")
    assert "tiny.msgpack: checkpoint file not found" in errors[1]
    assert not [e for e in errors if "/srv/" in e or str(user.folder) in e]  # never the server's folders
    assert prediction_line(ui, at).startswith("**Prediction: ")  # the shipped default still explains
    labels = at.selectbox(key="sal_model").options
    assert "tiny_cnn · user_models.py:cnn@images.npz" in labels and not [o for o in labels if "broken" in o]


def test_bad_arguments_are_shown_and_the_shipped_models_kept(ui, monkeypatch):
    at = open_with(ui, monkeypatch, "dashboard/gradflow.py", "m:f@")
    assert not at.exception
    assert [e.value for e in at.error] == ["$EXPLAIN_MODELS: expected SPEC or SPEC@PATH, got 'm:f@'"]
    assert at.selectbox(key="gf_model").value == "shapes_cnn"

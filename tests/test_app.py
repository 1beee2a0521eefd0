"""The entry point: navigation, the default page on every shipped image model, and the error guard."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import models

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
os.environ.setdefault("EXPLAIN_JAX_CACHE", str(ROOT / "build" / "jax-cache"))  # see tests/dashboard/conftest.py
TIMEOUT = 60  # first run compiles the forward and backward passes


@pytest.fixture(scope="module")
def app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    return at


@pytest.mark.parametrize("name", models.IMAGE_MODELS)
def test_default_page_explains_each_image_model(app: AppTest, name: str):
    # first: a missing or corrupt shipped checkpoint fails here, the CheckpointError naming the file
    classes = models.load(name).model.class_names
    app.selectbox(key="sal_model").set_value(name).run()
    assert not app.exception
    assert not app.error
    texts = [m.value for m in app.markdown]
    pred = [t for t in texts if t.startswith("**Prediction: ")]
    assert len(pred) == 1
    assert any(f"Prediction: {c} (" in pred[0] for c in classes)
    captions = [i.caption for img in app.get("image") for i in img.proto.imgs]
    assert any(c.startswith("vanilla_gradient for '") for c in captions), captions


def test_unloadable_model_shows_error_not_traceback(monkeypatch):
    from dashboard import state

    real_load = models.load

    def load(name):
        if name == "shapes_cnn_robust":
            raise models.CheckpointError(f"{ROOT}/models/checkpoints/{name}.msgpack: checksum mismatch")
        return real_load(name)

    monkeypatch.setattr(models, "load", load)
    monkeypatch.chdir(ROOT)  # error texts show paths relative to the working directory
    state.load.clear()  # so the failing load really runs (and, after the test, the real one again)
    try:
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        at.run()
        assert not at.exception
        assert [e.value for e in at.error] == [
            "Model shapes_cnn_robust could not be loaded: "
            "CheckpointError: models/checkpoints/shapes_cnn_robust.msgpack: checksum mismatch"
        ]  # one line, the path relative to the app's folder
        assert "shapes_cnn_robust" not in at.selectbox(key="sal_model").options  # the others keep working
        assert [m.value for m in at.markdown if m.value.startswith("**Prediction: ")]
    finally:
        state.load.clear()


def test_unexpected_error_is_a_message_not_a_traceback(monkeypatch):
    from dashboard import state

    def boom(name):
        raise RuntimeError("simulated failure deep inside a page")

    monkeypatch.setattr(state, "test_predictions", boom)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    (err,) = at.error
    assert "unexpected error (RuntimeError)" in err.value and "simulated failure" not in err.value
    # The other pages still work in the same session.
    at.switch_page("dashboard/gradflow.py").run()
    assert not at.exception and not at.error

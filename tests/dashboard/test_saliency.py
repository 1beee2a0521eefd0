"""Saliency explorer page, driven through AppTest: every control changed at least once."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import models

PAGE = None  # the default page of app.py


@pytest.fixture(scope="module")
def at(ui):
    return ui.open_page(PAGE)


def prediction_line(ui, at) -> str:
    lines = [t for t in ui.texts(at) if t.startswith("**Prediction: ")]
    assert len(lines) == 1, ui.texts(at)
    return lines[0]


def matching(ui, at) -> int:
    (line,) = [t for t in ui.texts(at) if t.endswith("images match")]
    return int(line.split()[0])


def test_test_image_filters_and_target(ui, at):
    ui.no_errors(at)
    b = models.load("shapes_cnn")
    n = len(b.dataset.test)
    assert matching(ui, at) == n

    at.multiselect(key="sal_classes").set_value(["star"]).run()
    ui.no_errors(at)
    n_star = int((b.dataset.test.y == b.model.class_names.index("star")).sum())
    assert matching(ui, at) == n_star
    assert "true label: star" in prediction_line(ui, at)

    at.radio(key="sal_correct").set_value("incorrect").run()
    ui.no_errors(at)
    wrong = matching(ui, at)
    at.radio(key="sal_correct").set_value("correct").run()
    assert matching(ui, at) + wrong == n_star
    line = prediction_line(ui, at)
    assert line.startswith("**Prediction: star (") and "true label: star" in line

    at.number_input(key="sal_pos").set_value(3).run()
    ui.no_errors(at)
    assert "test image #" in prediction_line(ui, at)

    # Top-5 chart: at most 5 bars, probabilities summing to <= 1, sorted.
    (spec, df), *_ = ui.charts(at)
    assert len(df) == min(5, len(b.model.class_names))
    p = df["probability"].to_numpy()
    assert np.all(np.diff(p) <= 0) and 0.99 <= p.sum() <= 1.0 + 1e-6

    at.selectbox(key="sal_target").set_value("square").run()
    ui.no_errors(at)
    assert "vanilla_gradient for 'square'" in ui.captions(at)


def test_maps_are_heatmaps_with_a_colour_bar_unless_overlaid(ui, at):
    def map_url():
        (url,) = [i.url for el in at.get("image") for i in el.proto.imgs if i.caption.startswith("vanilla_gradient")]
        return url

    # Default: a heat map with its colour bar, beside the input; the opacity only matters for an overlay.
    assert at.toggle(key="sal_overlay").value is False and at.slider(key="sal_alpha").disabled
    before = map_url()
    at.slider(key="sal_pct").set_value(95.0).run()
    ui.no_errors(at)
    after_pct = map_url()
    at.toggle(key="sal_overlay").set_value(True).run()
    ui.no_errors(at)
    assert not at.slider(key="sal_alpha").disabled
    overlay = map_url()
    at.slider(key="sal_alpha").set_value(0.2).run()
    ui.no_errors(at)
    assert len({before, after_pct, overlay, map_url()}) == 4  # each change re-rendered a different image
    at.toggle(key="sal_overlay").set_value(False).run()


def test_default_map_image_is_a_heatmap_with_colour_bar():
    from dashboard import saliency

    x = np.full((16, 16, 3), 0.5, np.float32)
    values = np.random.default_rng(0).normal(size=(16, 16, 3)).astype(np.float32)
    display = {"cmap": "auto", "percentile": 99.0, "overlay": False, "alpha": 0.6}
    picked = saliency.Picked(x, None, "test")
    img, data = saliency.map_image(picked, values, True, "vanilla_gradient", display, (0.0, 1.0))
    heat = Image.open(io.BytesIO(data))
    assert img is data and heat.size[0] > heat.size[1]  # the colour bar beside a square map
    over, _ = saliency.map_image(picked, values, True, "vanilla_gradient", {**display, "overlay": True}, (0.0, 1.0))
    assert over.size[0] == over.size[1]  # the overlay is the input's square, enlarged


def test_delta_caption_is_undefined_when_the_outputs_do_not_differ():
    from dashboard import saliency

    assert saliency.delta_caption(0.0, 0.0) == (
        "convergence δ = +0.00e+00 (F(x) − F(x′) ≈ 0: the relative error is undefined)"
    )
    assert "inf" not in saliency.delta_caption(1e-9, 1e-9)
    assert saliency.delta_caption(0.01, 2.01) == "convergence δ = +1.00e-02 (0.50% of F(x) − F(x′) = 2)"


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_upload_good_and_bad_files(ui, at):
    at.radio(key="sal_source").set_value("upload").run()
    ui.no_errors(at)
    assert any("Upload an image" in i.value for i in at.info)

    rgba = Image.new("RGBA", (200, 100), (255, 0, 0, 128))
    at.file_uploader(key="sal_upload").set_value(("red.png", png(rgba), "image/png")).run()
    ui.no_errors(at)
    assert "upload red.png" in prediction_line(ui, at)
    steps = " ".join(ui.texts(at))
    assert "alpha composited onto white" in steps and "centre-cropped 200x100 -> 100x100" in steps
    assert any(c.startswith("vanilla_gradient for") for c in ui.captions(at))

    bad = {
        "empty.png": b"",
        "notes.png": b"this is text, not an image\n",
        "cut.png": png(Image.new("RGB", (300, 300), (1, 2, 3)))[:60],
        "huge.png": png(Image.new("L", (8000, 5000), 0)),  # 40 megapixels, a few kB
    }
    for fname, data in bad.items():
        at.file_uploader(key="sal_upload").set_value((fname, data, "image/png")).run()
        assert not at.exception
        assert len(at.error) == 1 and at.error[0].value.startswith(f"{fname}: "), fname
        assert not [t for t in ui.texts(at) if t.startswith("**Prediction")]

    # An all-black image against the zero baseline: F(x) = F(x'), so no relative error (it was "inf%").
    black = png(Image.new("RGB", (64, 64), (0, 0, 0)))
    at.file_uploader(key="sal_upload").set_value(("black.png", black, "image/png")).run()
    at.multiselect(key="sal_methods").set_value(["integrated_gradients"]).run()
    ui.no_errors(at)
    (delta,) = [c.value for c in at.caption if c.value.startswith("convergence δ")]
    assert "the relative error is undefined" in delta and "inf" not in delta
    at.multiselect(key="sal_methods").set_value(["vanilla_gradient", "smoothgrad", "integrated_gradients"]).run()

    # Over 10 MB: our own message, on the page (the server's limit is set above ours so that it runs).
    big = b"\x89PNG\r\n\x1a\n" + bytes(11 * 2**20)
    at.file_uploader(key="sal_upload").set_value(("big.png", big, "image/png")).run()
    assert not at.exception
    (err,) = at.error
    assert err.value.startswith("big.png: ") and "10 MB" in err.value
    assert any(c.value.startswith("PNG, JPEG or WebP, up to 10 MB and 25 megapixels") for c in at.caption)

    # The app keeps running: a good file afterwards works again.
    at.file_uploader(key="sal_upload").set_value(("red.png", png(rgba), "image/png")).run()
    ui.no_errors(at)


def test_digits_upload_with_invert(ui):
    at = ui.open_page(PAGE)
    at.multiselect(key="sal_methods").set_value(["vanilla_gradient"]).run()
    at.selectbox(key="sal_model").set_value("digits_cnn").run()
    at.radio(key="sal_source").set_value("upload").run()
    img = Image.new("L", (80, 80), 255)
    img.paste(0, (30, 10, 50, 70))  # a dark "1" on white paper
    at.file_uploader(key="sal_upload").set_value(("one.png", png(img), "image/png")).run()
    ui.no_errors(at)
    assert "upload one.png" in prediction_line(ui, at)

    def input_url():
        return [i.url for el in at.get("image") for i in el.proto.imgs if i.caption.startswith("input")][0]

    plain = input_url()
    at.checkbox(key="sal_invert").check().run()
    ui.no_errors(at)
    assert "inverted (255 - v)" in " ".join(ui.texts(at))
    assert input_url() != plain  # the model now sees light ink on a dark background


def map_captions(ui, at) -> list[str]:
    return [c for c in ui.captions(at) if " for '" in c]


def test_methods_side_by_side_with_parameters(ui, at):
    at.radio(key="sal_source").set_value("test image").run()
    at.selectbox(key="sal_target").set_value("predicted").run()
    methods = ["vanilla_gradient", "smoothgrad", "integrated_gradients", "grad_cam"]
    at.multiselect(key="sal_methods").set_value(methods).run()
    ui.no_errors(at)
    assert [c.split(" for ")[0] for c in map_captions(ui, at)] == methods
    assert len(at.get("download_button")) == 2 * len(methods)
    captions = [c.value for c in at.caption]
    # the options shown are the method's own defaults, read from its signature through the registry
    assert "absolute=False" in captions
    assert "n_samples=25, noise_level=0.15, method=vanilla_gradient" in captions
    assert "baseline=zero, steps=50, rule=gauss_legendre" in captions
    (delta,) = [c for c in captions if c.startswith("convergence δ = ")]

    # Each parameter change reaches the method: captions echo it, and IG's delta moves with the steps.
    at.slider(key="sal_opt_integrated_gradients_steps").set_value(8).run()
    at.selectbox(key="sal_opt_integrated_gradients_rule").set_value("riemann_left").run()
    at.selectbox(key="sal_opt_integrated_gradients_baseline").set_value("blur").run()
    at.slider(key="sal_opt_smoothgrad_n_samples").set_value(5).run()
    at.slider(key="sal_opt_smoothgrad_noise_level").set_value(0.3).run()
    at.selectbox(key="sal_opt_grad_cam_layer").set_value("block3").run()
    ui.no_errors(at)
    captions = [c.value for c in at.caption]
    assert "baseline=blur, steps=8, rule=riemann_left" in captions
    assert "n_samples=5, noise_level=0.3, method=vanilla_gradient" in captions and "layer=block3" in captions
    (delta8,) = [c for c in captions if c.startswith("convergence δ = ")]
    assert delta8 != delta

    def url(method):
        return [i.url for el in at.get("image") for i in el.proto.imgs if i.caption.startswith(method + " for")][0]

    sg = url("smoothgrad")
    at.number_input(key="sal_seed").set_value(7).run()
    assert url("smoothgrad") != sg  # another key, other noise
    sg = url("smoothgrad")
    at.selectbox(key="sal_opt_smoothgrad_method").set_value("gradient_x_input").run()
    ui.no_errors(at)
    assert "n_samples=5, noise_level=0.3, method=gradient_x_input" in [c.value for c in at.caption]
    assert url("smoothgrad") != sg  # the noise tunnel now wraps gradient × input
    grad = url("vanilla_gradient")
    at.selectbox(key="sal_cmap").set_value("viridis").run()
    assert url("vanilla_gradient") != grad
    grad = url("vanilla_gradient")
    at.checkbox(key="sal_signed").check().run()
    ui.no_errors(at)
    assert url("vanilla_gradient") != grad
    # absolute=True (the former "gradient_abs"): a magnitude map, drawn on the sequential colormap even when signed
    grad = url("vanilla_gradient")
    at.checkbox(key="sal_opt_vanilla_gradient_absolute").check().run()
    ui.no_errors(at)
    assert "absolute=True" in [c.value for c in at.caption]
    assert url("vanilla_gradient") != grad


def test_method_error_is_shown_not_raised(ui, at, monkeypatch):
    from dashboard import saliency

    def broken(model, x, *, target=None, labels=None, steps: int = 1, memory_budget=None, show_progress=False):
        raise ValueError(f"expected steps >= 2, got {steps}")

    monkeypatch.setitem(saliency.registry.METHODS, "broken", saliency.registry.MethodInfo(broken, True))
    at.multiselect(key="sal_methods").set_value(["vanilla_gradient", "broken"]).run()
    assert not at.exception
    assert [e.value for e in at.error] == ["broken: expected steps >= 2, got 1"]
    assert len(map_captions(ui, at)) == 1 and map_captions(ui, at)[0].startswith("vanilla_gradient for")


def test_maps_are_the_registry_methods():
    """The page's cached map is the library's: ``registry.call`` with the page's options, key and references."""
    import jax

    from dashboard import saliency
    from explain.saliency import expected_gradients, vanilla_gradient

    b = models.load("shapes_cnn")
    x = b.dataset.test.x[:1]
    g = np.asarray(vanilla_gradient(b.model, x, target=2).values[0])
    m = saliency.attribution("shapes_cnn", x[0], "vanilla_gradient", 2, (("absolute", True),), 0)
    np.testing.assert_allclose(m.values, np.abs(g), rtol=1e-6, atol=0)  # absolute=True is |∂F/∂x|
    assert m.delta is None and m.total == pytest.approx(float(np.abs(g).sum()), rel=1e-5)

    opts = (("n_samples", 4), ("noise_level", 0.0))
    e = saliency.attribution("shapes_cnn", x[0], "expected_gradients", 2, opts, 3)
    direct = expected_gradients(
        b.model, x, target=2, references=saliency.references("shapes_cnn"), key=jax.random.key(3), n_samples=4
    )
    np.testing.assert_allclose(e.values, np.asarray(direct.values[0]), rtol=1e-5, atol=1e-7)
    assert e.delta == pytest.approx(float(np.asarray(direct.convergence_delta).reshape(-1)[0]), rel=1e-5, abs=1e-7)


def test_downloads_roundtrip():
    from dashboard import common

    a = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    np.testing.assert_array_equal(np.load(io.BytesIO(common.npy_bytes(a))), a)
    img = Image.new("RGB", (4, 4), (1, 2, 3))
    assert Image.open(io.BytesIO(common.png_bytes(img))).getpixel((0, 0)) == (1, 2, 3)


def test_every_registry_method_renders_with_its_default_options(ui):
    """Each method in the registry, with the widgets built from its signature's defaults, draws one map."""
    from explain.saliency import registry

    at = ui.open_page(PAGE)
    methods = list(registry.METHODS)
    at.multiselect(key="sal_methods").set_value(methods).run(timeout=600)
    ui.no_errors(at)
    assert [c.split(" for ")[0] for c in map_captions(ui, at)] == methods

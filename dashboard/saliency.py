"""Saliency explorer: pick an image model (shipped or yours) and an image, compare saliency methods side by side.

Page code only: every map is one :func:`explain.saliency.registry.call` (method name -> function,
option defaults read from its signature). Each map is drawn as a heat map with its colour bar beside the
input (:func:`dashboard.common.heatmap_png`), or blended over the input (:func:`explain.viz.overlay`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
import pandas as pd
import streamlit as st

from dashboard import common, state, uploads
from dashboard.common import as_pil, enlarge, npy_bytes, png_bytes
from explain import viz
from explain.saliency import cam, integrated, registry

DEFAULT_METHODS = ["vanilla_gradient", "smoothgrad", "integrated_gradients"]
N_REFERENCES = 32  # test images used as the reference set of expected gradients / GradientSHAP
COLORMAPS = ["auto", "inferno", "magma", "viridis", "hot", "gray", "RdBu_r", "coolwarm", "seismic"]
PER_ROW = 3
# |F(x) − F(x′)| below this is float32 rounding of two equal outputs (an all-black upload against the zero
# baseline): the relative completeness error δ / (F(x) − F(x′)) is then undefined, not infinite.
UNDEFINED_DIFF = 1e-6
UPLOAD_LIMITS = (
    f"PNG, JPEG or WebP, up to {uploads.MAX_UPLOAD_BYTES // 2**20} MB and {uploads.MAX_PIXELS // 10**6} megapixels"
)


# ----------------------------------------------------------------------------- method options -> widgets


def spatial_layers(model) -> list[str]:
    return [n for n in model.layer_names if len(model.layer_shapes.get(n, ())) == 3] if model.tap else []


def with_default(choices: list, default: Any) -> list:
    """``choices`` with the method's own default among them, in order (a select slider needs its value listed)."""
    return sorted({*choices, default})


def tunnel_methods() -> list[str]:
    """Methods a noise tunnel can wrap: those with a pure core."""
    return [name for name, info in registry.METHODS.items() if info.core is not None]


def option_widget(method: str, option: str, default: Any, model) -> Callable[[Any], Any] | None:
    """A widget for one of a method's options (default from its signature), or ``None`` for options left at their
    default (arrays, mappings, options the method derives itself)."""
    key = f"sal_opt_{method}_{option}"
    h, w = model.input_spec.shape[:2]
    lo, hi = model.input_spec.value_range or (0.0, 1.0)
    table: dict[str, Callable[[Any], Any]] = {
        "absolute": lambda c: c.checkbox("absolute value |∂F/∂x|", bool(default), key=key),
        "steps": lambda c: c.slider("steps", 2, 256, int(default), key=key),
        "n_samples": lambda c: c.slider("samples", 1, 100, int(default), key=key),
        "noise_level": lambda c: c.slider("σ (noise, share of range)", 0.0, 0.5, float(default), 0.01, key=key),
        "method": lambda c: c.selectbox(
            "method under noise", tunnel_methods(), index=tunnel_methods().index(default), key=key
        ),
        "max_sigma": lambda c: c.slider("max blur σ", 1.0, 100.0, float(default), 1.0, key=key),
        "rule": lambda c: c.selectbox("quadrature", integrated.RULES, index=integrated.RULES.index(default), key=key),
        "baseline": lambda c: c.selectbox(
            "baseline", integrated.BASELINES, index=integrated.BASELINES.index(default), key=key
        ),
        "layer": lambda c: c.selectbox(
            "layer",
            spatial_layers(model),
            index=spatial_layers(model).index(default if default is not None else cam.default_layer(model)),
            key=key,
        ),
        "tolerance": lambda c: c.select_slider(
            "tolerance", with_default([1e-2, 3e-3, 1e-3, 3e-4, 1e-4], default)[::-1], value=default, key=key
        ),
        "start_steps": lambda c: c.slider("start steps", 4, 64, int(default), key=key),
        "max_steps": lambda c: c.select_slider(
            "max steps", with_default([128, 256, 512, 1024, 2048, 4096], int(default)), value=int(default), key=key
        ),
        "fraction": lambda c: c.slider("fraction per step", 0.05, 1.0, float(default), 0.05, key=key),
        "max_dist": lambda c: c.slider("max distance", 0.0, 0.2, float(default), 0.01, key=key),
        "sqrt": lambda c: c.checkbox("sqrt σ schedule", bool(default), key=key),
        "window": lambda c: c.slider("window", 1, max(1, h // 2), max(1, h // 8), key=key),
        "baseline_value": lambda c: c.slider(
            "occluded value" if method == "occlusion" else "constant baseline value",
            float(lo),
            float(hi),
            float((lo + hi) / 2 if default is None else default),  # None: the middle of the range, as the method
            key=key,
        ),
    }
    if option == "layer" and not spatial_layers(model):
        return None  # no (h, w, c) layer to choose: the method itself says what it needs
    return table.get(option)


def method_options(method: str, model, container) -> dict[str, Any]:
    """Widgets for the method's user-facing options, built from ``registry.get(method).defaults``;
    returns only the options the user can set."""
    info = registry.get(method)
    chosen = {}
    for option, default in info.defaults.items():
        if option == "baseline_value" and chosen.get("baseline", "constant") != "constant":
            continue  # only the constant baseline reads it
        widget = option_widget(method, option, default, model)
        if widget is not None:
            chosen[option] = widget(container)
    if "window" in chosen and "strides" in info.defaults:  # strides follow the window: half of it
        chosen["strides"] = max(1, chosen["window"] // 2)
    return chosen


def describe_options(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in options.items()) or "no options"


def is_signed(method: str, options: dict[str, Any]) -> bool:
    """Whether the map is signed: the method's own flag, less ``absolute=True``."""
    return registry.get(method).signed and not options.get("absolute", False)


# ----------------------------------------------------------------------------- cached computations


@st.cache_resource(show_spinner=False)
def references(key: str) -> np.ndarray | None:
    """The reference images for expected gradients / GradientSHAP: the first training (else data) images,
    ``None`` for a model without data (those two methods then say they need references)."""
    refs = state.entry(key).references
    return None if refs is None else np.asarray(refs[:N_REFERENCES], np.float32)


class Map(NamedTuple):
    values: np.ndarray  # (H, W, C)
    delta: float | None  # completeness error of path methods
    total: float | None  # sum of the attributions


@st.cache_data(show_spinner=False, max_entries=512)
def attribution(key: str, x: np.ndarray, method: str, target: int, options: tuple, seed: int) -> Map:
    """One method's map for one image, explaining the class ``target``; cached per inputs and options.

    One :func:`registry.call`: it passes the key to the methods that take one (the random ones, and
    IG for its uniform baseline) and the reference images to those that draw baselines from them.
    """
    a = registry.call(
        method,
        state.entry(key).model,
        x[None],
        target=target,
        key=jax.random.key(seed),
        references=references(key),
        **dict(options),
    ).to_numpy()
    delta = None if a.convergence_delta is None else float(np.asarray(a.convergence_delta).reshape(-1)[0])
    values = np.asarray(a.values[0], np.float32)
    return Map(values, delta, float(values.sum()))


@st.cache_data(show_spinner="Decoding the upload…", max_entries=32)
def converted_upload(data: bytes, shape: tuple[int, ...], value_range, invert: bool) -> uploads.Converted:
    return uploads.load_upload(data, shape, value_range=value_range, invert=invert)


class Picked(NamedTuple):
    x: np.ndarray  # (H, W, C)
    label: str | None  # the true class, when known
    what: str  # a short description for captions


def pick_test_image(key: str, e: state.Entry) -> Picked | None:
    """An image of the model's data, filtered by class and correctness when the data has labels."""
    classes = list(e.class_names)
    with st.sidebar:
        st.caption(f"Images: {e.data_note}")
        if e.labels is None:
            idx = np.arange(e.n)  # no labels: nothing to filter on
        else:
            preds = state.test_predictions(key)
            chosen = st.multiselect("Classes", classes, key="sal_classes", placeholder="all classes")
            correctness = st.radio("Prediction", ("all", "correct", "incorrect"), horizontal=True, key="sal_correct")
            idx = state.filter_indices(
                e.labels, preds.correct, classes=[classes.index(c) for c in chosen], correctness=correctness
            )
    st.sidebar.caption(f"{len(idx)} images match")
    if len(idx) == 0:
        st.warning("No image matches these filters.")
        return None
    pos = st.sidebar.number_input("Image", 0, len(idx) - 1, 0, key="sal_pos", help="position among matching images")
    i = int(idx[min(int(pos), len(idx) - 1)])
    label = None if e.labels is None else classes[int(e.labels[i])]
    return Picked(np.asarray(e.x[i], np.float32), label, e.ids[i] if e.ids else f"image #{i}")


def pick_upload(e: state.Entry) -> Picked | None:
    shape = e.model.input_spec.shape
    with st.sidebar:
        f = st.file_uploader(
            "Image (PNG, JPEG, WebP)",
            type=list(uploads.ACCEPTED_EXTENSIONS),
            key="sal_upload",
            help=f"converted to the model's input {shape[1]}x{shape[0]}x{shape[2]}",
        )
        # Streamlit's own refusal is a tooltip on the file; the limits belong where they are read.
        st.caption(UPLOAD_LIMITS)
        invert = shape[-1] == 1 and st.checkbox(
            "Invert (dark ink on light paper)",
            key="sal_invert",
            help="for models trained on light ink on a dark background, such as the digits model",
        )
    if f is None:
        st.info("Upload an image in the sidebar" + (", or switch the source back to data images." if e.n else "."))
        return None
    try:
        c = converted_upload(f.getvalue(), shape, e.model.input_spec.value_range, bool(invert))
    except uploads.UploadError as err:
        st.error(f"{f.name}: {common.redact(str(err))}")
        return None
    with st.expander(f"Conversion of {f.name}", expanded=True):
        st.markdown("\n".join(f"{k + 1}. {step}" for k, step in enumerate(c.steps)))
    return Picked(c.x, None, f"upload {f.name}")


def pick_input(key: str, e: state.Entry) -> Picked | None:
    with st.sidebar:
        st.subheader("Input")
        if e.n == 0:
            st.caption("This model came without data (pass --data PATH after its --model): upload an image.")
            source = "upload"
        else:
            source = st.radio("Source", ("test image", "upload"), horizontal=True, key="sal_source")
    return pick_test_image(key, e) if source == "test image" else pick_upload(e)


def prediction(key: str, e: state.Entry, picked: Picked) -> int:
    """Shows the prediction and its top-5 probabilities; returns the target class chosen (default: predicted)."""
    classes = list(e.class_names)
    probs = state.probabilities(key, picked.x[None])[0]
    pred = int(probs.argmax())
    choice = st.selectbox(
        "Target class", ["predicted", *classes], key="sal_target", help="the class whose logit is explained"
    )
    target = pred if choice == "predicted" else classes.index(choice)
    truth = "" if picked.label is None else f" · true label: {picked.label}"
    st.markdown(f"**Prediction: {classes[pred]} ({probs[pred]:.1%})**{truth} · {picked.what}")
    top = np.argsort(probs)[::-1][:5]
    st.bar_chart(
        pd.DataFrame({"class": [classes[k] for k in top], "probability": probs[top]}),
        x="class",
        y="probability",
        horizontal=True,
        height=60 + 32 * len(top),
    )
    return target


def delta_caption(delta: float, total: float) -> str:
    """The completeness error of a path method (Sundararajan et al. 2017, Prop. 1: Σ attributions = F(x) − F(x′)).

    ``δ = Σ a − (F(x) − F(x′))``, so ``F(x) − F(x′) = Σ a − δ``; the relative error ``|δ| / |F(x) − F(x′)|``
    is shown unless that difference is ~0 (:data:`UNDEFINED_DIFF`), where only the absolute δ means anything.
    """
    diff = total - delta
    if abs(diff) <= UNDEFINED_DIFF:
        return f"convergence δ = {delta:+.2e} (F(x) − F(x′) ≈ 0: the relative error is undefined)"
    return f"convergence δ = {delta:+.2e} ({abs(delta) / abs(diff):.2%} of F(x) − F(x′) = {diff:.3g})"


def map_image(picked: Picked, values: np.ndarray, signed: bool, method: str, display: dict, value_range):
    """The map as a heat map with its colour bar (default), or blended over the input (``display["overlay"]``)."""
    cmap = display["cmap"] if display["cmap"] != "auto" else (viz.DIVERGING_CMAP if signed else viz.SEQUENTIAL_CMAP)
    if display["overlay"]:
        x = common.unit_range(picked.x, value_range)
        img = viz.overlay(x, values, cmap=cmap, alpha=display["alpha"], percentile=display["percentile"], signed=signed)
        return enlarge(img), png_bytes(enlarge(img))
    # The channel reduction the overlay uses: the signed sum, or the sum of magnitudes (PAIR's grayscale).
    m2 = viz.reduce_channels(values, "sum" if signed else "abs_sum")
    label = f"{method} (signed)" if signed else f"|{method}|"
    png = common.heatmap_png(m2, cmap=cmap, signed=signed, percentile=display["percentile"], label=label)
    return png, png


def show_map(col, e: state.Entry, picked: Picked, method: str, m: Map, options: dict, target: int, display: dict):
    cls = e.class_names[target]
    signed = is_signed(method, options) and display["signed"]
    img, png = map_image(picked, m.values, signed, method, display, e.model.input_spec.value_range)
    col.image(img, caption=f"{method} for '{cls}'")
    col.caption(describe_options(options))
    if m.delta is not None:
        col.caption(delta_caption(m.delta, m.total))
    d1, d2 = col.columns(2)
    stem = f"{e.stem}_{method}_{cls}"
    d1.download_button("PNG", png, f"{stem}.png", "image/png", key=f"sal_dl_png_{method}", on_click="ignore")
    d2.download_button(
        ".npy",
        npy_bytes(m.values),
        f"{stem}.npy",
        "application/octet-stream",
        key=f"sal_dl_npy_{method}",
        on_click="ignore",
    )


def main() -> None:
    st.title("Saliency explorer")
    options = state.models_for("image")
    if not options:
        st.info("No image model is loaded: pass one with --model SPEC (an (H, W, 1) or (H, W, 3) classifier).")
        return
    key = st.selectbox(
        "Model", options, key="sal_model", format_func=state.label, help="an image model: shipped, or yours (--model)"
    )
    e = state.entry_or_error(key)
    if e is None:
        return
    picked = pick_input(key, e)
    if picked is None:
        return
    target = prediction(key, e, picked)

    methods = st.multiselect(
        "Methods", list(registry.METHODS), default=DEFAULT_METHODS, key="sal_methods", help="shown side by side"
    )
    with st.sidebar:
        st.subheader("Display")
        display = {
            "cmap": st.selectbox(
                "Colormap", COLORMAPS, key="sal_cmap", help="auto: inferno for magnitudes, RdBu_r for signed maps"
            ),
            "signed": st.checkbox(
                "Keep the sign (diverging map) where the method is signed",
                False,
                key="sal_signed",
                help="off: magnitudes on a sequential colormap (PAIR's default view)",
            ),
            "percentile": st.slider("Clipping percentile", 90.0, 100.0, 99.0, 0.5, key="sal_pct"),
            "overlay": st.toggle(
                "Overlay on the input",
                False,
                key="sal_overlay",
                help="off: each map as a heat map with its colour bar; on: blended over the input image",
            ),
        }
        display["alpha"] = st.slider(
            "Overlay opacity", 0.0, 1.0, 0.6, 0.05, key="sal_alpha", disabled=not display["overlay"]
        )
        seed = int(st.number_input("Seed (noise, random baselines)", 0, 2**31 - 1, 0, key="sal_seed"))
    if not methods:
        st.info("Choose one or more methods.")
        return
    with st.expander("Method parameters", expanded=False):
        param_cols = st.columns(min(len(methods), PER_ROW))
        options = {}
        for k, method in enumerate(methods):
            c = param_cols[k % len(param_cols)]
            c.markdown(f"**{method}**")
            options[method] = method_options(method, e.model, c)

    cols = st.columns(PER_ROW + 1)
    shown = as_pil(common.unit_range(picked.x, e.model.input_spec.value_range))
    cols[0].image(enlarge(shown), caption=f"input ({picked.label or picked.what})")
    slot = 1
    for method in methods:
        if slot == len(cols):
            cols, slot = st.columns(PER_ROW + 1), 0
        with st.spinner(f"Computing {method}…"):
            try:
                m = attribution(key, picked.x, method, target, tuple(sorted(options[method].items())), seed)
            except (ValueError, TypeError) as err:  # an option the method rejects: say so, keep the others
                cols[slot].error(f"{method}: {common.redact(str(err))}")
                slot += 1
                continue
        show_map(cols[slot], e, picked, method, m, options[method], target, display)
        slot += 1


if __name__ == "__main__":
    # st.navigation executes this file as __main__; run the imported module instead, so cached
    # results hold classes that pickle by their real name (dashboard.saliency.*) and definitions are made once.
    from dashboard.saliency import main as _main

    _main()

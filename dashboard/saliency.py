"""Saliency explorer: pick a shipped image model and an image, compare saliency methods side by side.

Page code only: every map is one :func:`explain.saliency.registry.call` (method name -> function,
option defaults read from its signature), the drawing is :mod:`explain.viz`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
import pandas as pd
import streamlit as st

import models
from dashboard import state, uploads
from dashboard.common import as_pil, enlarge, npy_bytes, png_bytes
from explain import viz
from explain.saliency import cam, integrated, registry

DEFAULT_METHODS = ["vanilla_gradient", "smoothgrad", "integrated_gradients"]
N_REFERENCES = 32  # test images used as the reference set of expected gradients / GradientSHAP
COLORMAPS = ["auto", "inferno", "magma", "viridis", "hot", "gray", "RdBu_r", "coolwarm", "seismic"]
PER_ROW = 3


# ----------------------------------------------------------------------------- method options -> widgets


def spatial_layers(model) -> list[str]:
    return [n for n in model.layer_names if len(model.layer_shapes.get(n, ())) == 3]


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
def references(name: str) -> np.ndarray:
    """The reference images for expected gradients / GradientSHAP: the first test images."""
    return state.bundle(name).dataset.test.x[:N_REFERENCES]


class Map(NamedTuple):
    values: np.ndarray  # (H, W, C)
    delta: float | None  # completeness error of path methods
    total: float | None  # sum of the attributions


@st.cache_data(show_spinner=False, max_entries=512)
def attribution(name: str, x: np.ndarray, method: str, target: int, options: tuple, seed: int) -> Map:
    """One method's map for one image, explaining the class ``target``; cached per inputs and options.

    One :func:`registry.call`: it passes the key to the methods that take one (the random ones, and
    IG for its uniform baseline) and the reference images to those that draw baselines from them.
    """
    b = state.bundle(name)
    a = registry.call(
        method,
        b.model,
        x[None],
        target=target,
        key=jax.random.key(seed),
        references=references(name),
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


def pick_test_image(name: str, b: models.Bundle) -> Picked | None:
    classes = list(b.model.class_names)
    test = b.dataset.test
    preds = state.test_predictions(name)
    with st.sidebar:
        chosen = st.multiselect("Classes", classes, key="sal_classes", placeholder="all classes")
        correctness = st.radio("Prediction", ("all", "correct", "incorrect"), horizontal=True, key="sal_correct")
    idx = state.filter_indices(
        test.y, preds.correct, classes=[classes.index(c) for c in chosen], correctness=correctness
    )
    st.sidebar.caption(f"{len(idx)} images match")
    if len(idx) == 0:
        st.warning("No test image matches these filters.")
        return None
    pos = st.sidebar.number_input("Image", 0, len(idx) - 1, 0, key="sal_pos", help="position among matching images")
    i = int(idx[min(int(pos), len(idx) - 1)])
    return Picked(test.x[i], classes[int(test.y[i])], f"test image #{i}")


def pick_upload(b: models.Bundle) -> Picked | None:
    shape = b.model.input_spec.shape
    with st.sidebar:
        f = st.file_uploader(
            "Image (PNG, JPEG, WebP)",
            type=list(uploads.ACCEPTED_EXTENSIONS),
            key="sal_upload",
            help=f"converted to the model's input {shape[1]}x{shape[0]}x{shape[2]}",
        )
        invert = shape[-1] == 1 and st.checkbox(
            "Invert (dark ink on light paper)", key="sal_invert", help="the digits model was trained on light ink"
        )
    if f is None:
        st.info("Upload an image in the sidebar, or switch the source back to test images.")
        return None
    try:
        c = converted_upload(f.getvalue(), shape, b.model.input_spec.value_range, bool(invert))
    except uploads.UploadError as e:
        st.error(f"{f.name}: {e}")
        return None
    with st.expander(f"Conversion of {f.name}", expanded=True):
        st.markdown("\n".join(f"{k + 1}. {step}" for k, step in enumerate(c.steps)))
    return Picked(c.x, None, f"upload {f.name}")


def pick_input(name: str, b: models.Bundle) -> Picked | None:
    with st.sidebar:
        st.subheader("Input")
        source = st.radio("Source", ("test image", "upload"), horizontal=True, key="sal_source")
    return pick_test_image(name, b) if source == "test image" else pick_upload(b)


def prediction(name: str, b: models.Bundle, picked: Picked) -> int:
    """Shows the prediction and its top-5 probabilities; returns the target class chosen (default: predicted)."""
    classes = list(b.model.class_names)
    probs = state.probabilities(name, picked.x[None])[0]
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


def show_map(col, b, picked: Picked, method: str, m: Map, options: dict, target: int, display: dict) -> None:
    cls = b.model.class_names[target]
    signed = is_signed(method, options) and display["signed"]
    cmap = None if display["cmap"] == "auto" else display["cmap"]
    img = viz.overlay(
        picked.x, m.values, cmap=cmap, alpha=display["alpha"], percentile=display["percentile"], signed=signed
    )
    big = enlarge(img)
    col.image(big, caption=f"{method} for '{cls}'")
    col.caption(describe_options(options))
    if m.delta is not None:
        # F(x) - F(x') = Σ attributions - δ, so the relative error is δ over that difference.
        diff = m.total - m.delta
        rel = abs(m.delta) / abs(diff) if diff else float("inf")
        col.caption(f"convergence δ = {m.delta:+.2e} ({rel:.2%} of F(x) − F(x′) = {diff:.3g})")
    d1, d2 = col.columns(2)
    stem = f"{b.name}_{method}_{cls}"
    d1.download_button("PNG", png_bytes(big), f"{stem}.png", "image/png", key=f"sal_dl_png_{method}", on_click="ignore")
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
    name = st.selectbox("Model", state.image_models(), key="sal_model", help="A shipped image model")
    b = state.bundle_or_error(name)
    if b is None:
        return
    picked = pick_input(name, b)
    if picked is None:
        return
    target = prediction(name, b, picked)

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
            "alpha": st.slider("Overlay opacity", 0.0, 1.0, 0.6, 0.05, key="sal_alpha"),
        }
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
            options[method] = method_options(method, b.model, c)

    cols = st.columns(PER_ROW + 1)
    cols[0].image(enlarge(as_pil(picked.x)), caption=f"input ({picked.label or 'uploaded'})")
    slot = 1
    for method in methods:
        if slot == len(cols):
            cols, slot = st.columns(PER_ROW + 1), 0
        with st.spinner(f"Computing {method}…"):
            try:
                m = attribution(name, picked.x, method, target, tuple(sorted(options[method].items())), seed)
            except (ValueError, TypeError) as e:  # an option the method rejects: say so, keep the others
                cols[slot].error(f"{method}: {e}")
                slot += 1
                continue
        show_map(cols[slot], b, picked, method, m, options[method], target, display)
        slot += 1


if __name__ == "__main__":
    # st.navigation executes this file as __main__; run the imported module instead, so cached
    # results hold classes that pickle by their real name (dashboard.saliency.*) and definitions are made once.
    from dashboard.saliency import main as _main

    _main()

"""Cached loaders shared by every page.

Models, datasets and compiled functions are cached with ``st.cache_resource``
(one copy per server process, shared by every session and kept across
reruns); results are cached with ``st.cache_data`` (hashed on their
arguments, returned as copies). Objects returned by ``cache_resource`` are
shared by every user: never mutate them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
import streamlit as st

import models
from explain import gradients

log = logging.getLogger(__name__)

CACHE_ENV = "DASHBOARD_JAX_CACHE"  # a folder, or "" to turn the persistent compilation cache off
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "flax-explain" / "jax"


def enable_compilation_cache() -> Path | None:
    """Turns on JAX's persistent compilation cache for the dashboard process, unless one is configured.

    ``st.cache_resource`` keeps compiled functions for the life of the server; this keeps
    them across restarts (and shares them between server processes), so a fresh server's
    first page load skips most of XLA's work. ``$DASHBOARD_JAX_CACHE`` picks the folder;
    empty turns it off. Cached executables are keyed by the computation, the jax/jaxlib
    versions and the compile options, so a stale entry is never used.
    """
    if jax.config.jax_compilation_cache_dir:  # the user (or JAX_COMPILATION_CACHE_DIR) decided already
        return Path(jax.config.jax_compilation_cache_dir)
    folder = os.environ.get(CACHE_ENV, str(DEFAULT_CACHE))
    if not folder:
        return None
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a read-only home must not stop the app
        log.warning("no persistent compilation cache: %s", e)
        return None
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    return Path(folder)


class LoadFailure(NamedTuple):
    name: str
    message: str


@st.cache_resource(show_spinner="Loading model and data…")
def bundle(name: str) -> models.Bundle:
    """The shipped model ``name`` with its test split already generated."""
    b = models.load(name)
    _ = b.dataset.test  # generate the split now, inside the spinner
    return b


def try_bundle(name: str) -> models.Bundle | LoadFailure:
    """:func:`bundle`, or a :class:`LoadFailure` naming why the checkpoint could not be loaded."""
    try:
        return bundle(name)
    except (models.CheckpointError, ValueError, OSError) as e:
        log.warning("could not load %s: %s", name, e)
        return LoadFailure(name, f"{type(e).__name__}: {e}")


def bundle_or_error(name: str) -> models.Bundle | None:
    """The loaded model, or ``None`` after showing on the page why it could not be loaded."""
    b = try_bundle(name)
    if isinstance(b, LoadFailure):
        st.error(f"Model {name} could not be loaded: {b.message}")
        return None
    return b


def image_models() -> tuple[str, ...]:
    """Shipped image models, in registry order (robust variants included once registered)."""
    return tuple(models.IMAGE_MODELS)


def twins(name: str) -> tuple[str, ...]:
    """Other shipped models trained on the same dataset as ``name`` (a standard model and its robust twin)."""
    dataset = models.SPECS[name].dataset
    return tuple(n for n in models.SPECS if n != name and models.SPECS[n].dataset == dataset)


def tabular_models() -> tuple[str, ...]:
    return tuple(models.TABULAR_MODELS)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(N, K)`` logits on the host (max-shifted, so large logits do not overflow)."""
    z = np.asarray(logits, np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def outputs(name: str, x: np.ndarray) -> np.ndarray:
    """``(N, K)`` raw outputs (logits or regression values) of model ``name`` for ``x`` ``(N, *shape)``.

    One :func:`explain.gradients.forward`: validated, chunked by the memory budget, compiled once per shape.
    """
    return np.asarray(gradients.forward(bundle(name).model, np.asarray(x, np.float32)))


def probabilities(name: str, x: np.ndarray) -> np.ndarray:
    """``(N, K)`` class probabilities of model ``name`` for ``x`` ``(N, *shape)``."""
    return softmax(outputs(name, x))


class TestPredictions(NamedTuple):
    """Predictions on the whole test split: ``pred (N,)``, ``confidence (N,)``, ``correct (N,) bool``."""

    pred: np.ndarray
    confidence: np.ndarray
    correct: np.ndarray


@st.cache_data(show_spinner="Classifying the test split…", max_entries=16)
def test_predictions(name: str) -> TestPredictions:
    """Predicted class, its probability and correctness for every test image, cached per model."""
    b = bundle(name)
    p = probabilities(name, b.dataset.test.x)
    pred = p.argmax(axis=1)
    return TestPredictions(pred=pred, confidence=p.max(axis=1), correct=pred == b.dataset.test.y)


def filter_indices(y: np.ndarray, correct: np.ndarray, *, classes: list[int] | None, correctness: str) -> np.ndarray:
    """Test indices whose label is in ``classes`` (all when ``None``/empty) and whose correctness matches.

    ``correctness`` is ``"all"``, ``"correct"`` or ``"incorrect"``.
    """
    if correctness not in ("all", "correct", "incorrect"):
        raise ValueError(f"expected correctness 'all', 'correct' or 'incorrect', got {correctness!r}")
    keep = np.ones(len(y), bool)
    if classes:
        keep &= np.isin(y, classes)
    if correctness == "correct":
        keep &= correct
    elif correctness == "incorrect":
        keep &= ~correct
    return np.flatnonzero(keep)

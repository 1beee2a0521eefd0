"""Cached loaders shared by every page: one key per model, shipped or the user's.

Every page gets its models by key: a spec string (:mod:`dashboard.config`; a shipped name is a spec
too) resolved by :func:`explain.specs.resolve`, with its data: the spec's own test split when it
comes with one, else the ``--data`` file read by :func:`explain.data.load`, else none (pages that
need inputs say so). Models, datasets and compiled functions are cached with ``st.cache_resource``
(one copy per server process, shared by every session and kept across reruns); results are cached
with ``st.cache_data`` (hashed on their arguments, returned as copies). Objects returned by
``cache_resource`` are shared by every user: never mutate them.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, NamedTuple

import numpy as np
import streamlit as st

from dashboard import common
from dashboard.config import DATA_MARK, Config, ModelArg
from explain import gradients, specs
from explain.model import Model

log = logging.getLogger(__name__)

# Rows (or image files) read from a --data path: enough for every page's sample (the robustness curve
# takes 64, the sensitivity ranking 300) while a big folder still loads in seconds.
DATA_LIMIT = 1000


# ----------------------------------------------------------------------------- which models


_config = Config()


def configure(config: Config) -> None:
    """Sets the user's models for the whole process (app.py calls it on every run, from argv and env)."""
    global _config
    _config = config


def config() -> Config:
    return _config


def shipped() -> tuple[str, ...]:
    """The shipped names in registry order (image models first), or ``()`` under ``--only``."""
    if _config.only:
        return ()
    import models  # the names only: models/__init__ is light and never imports the registry here

    return tuple(models.NAMES)


def _arg(key: str) -> ModelArg:
    """The configured model of ``key``; a key not configured (a shipped name) is read as ``SPEC[@PATH]``."""
    for m in _config.models:
        if m.key == key:
            return m
    spec, mark, data = key.partition(DATA_MARK)
    return ModelArg(spec, data if mark else None)


def keys() -> tuple[str, ...]:
    """Every model's key: the shipped ones (unless ``--only``), then the user's, each once."""
    return tuple(dict.fromkeys((*shipped(), *(m.key for m in _config.models))))


# ----------------------------------------------------------------------------- loading


@dataclasses.dataclass(frozen=True, eq=False)
class Entry:
    """A model with what the pages need of its data.

    Attributes:
      key: the spec (``SPEC`` or ``SPEC@PATH``) every page and cache uses.
      name: the model's name (shipped name, bundle name or ``model.name``); ``stem`` is file-safe.
      model: the :class:`explain.Model`.
      x: ``(N, *input_shape)`` inputs (the test split, or the ``--data`` rows), or ``None``.
      labels: ``(N,)`` labels of ``x`` (class indices or regression targets), or ``None``.
      ids: ``N`` row or file names, for captions.
      class_names: ``K`` names for classification (``class 0 .. class K-1`` when nothing names them).
      references: rows for baselines that need a reference set (the training split, else ``x``), or ``None``.
      preprocessing: the shipped dataset's statistics (e.g. ``y_mean``, ``y_std``), else ``{}``.
      standardised: whether tabular inputs are in standardised units (the shipped tabular datasets).
      data_note: where ``x`` comes from, one line for the page.
      skipped: ``(path, reason)`` of data files that could not be used.
      shipped: a model shipped with the app (it may have twins).
    """

    key: str
    name: str
    model: Model
    x: np.ndarray | None
    labels: np.ndarray | None
    ids: tuple[str, ...]
    class_names: tuple[str, ...] | None
    references: np.ndarray | None
    preprocessing: dict
    standardised: bool
    data_note: str
    skipped: tuple[tuple[str, str], ...] = ()
    shipped: bool = False

    @property
    def stem(self) -> str:
        return "".join(c if c.isalnum() or c in "._-" else "_" for c in self.name).strip("._") or "model"

    @property
    def is_image(self) -> bool:
        """Image pages' models: ``(H, W, C)`` inputs with ``C`` of 1 or 3, classification outputs."""
        shape = self.model.input_spec.shape
        return len(shape) == 3 and shape[-1] in (1, 3) and self.model.output_kind == "classification"

    @property
    def is_tabular(self) -> bool:
        return len(self.model.input_spec.shape) == 1

    @property
    def n(self) -> int:
        return 0 if self.x is None else len(self.x)

    @property
    def label(self) -> str:
        """The selectbox label: the shipped name, or the model's name with its (redacted) spec."""
        if self.shipped or self.key == self.name:
            return self.name
        return f"{self.name} · {common.redact(self.key)}"


class LoadFailure(NamedTuple):
    name: str
    message: str


def class_names_of(model: Model, *candidates: Any) -> tuple[str, ...] | None:
    """The first of ``candidates`` that names every class, else ``class 0 .. class K-1``; ``None`` for regression."""
    if model.output_kind != "classification":
        return None
    k = model.num_outputs
    for names in candidates:
        if names is not None and len(names) == k:
            return tuple(map(str, names))
    return tuple(f"class {i}" for i in range(k))


def _split(dataset: Any, which: str) -> Any:
    split = getattr(dataset, which, None)
    return split if split is not None and hasattr(split, "x") and hasattr(split, "y") else None


def _entry(arg: ModelArg, resolved: specs.Resolved, is_shipped: bool) -> Entry:
    model = resolved.model
    test = _split(resolved.dataset, "test")
    x = labels = None
    ids: tuple[str, ...] = ()
    data_names = None
    skipped: tuple[tuple[str, str], ...] = ()
    if test is not None and arg.data is None:
        x, labels = np.asarray(test.x), np.asarray(test.y)
        ids = tuple(f"test image #{i}" if x.ndim == 4 else f"row {i}" for i in range(len(x)))
        note = f"the test split of {resolved.name} ({len(x)})"
    elif arg.data is not None:
        from explain import data as data_lib  # the data reader; imported when a model has --data

        d = data_lib.load(arg.data, model, limit=DATA_LIMIT)
        x, labels, ids, data_names, skipped = np.asarray(d.x, np.float32), d.labels, d.ids, d.class_names, d.skipped
        labels = None if labels is None else np.asarray(labels)
        note = f"{common.redact(arg.data)} ({len(x)}{', labelled' if labels is not None else ', no labels'})"
    else:
        note = "no data"
    train = _split(resolved.dataset, "train")
    references = np.asarray(train.x) if train is not None else x
    dataset = resolved.dataset
    return Entry(
        key=arg.key,
        name=resolved.name,
        model=model,
        x=x,
        labels=labels,
        ids=ids,
        class_names=class_names_of(model, resolved.class_names, data_names),
        references=references,
        preprocessing=dict(getattr(dataset, "preprocessing", None) or {}),
        standardised=is_shipped and len(model.input_spec.shape) == 1 and getattr(dataset, "value_range", 0) is None,
        data_note=note,
        skipped=tuple(skipped),
        shipped=is_shipped,
    )


@st.cache_resource(show_spinner="Loading model and data…")
def load(spec: str, data: str | None, is_shipped: bool) -> Entry | LoadFailure:
    """The model ``spec`` names, with its data, or a :class:`LoadFailure` saying in one line why not.

    Failures are cached too (a spec that failed is not imported again on every rerun); anything a
    user's factory raises is caught here, logged with its traceback, and shown without server paths.
    """
    arg = ModelArg(spec, data)
    try:
        resolved = specs.resolve(spec)
        e = _entry(arg, resolved, is_shipped)
        if e.x is not None and e.x.ndim == 4:
            _ = e.x[:1]  # memmapped files open now, inside the spinner
        return e
    except Exception as e:  # noqa: BLE001 - a user's factory may raise anything; the page must keep working
        log.warning("could not load model %s", arg.key, exc_info=True)
        first = (str(e).strip().splitlines() or [""])[0]
        return LoadFailure(arg.key, common.redact(f"{type(e).__name__}: {first}"))


def try_entry(key: str) -> Entry | LoadFailure:
    arg = _arg(key)
    return load(arg.spec, arg.data, arg.data is None and arg.spec in shipped_names())


def entry(key: str) -> Entry:
    """The loaded model ``key``; raises ``RuntimeError`` when it could not be loaded (pages check first)."""
    e = try_entry(key)
    if isinstance(e, LoadFailure):
        raise RuntimeError(e.message)
    return e


def entry_or_error(key: str) -> Entry | None:
    """The loaded model, or ``None`` after showing on the page why it could not be loaded."""
    e = try_entry(key)
    if isinstance(e, LoadFailure):
        st.error(f"Model {common.redact(key)} could not be loaded: {e.message}")
        return None
    return e


def shipped_names() -> tuple[str, ...]:
    import models

    return tuple(models.NAMES)


def loaded() -> tuple[list[Entry], list[LoadFailure]]:
    """Every model (shipped first, then the user's, in order) loaded, and the failures apart."""
    good, bad = [], []
    for key in keys():
        e = try_entry(key)
        (bad if isinstance(e, LoadFailure) else good).append(e)
    return good, bad


def models_for(kind: str) -> tuple[str, ...]:
    """Keys of the loaded models of ``kind`` (``"image"``, ``"tabular"`` or ``"any"``), after showing one line
    per model that failed to load; the rest keep working."""
    if kind not in ("image", "tabular", "any"):
        raise ValueError(f"expected kind 'image', 'tabular' or 'any', got {kind!r}")
    good, bad = loaded()
    for f in bad:
        st.error(f"Model {common.redact(f.name)} could not be loaded: {f.message}")
    fits = {"image": lambda e: e.is_image, "tabular": lambda e: e.is_tabular, "any": lambda e: True}[kind]
    return tuple(e.key for e in good if fits(e))


def label(key: str) -> str:
    """The selectbox label of ``key`` (its ``format_func``)."""
    e = try_entry(key)
    return common.redact(key) if isinstance(e, LoadFailure) else e.label


def twins(key: str) -> tuple[str, ...]:
    """Other shipped models trained on the same dataset as shipped ``key`` (a model and its robust twin)."""
    e = try_entry(key)
    if isinstance(e, LoadFailure) or not e.shipped:
        return ()
    import models

    dataset = models.SPECS[key].dataset
    return tuple(n for n in shipped() if n != key and models.SPECS[n].dataset == dataset)


# ----------------------------------------------------------------------------- predictions


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(N, K)`` logits on the host (max-shifted, so large logits do not overflow)."""
    z = np.asarray(logits, np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def outputs(key: str, x: np.ndarray) -> np.ndarray:
    """``(N, K)`` raw outputs (logits or regression values) of model ``key`` for ``x`` ``(N, *shape)``.

    One :func:`explain.gradients.forward`: validated, chunked by the memory budget, compiled once per shape.
    """
    return np.asarray(gradients.forward(entry(key).model, np.asarray(x, np.float32)))


def probabilities(key: str, x: np.ndarray) -> np.ndarray:
    """``(N, K)`` class probabilities of model ``key`` for ``x`` ``(N, *shape)``."""
    return softmax(outputs(key, x))


class TestPredictions(NamedTuple):
    """Predictions on the model's inputs: ``pred (N,)``, ``confidence (N,)``, ``correct (N,) bool`` (all
    ``False`` without labels)."""

    pred: np.ndarray
    confidence: np.ndarray
    correct: np.ndarray


@st.cache_data(show_spinner="Classifying the inputs…", max_entries=16)
def test_predictions(key: str) -> TestPredictions:
    """Predicted class, its probability and correctness for every input of ``key``, cached per model."""
    e = entry(key)
    p = probabilities(key, e.x)
    pred = p.argmax(axis=1)
    correct = pred == e.labels if e.labels is not None else np.zeros(len(pred), bool)
    return TestPredictions(pred=pred, confidence=p.max(axis=1), correct=correct)


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

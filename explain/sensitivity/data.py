"""Tabular input for the sensitivity rankings: column checks, matching by name, CSV files.

Every ranking starts with :func:`check_tabular`, so a wrong column count,
mismatched feature names, NaN rows or an image model raise a clear error
before anything is compiled.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from explain import checks
from explain.model import Model, as_model

NOT_TABULAR_MSG = (
    "sensitivity rankings need a tabular model whose samples have shape (F,); model {name!r} takes samples of "
    "shape {shape}. For image models use the saliency methods (explain.saliency) instead."
)


def feature_names(model: Model) -> tuple[str, ...]:
    """The model's feature names, or ``x0 .. x{F-1}`` when it declares none."""
    spec = model.input_spec
    return spec.feature_names or tuple(f"x{i}" for i in range(spec.shape[0]))


def match_columns(columns: Sequence[str], model: Model) -> np.ndarray:
    """Indices that reorder columns named ``columns`` into the model's feature order.

    Raises:
      ValueError: naming the missing and the extra columns when the sets differ.
    """
    expected = feature_names(model)
    columns = [str(c) for c in columns]
    missing = [n for n in expected if n not in columns]
    extra = [c for c in columns if c not in expected]
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if missing or extra or dupes:
        parts = [f"missing {missing}" if missing else "", f"unexpected {extra}" if extra else ""]
        parts.append(f"duplicated {dupes}" if dupes else "")
        raise ValueError(
            f"feature names do not match model {model.name!r}: {'; '.join(p for p in parts if p)}. "
            f"Expected the {len(expected)} columns {list(expected)} (any order)."
        )
    return np.asarray([columns.index(n) for n in expected])


def check_tabular(model: Model | Any, x: Any, *, names: Sequence[str] | None = None) -> tuple[Model, np.ndarray]:
    """Checks a tabular batch on the host: ``(model, x (N, F))`` with columns in the model's order.

    Only what is particular to tables is checked here (a tabular model, the
    column count, names, NaN rows named); the batch is validated once more by
    :func:`explain.gradients.prepare` (shape, dtype, target), the one validation
    every function runs. Integer columns are refused as everywhere
    (:func:`explain.checks.input_dtype`): cast them with ``.astype("float32")``.

    Args:
      model: a tabular :class:`~explain.model.Model` (input shape ``(F,)``) or a bundle.
      x: ``(N, F)`` array, or a pandas DataFrame whose columns are matched by name.
      names: the column names of an array ``x``, matched by name like a DataFrame's.

    Returns:
      ``(model, x)`` with ``x`` a host NumPy array in the dtype of :func:`explain.checks.input_dtype`.

    Raises:
      ValueError: image model, wrong column count, names that do not match, NaN/inf rows.
      TypeError: a dtype the input policy refuses.
    """
    model = as_model(model)
    spec = model.input_spec
    if not spec.is_tabular:
        raise ValueError(NOT_TABULAR_MSG.format(name=model.name, shape=spec.shape))
    if hasattr(x, "columns") and hasattr(x, "to_numpy"):
        names, x = list(x.columns), x.to_numpy()
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"expected x of shape (N, {spec.shape[0]}) (one row per sample), got shape {arr.shape}")
    if names is not None:
        if len(names) != arr.shape[1]:
            raise ValueError(f"got {len(names)} feature names for {arr.shape[1]} columns of x")
        arr = arr[:, match_columns(names, model)]
    elif arr.shape[1] != spec.shape[0]:
        shown = list(feature_names(model))
        raise ValueError(
            f"expected x with {spec.shape[0]} feature columns {shown} for model {model.name!r}, "
            f"got {arr.shape[1]} columns"
        )
    dtype = checks.input_dtype(arr.dtype)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"x has NaN or inf in {rows.size} row(s), first at row {rows[0]} (rows {rows[:5].tolist()}"
            f"{'...' if rows.size > 5 else ''}); drop or impute them before ranking"
        )
    return model, arr.astype(dtype, copy=False)


def check_references(model: Model, references: Any) -> np.ndarray:
    """Feature means ``(F,)`` of a reference set: ``(F,)`` means as given, or ``(R, F)`` rows (or a DataFrame) averaged.

    The references are separate from the rows explained, so one row's attribution
    never depends on the other rows of its batch.

    Raises:
      ValueError: wrong shape or column names, no rows, NaN/inf.
      TypeError: a non-numeric array.
    """
    f = model.input_spec.shape[0]
    names = None
    if hasattr(references, "columns") and hasattr(references, "to_numpy"):
        names, references = list(references.columns), references.to_numpy()
    arr = np.asarray(references)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"expected numeric references, got dtype {arr.dtype}")
    if arr.ndim == 2 and names is not None:
        arr = arr[:, match_columns(names, model)]
    if not ((arr.ndim == 1 and arr.shape[0] == f) or (arr.ndim == 2 and arr.shape[1] == f and arr.shape[0] >= 1)):
        raise ValueError(
            f"expected references of shape ({f},) (feature means) or (R, {f}) (reference rows, R >= 1), got {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise ValueError("expected finite references, got NaN or inf")
    return arr.astype(np.float64).mean(axis=0) if arr.ndim == 2 else arr.astype(np.float64)


def check_rows_for_statistics(x: np.ndarray, model: Model, *, what: str) -> np.ndarray:
    """``σ (F,)`` float64, the features' standard deviations over ``x (N, F)``; needs ``N >= 2``, warns on constant features.

    Global rankings scale by ``σ`` and resample rows: with one row every ``σ``
    is 0 and a bootstrap has nothing to resample, so the result would be
    silently zero.
    """
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"{what} needs at least 2 rows (feature spread and row resampling), got {n}")
    sigma = np.std(x, axis=0, dtype=np.float64)
    const = np.flatnonzero(sigma == 0)
    if const.size:
        names = [feature_names(model)[i] for i in const]
        warnings.warn(
            f"feature(s) {names} are constant over the {n} rows: their spread is 0, so their scaled gradient and "
            "interaction scores are 0 and their rank among themselves is arbitrary",
            RuntimeWarning,
            stacklevel=3,
        )
    return sigma


def key_words(key: jax.Array) -> list[int]:
    """The ``uint32`` words of a PRNG key (a typed key or raw ``uint32 (2,)`` key data), for seeding host generators."""
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return np.asarray(data, np.uint32).ravel().tolist()


def host_generator(key: jax.Array, *stream: int) -> np.random.Generator:
    """A NumPy PCG64 generator determined by ``key`` and a stream index (e.g. ``(repeat, feature)``).

    Each stream is a child of one ``SeedSequence`` (``spawn_key=stream``), so the
    draws of one stream never depend on how many others are drawn, or in which
    order or chunks: results do not depend on the memory budget.
    """
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(key_words(key), spawn_key=tuple(stream))))


def read_csv(path: str | Path, model: Model | Any, *, label_column: str | None = None) -> tuple[np.ndarray, Any]:
    """Reads a CSV with a header row and matches its columns to the model's features by name.

    Args:
      path: a CSV file with one header row.
      model: the tabular model whose ``input_spec.feature_names`` name the columns.
      label_column: a column holding labels, returned separately (``None``: no labels).

    Returns:
      ``(x (N, F) float32 in the model's feature order, labels (N,) or None)``.

    Raises:
      ValueError: missing or unexpected columns (named), or a missing ``label_column``.
    """
    import pandas as pd

    model = as_model(model)
    frame = pd.read_csv(path)
    labels = None
    if label_column is not None:
        if label_column not in frame.columns:
            raise ValueError(f"label column {label_column!r} not in {path}; its columns are {list(frame.columns)}")
        labels = frame.pop(label_column).to_numpy()
    order = match_columns(list(frame.columns), model)
    return frame.to_numpy(dtype=np.float32)[:, order], labels

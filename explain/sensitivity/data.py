"""Tabular input for the sensitivity rankings: column checks, matching by name, CSV files, host random streams.

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
      ValueError: naming the missing, the extra and the duplicated columns when the sets differ.
    """
    expected = feature_names(model)
    columns = [str(c) for c in columns]
    problems = {
        "missing": [n for n in expected if n not in columns],
        "unexpected": [c for c in columns if c not in expected],
        "duplicated": sorted({c for c in columns if columns.count(c) > 1}),
    }
    if any(problems.values()):
        found = "; ".join(f"{what} {names}" for what, names in problems.items() if names)
        raise ValueError(
            f"feature names do not match model {model.name!r}: {found}. "
            f"Expected the {len(expected)} columns {list(expected)} (any order)."
        )
    return np.asarray([columns.index(n) for n in expected])


def _named(x: Any, names: Sequence[str] | None) -> tuple[np.ndarray, Sequence[str] | None]:
    """``(array, column names)``: a DataFrame's own column names, else ``names``."""
    if hasattr(x, "columns") and hasattr(x, "to_numpy"):
        return x.to_numpy(), list(x.columns)
    return np.asarray(x), names


def check_tabular(model: Model | Any, x: Any, *, names: Sequence[str] | None = None) -> tuple[Model, np.ndarray]:
    """``(model, x (N, F))``: a tabular batch on the host, columns in the model's order, dtype of the input policy.

    Only what is particular to tables is checked here (a tabular model, the column count,
    names, NaN rows named); :func:`explain.gradients.prepare` validates the batch as for every
    method. Integer columns are refused (:func:`explain.checks.input_dtype`): cast them first.

    Args:
      model: a tabular :class:`~explain.model.Model` (input shape ``(F,)``) or a bundle.
      x: ``(N, F)`` array, or a pandas DataFrame whose columns are matched by name.
      names: the column names of an array ``x``, matched by name like a DataFrame's.
    """
    model = as_model(model)
    spec = model.input_spec
    if not spec.is_tabular:
        raise ValueError(NOT_TABULAR_MSG.format(name=model.name, shape=spec.shape))
    arr, names = _named(x, names)
    if arr.ndim != 2:
        raise ValueError(f"expected x of shape (N, {spec.shape[0]}) (one row per sample), got shape {arr.shape}")
    if names is not None:
        if len(names) != arr.shape[1]:
            raise ValueError(f"got {len(names)} feature names for {arr.shape[1]} columns of x")
        arr = arr[:, match_columns(names, model)]
    elif arr.shape[1] != spec.shape[0]:
        raise ValueError(
            f"expected x with {spec.shape[0]} feature columns {list(feature_names(model))} for model "
            f"{model.name!r}, got {arr.shape[1]} columns"
        )
    dtype = checks.input_dtype(arr.dtype)
    rows = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if rows.size:
        raise ValueError(
            f"x has NaN or inf in {rows.size} row(s), first at row {rows[0]} (rows {rows[:5].tolist()}"
            f"{'...' if rows.size > 5 else ''}); drop or impute them before ranking"
        )
    return model, arr.astype(dtype, copy=False)


def check_references(model: Model, references: Any) -> np.ndarray:
    """Feature means ``(F,)`` float64 of a reference set: ``(F,)`` means as given, or ``(R, F)`` rows (or a DataFrame).

    The references are separate from the rows explained, so one row's attribution
    never depends on the other rows of its batch.
    """
    f = model.input_spec.shape[0]
    arr, names = _named(references, None)
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

    Global rankings scale by ``σ`` and resample rows: with one row every ``σ`` is 0 and a
    bootstrap has nothing to resample, so the result would be silently zero.
    """
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"{what} needs at least 2 rows (feature spread and row resampling), got {n}")
    sigma = np.std(x, axis=0, dtype=np.float64)
    if (const := np.flatnonzero(sigma == 0)).size:
        warnings.warn(
            f"feature(s) {[feature_names(model)[i] for i in const]} are constant over the {n} rows: their spread is "
            "0, so their scaled gradient and interaction scores are 0 and their rank among themselves is arbitrary",
            RuntimeWarning,
            stacklevel=3,
        )
    return sigma


def key_words(key: jax.Array | np.ndarray) -> list[int]:
    """The ``uint32`` words of a PRNG key (a typed key or raw ``uint32 (2,)`` key data), for seeding host generators."""
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return np.asarray(data, np.uint32).ravel().tolist()


def host_generator(key: jax.Array | np.ndarray, *stream: int) -> np.random.Generator:
    """A NumPy PCG64 generator determined by ``key`` and a stream index (e.g. ``(repeat, feature)``).

    Each stream is a child of one ``SeedSequence`` (``spawn_key=stream``), so its draws never
    depend on how many others are drawn, in which order or chunks: nor on the memory budget.
    """
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(key_words(key), spawn_key=tuple(stream))))


def read_csv(path: str | Path, model: Model | Any, *, label_column: str | None = None) -> tuple[np.ndarray, Any]:
    """``(x (N, F) float32 in the model's feature order, labels (N,) or None)`` from a CSV with one header row.

    :func:`explain.data.load_table`: columns matched to ``model.input_spec.feature_names`` by
    name (missing ones raise :class:`explain.data.DataError`, named; other columns are ignored);
    ``label_column`` is returned separately (int64 class indices or float32 values).
    """
    from explain import data  # lazily: pandas is imported only when a file is read

    table = data.load_table(path, model, label_column=label_column, kind="csv")
    return table.x, table.labels

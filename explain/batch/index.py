"""The run's index: one Parquet row per example (and per skipped file), written atomically.

Columns: ``id`` (the source's path or row name), ``row`` (global row number), ``shard``, ``status``
(``"ok"`` or ``"skipped"``), ``reason`` (why a file was skipped, else null), ``prediction`` (argmax of
the outputs; -1 for regression), ``probability`` (its softmax probability; NaN for regression),
``target`` (the explained class, -1 when the target is not one class), ``max_abs = max |a|`` and
``l1 = Σ |a|`` of the example's attribution map, and ``convergence_delta`` (path methods'
completeness error ``Σ a - (F(x) - F(x'))``, Sundararajan et al. 2017; null otherwise or with
``target="all"``). The per-example statistics are stored in each shard (:func:`stats`) so the index is
rebuilt from the shards alone after a resume.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Float

from explain.io import atomic_write_bytes

INDEX = "index.parquet"


def stats(
    values: Float[np.ndarray, " r *map"],
    outputs: Float[np.ndarray, " r k"],
    target: Any,
    *,
    classification: bool,
) -> dict[str, np.ndarray]:
    """Per-example summaries of ``values (R, ...)`` and the model's ``outputs (R, K)``, each ``(R,)``.

    ``target`` is the bound target's per-row class ``(R,)`` when it is one, else ``None``.
    """
    r = values.shape[0]
    flat = np.abs(values.reshape(r, -1).astype(np.float64))
    if classification:
        z = outputs - outputs.max(axis=1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        prediction, probability = outputs.argmax(axis=1), p.max(axis=1)
    else:
        prediction, probability = np.full(r, -1), np.full(r, np.nan)
    cls = np.full(r, -1) if target is None else np.asarray(target).reshape(r)
    return {
        "prediction": prediction.astype(np.int64),
        "probability": probability.astype(np.float32),
        "target": cls.astype(np.int64),
        "max_abs": flat.max(axis=1).astype(np.float32) if flat.shape[1] else np.zeros(r, np.float32),
        "l1": flat.sum(axis=1).astype(np.float32),
    }


STAT_FIELDS = ("prediction", "probability", "target", "max_abs", "l1")


def table(
    shards: Iterable[tuple[int, Mapping[str, np.ndarray]]],
    ids: Any,
    skipped: Iterable[tuple[int | None, int | None, str, str]],
) -> Any:
    """The index as a ``pyarrow.Table``.

    Args:
      shards: ``(shard index, arrays)`` with ``row`` and :data:`STAT_FIELDS` (and ``convergence_delta``).
      ids: ``ids(row) -> str``.
      skipped: ``(shard or None, row or None, id, reason)`` of each unusable file.
    """
    import pyarrow as pa  # a dependency of the batch engine only

    cols: dict[str, list] = {k: [] for k in ("id", "row", "shard", "status", "reason", *STAT_FIELDS)}
    cols["convergence_delta"] = []
    for i, arr in shards:
        rows = arr["row"]
        cols["id"] += [ids(int(r)) for r in rows]
        cols["row"] += rows.tolist()
        cols["shard"] += [i] * len(rows)
        cols["status"] += ["ok"] * len(rows)
        cols["reason"] += [None] * len(rows)
        for f in STAT_FIELDS:
            cols[f] += arr[f].tolist()
        delta = arr.get("convergence_delta")
        ok = delta is not None and delta.ndim == 1  # (R, K) with target="all": no one number per example
        cols["convergence_delta"] += delta.tolist() if ok else [None] * len(rows)
    for shard, row, name, reason in skipped:
        for k, v in (("id", name), ("row", row), ("shard", shard), ("status", "skipped"), ("reason", reason)):
            cols[k].append(v)
        for f in (*STAT_FIELDS, "convergence_delta"):
            cols[f].append(None)
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("row", pa.int64()),
            ("shard", pa.int64()),
            ("status", pa.string()),
            ("reason", pa.string()),
            ("prediction", pa.int64()),
            ("probability", pa.float32()),
            ("target", pa.int64()),
            ("max_abs", pa.float32()),
            ("l1", pa.float32()),
            ("convergence_delta", pa.float32()),
        ]
    )
    return pa.table(cols, schema=schema)


def write(out_dir: str | Path, tab: Any) -> Path:
    """``tab`` as ``out_dir/index.parquet``, atomically."""
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(tab, buf)
    return atomic_write_bytes(Path(out_dir) / INDEX, buf.getvalue())


def read(out_dir: str | Path) -> Any:
    """The index of ``out_dir`` as a ``pyarrow.Table``."""
    import pyarrow.parquet as pq

    return pq.read_table(Path(out_dir) / INDEX)

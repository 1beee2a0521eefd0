"""Result objects of the sensitivity rankings: pytrees of arrays, readable tables, DataFrames, CSV and JSON.

Each result is a frozen dataclass registered as a pytree (:class:`explain.results.Result`):
its arrays are the leaves (``.to_numpy()`` gives host copies), its feature names and
settings static. ``to_frame()`` is the one tabular form; ``to_csv`` (after one
``# settings: {json}`` line, which ``pandas.read_csv(path, comment="#")`` skips) and
``to_json`` are derived from it, so every export carries names, values, intervals and settings.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jaxtyping import Array, Float

from explain.io import atomic_write_text
from explain.results import Result

# Result arrays are JAX arrays; ``to_numpy()`` turns the same result into NumPy arrays.
Values = Array | np.ndarray


def _jsonable(value: Any) -> Any:
    """JSON data: arrays and NumPy scalars as Python lists and numbers, NaN/inf as ``None`` (strict JSON)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.ndarray, jax.Array, np.generic)):
        return _jsonable(np.asarray(value).tolist())
    return None if isinstance(value, float) and not np.isfinite(value) else value


def _dumps(value: Any, **kwargs: Any) -> str:
    return json.dumps(_jsonable(value), allow_nan=False, **kwargs)


class Settings(Mapping):
    """The settings that produced a result: a read-only mapping, hashable (static pytree data), JSON-able."""

    __slots__ = ("_data", "_json")

    def __init__(self, data: Mapping[str, Any] = ()) -> None:
        self._data = dict(data)
        self._json = _dumps(self._data, sort_keys=True)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(self._json)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        try:
            return self._json == (other if isinstance(other, Settings) else Settings(other))._json
        except (TypeError, ValueError):  # values that are not JSON data cannot be equal to ours
            return False

    def __repr__(self) -> str:
        return f"Settings({self._data!r})"

    def __reduce__(self) -> tuple:
        return Settings, (self._data,)


def _static(**kwargs: Any) -> Any:
    return dataclasses.field(metadata=dict(static=True), **kwargs)


class _Exportable:
    """CSV and JSON from ``to_frame()`` and ``settings``, written atomically when a path is given."""

    settings: Mapping[str, Any]

    def __post_init__(self) -> None:
        if not isinstance(self.settings, Settings):
            object.__setattr__(self, "settings", Settings(self.settings))

    @staticmethod
    def _write(path: str | Path | None, text: str) -> str:
        if path is not None:
            atomic_write_text(path, text)
        return text

    def to_csv(self, path: str | Path | None = None) -> str:
        """The table as CSV after a ``# settings: {json}`` line."""
        return self._write(path, f"# settings: {_dumps(dict(self.settings))}\n" + self.to_frame().to_csv(index=False))

    def to_json(self, path: str | Path | None = None) -> str:
        """``{"settings": ..., "rows": [records]}`` (strict JSON: NaN/inf as null)."""
        rows = self.to_frame().to_dict(orient="records")
        return self._write(path, _dumps({"settings": dict(self.settings), "rows": rows}, indent=1))

    def save(self, path: str | Path) -> None:
        """Writes CSV or JSON, chosen by the suffix of ``path``."""
        suffix = Path(path).suffix.lower()
        if suffix not in (".csv", ".json"):
            raise ValueError(f"expected an output path ending in .csv or .json, got {str(path)!r}")
        (self.to_csv if suffix == ".csv" else self.to_json)(path)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True, eq=False)
class LocalSensitivity(_Exportable, Result):
    """Per-row attributions.

    Attributes:
      feature_names: ``F`` names, in the model's order (static).
      values: ``{method: (N, F)}`` signed, for the methods of :data:`explain.sensitivity.local.METHODS`.
      target_values: ``(N,)`` the target at each row.
      settings: model, target, methods, baseline and steps of Integrated Gradients (static).
    """

    feature_names: tuple[str, ...] = _static()
    values: Mapping[str, Float[Values, " n f"]]
    target_values: Float[Values, " n"]
    settings: Mapping[str, Any] = _static()

    def ranked(self, row: int = 0, method: str | None = None) -> list[tuple[str, float]]:
        """``(feature, signed value)`` of one row, largest magnitude first."""
        method = method or next(iter(self.values))
        if method not in self.values:
            raise ValueError(f"method {method!r} was not computed; have {list(self.values)}")
        v = np.asarray(self.values[method][row])
        return [(self.feature_names[i], float(v[i])) for i in np.argsort(-np.abs(v), kind="stable")]

    def to_frame(self):
        """Long form: one line per (row, method, feature) with its rank by magnitude within the row."""
        import pandas as pd

        parts = []
        for method, v in self.values.items():
            v = np.asarray(v)
            n, f = v.shape
            rank = np.argsort(np.argsort(-np.abs(v), axis=1, kind="stable"), axis=1) + 1
            names = np.tile(np.asarray(self.feature_names, dtype=object), n)
            columns = {"row": np.repeat(np.arange(n), f), "method": method, "rank": rank.ravel(), "feature": names}
            parts.append(pd.DataFrame({**columns, "feature_index": np.tile(np.arange(f), n), "value": v.ravel()}))
        return pd.concat(parts, ignore_index=True).sort_values(["row", "method", "rank"], ignore_index=True)

    def __str__(self) -> str:
        t = np.asarray(self.target_values)
        lines = [f"Local sensitivity of {self.settings.get('target')} ({self.settings.get('model')})"]
        width = max(len(m) for m in self.values)
        for row in range(min(len(t), 5)):
            lines.append(f"row {row}: target = {t[row]:.4g}")
            for method in self.values:
                top = ", ".join(f"{n} {v:+.3g}" for n, v in self.ranked(row, method)[:8])
                lines.append(f"  {method:>{width}}: {top}")
        if len(t) > 5:
            lines.append(f"... {len(t) - 5} more rows (to_frame() has all)")
        return "\n".join(lines)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True, eq=False)
class MethodRanking(Result):
    """One method's global ranking (arrays are leaves; ``method`` and ``description`` static).

    Attributes:
      method: ``"vanilla_gradient"``, ``"gradient_x_input"``, ``"integrated_gradients"`` or
        ``"permutation_importance"``.
      description: the score's formula, for tables.
      scores: ``(F,)`` mean over rows of the per-row score.
      lower, upper: ``(F,)`` the bootstrap percentile interval of ``scores``.
      top_k_share: ``(F,)`` share of bootstrap resamples in which the feature is in the top ``k``.
      spearman: ``()`` Spearman rank correlation of ``scores`` with permutation importance, or ``None``.
    """

    method: str = _static()
    description: str = _static()
    scores: Float[Values, " f"]
    lower: Float[Values, " f"]
    upper: Float[Values, " f"]
    top_k_share: Float[Values, " f"]
    spearman: Float[Values, " "] | None = None

    def order(self) -> np.ndarray:
        """Feature indices by descending score."""
        return np.argsort(-np.asarray(self.scores), kind="stable")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True, eq=False)
class GlobalSensitivity(_Exportable, Result):
    """Global feature rankings with bootstrap intervals, rank stability and agreement with permutation importance.

    Attributes:
      feature_names: ``F`` names, in the model's order (static).
      rankings: ``{method: MethodRanking}`` in the order computed.
      settings: target, rows, bootstraps, interval level, ``top_k``, baseline, key, etc. (static).
    """

    feature_names: tuple[str, ...] = _static()
    rankings: Mapping[str, MethodRanking]
    settings: Mapping[str, Any] = _static()

    def __getitem__(self, method: str) -> MethodRanking:
        if method not in self.rankings:
            raise KeyError(f"method {method!r} was not computed; have {list(self.rankings)}")
        return self.rankings[method]

    def top(self, method: str, k: int | None = None) -> list[str]:
        """Feature names of ``method``'s ranking, best first (the first ``k``)."""
        return [self.feature_names[i] for i in self[method].order()[:k]]

    def to_frame(self):
        """Long form: one line per (method, feature), ranked within each method."""
        import pandas as pd

        k = self.settings.get("top_k")
        columns = ("method", "rank", "feature", "feature_index", "score", "ci_low", "ci_high", f"top{k}_share")
        parts = []
        for r in self.rankings.values():
            o = r.order()
            ranked = (np.asarray(a)[o] for a in (r.scores, r.lower, r.upper, r.top_k_share))
            frame = dict(
                zip(columns, (r.method, np.arange(1, len(o) + 1), [self.feature_names[i] for i in o], o, *ranked))
            )
            rho = np.nan if r.spearman is None else float(r.spearman)
            parts.append(pd.DataFrame({**frame, "spearman_vs_permutation_importance": rho}))
        return pd.concat(parts, ignore_index=True)

    def table(self, method: str | Sequence[str] | None = None, top: int | None = None) -> str:
        """A readable ranked table of one method, several (under one header) or all (default), ``top`` features each."""
        s = self.settings
        methods = list(self.rankings) if method is None else [method] if isinstance(method, str) else list(method)
        level, k = round(100 * s.get("ci", 0.95)), s.get("top_k")
        lines = [
            f"Global sensitivity of {s.get('target')} for {s.get('model')!r}: {s.get('n_rows')} rows, "
            f"{s.get('n_bootstrap')} bootstraps, {level}% intervals"
        ]
        width = max(len(n) for n in self.feature_names)
        for m in methods:
            r = self[m]
            scores, lower, upper, share = (np.asarray(a) for a in (r.scores, r.lower, r.upper, r.top_k_share))
            agree = "" if r.spearman is None else f"; Spearman vs permutation importance = {float(r.spearman):.3f}"
            lines.append(f"\n[{m}] {r.description}{agree}")
            lines.append(f"{'rank':>4}  {'feature':<{width}}  {'score':>10}  {f'{level}% interval':>23}  top-{k} share")
            for rank, i in enumerate(r.order()[:top], start=1):
                lines.append(
                    f"{rank:>4}  {self.feature_names[i]:<{width}}  {scores[i]:>10.4g}  "
                    f"[{lower[i]:>10.4g}, {upper[i]:>10.4g}]  {share[i]:>10.0%}"
                )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True, eq=False)
class Interactions(_Exportable, Result):
    """Pairwise interaction strengths ``mean |∂²t/∂xᵢ∂xⱼ| · σᵢσⱼ``.

    Attributes:
      feature_names: ``F`` names (static).
      matrix: ``(F, F)`` symmetric; the diagonal is each feature's own curvature.
      settings: model, target, rows, scales (static).
    """

    feature_names: tuple[str, ...] = _static()
    matrix: Float[Values, " f f"]
    settings: Mapping[str, Any] = _static()

    def top_pairs(self, k: int | None = 10) -> list[tuple[str, str, int, int, float]]:
        """``(name_i, name_j, i, j, strength)`` for ``i < j``, strongest first."""
        matrix = np.asarray(self.matrix)
        i, j = np.triu_indices(matrix.shape[0], k=1)
        vals = matrix[i, j]
        names = self.feature_names
        return [
            (names[i[o]], names[j[o]], int(i[o]), int(j[o]), float(vals[o]))
            for o in np.argsort(-vals, kind="stable")[:k]
        ]

    def to_frame(self):
        """One line per pair ``i < j``, strongest first."""
        import pandas as pd

        frame = pd.DataFrame(self.top_pairs(None), columns=["feature_i", "feature_j", "index_i", "index_j", "strength"])
        frame.insert(0, "rank", np.arange(1, len(frame) + 1))
        return frame

    def matrix_frame(self):
        """The full ``(F, F)`` matrix labelled by feature names."""
        import pandas as pd

        return pd.DataFrame(np.asarray(self.matrix), index=list(self.feature_names), columns=list(self.feature_names))

    def __str__(self) -> str:
        s = self.settings
        lines = [
            f"Top interactions of {s.get('target')} for {s.get('model')!r} (mean |∂²t/∂xi∂xj|·σiσj, {s.get('n_rows')} rows)"
        ]
        lines += [f"{rank:>4}  {a} × {b}  {v:.4g}" for rank, (a, b, _, _, v) in enumerate(self.top_pairs(10), start=1)]
        return "\n".join(lines)

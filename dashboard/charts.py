"""Vega-Lite specs for the charts Streamlit's built-in charts cannot draw (intervals, signed bars, heatmaps).

Each function returns ``(data, spec)`` for ``st.vega_lite_chart(data, spec)``;
the data is a long-form DataFrame so tests can read the chart's numbers back.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

POSITIVE = "#c0392b"
NEGATIVE = "#2c7bb6"
FEATURE_AXIS = {"labelOverlap": False, "labelLimit": 220}  # every feature named, even 30 of them
CELL = 22  # heatmap cell side, pixels
# Legends below the chart, one entry per column slot and never truncated: long curve names
# ("sigmoid / glorot", "0.25^(d−1) bound") are clipped by a legend squeezed beside a narrow chart.
LEGEND = {"orient": "bottom", "columns": 3, "labelLimit": 0, "title": None}


def ranking_with_intervals(
    features: Sequence[str], scores: np.ndarray, lower: np.ndarray, upper: np.ndarray, *, title: str
) -> tuple[pd.DataFrame, dict]:
    """Horizontal bars of ``scores`` (best on top) with an interval rule ``[lower, upper]`` on each."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    df = pd.DataFrame(
        {
            "feature": [features[i] for i in order],
            "score": np.asarray(scores)[order],
            "ci_low": np.asarray(lower)[order],
            "ci_high": np.asarray(upper)[order],
        }
    )
    y = {"field": "feature", "type": "nominal", "sort": list(df["feature"]), "title": None, "axis": FEATURE_AXIS}
    spec = {
        "title": title,
        "height": max(120, 22 * len(df)),
        "layer": [
            {
                "mark": {"type": "bar", "color": "#4c78a8"},
                "encoding": {
                    "y": y,
                    "x": {"field": "score", "type": "quantitative", "title": "mean score"},
                    "tooltip": [{"field": c} for c in df.columns],
                },
            },
            {
                "mark": {"type": "rule", "color": "black", "strokeWidth": 1.5},
                "encoding": {"y": y, "x": {"field": "ci_low", "type": "quantitative"}, "x2": {"field": "ci_high"}},
            },
        ],
    }
    return df, spec


def signed_bars(
    features: Sequence[str], values: np.ndarray, *, title: str, value_title: str
) -> tuple[pd.DataFrame, dict]:
    """Horizontal bars of signed ``values``, largest magnitude on top, red positive and blue negative."""
    values = np.asarray(values, np.float64)
    order = np.argsort(-np.abs(values), kind="stable")
    df = pd.DataFrame({"feature": [features[i] for i in order], "value": values[order]})
    df["sign"] = np.where(df["value"] >= 0, "positive", "negative")
    spec = {
        "title": title,
        "height": max(120, 22 * len(df)),
        "mark": "bar",
        "encoding": {
            "y": {
                "field": "feature",
                "type": "nominal",
                "sort": list(df["feature"]),
                "title": None,
                "axis": FEATURE_AXIS,
            },
            "x": {"field": "value", "type": "quantitative", "title": value_title},
            "color": {
                "field": "sign",
                "type": "nominal",
                "scale": {"domain": ["positive", "negative"], "range": [POSITIVE, NEGATIVE]},
                "legend": None,
            },
            "tooltip": [{"field": "feature"}, {"field": "value", "format": ".4g"}],
        },
    }
    return df, spec


def heatmap(matrix: np.ndarray, features: Sequence[str], *, title: str, value_title: str) -> tuple[pd.DataFrame, dict]:
    """A square ``(F, F)`` matrix as a heatmap in feature order."""
    m = np.asarray(matrix, np.float64)
    f = len(features)
    i, j = np.meshgrid(np.arange(f), np.arange(f), indexing="ij")
    df = pd.DataFrame(
        {
            "feature_i": [features[k] for k in i.ravel()],
            "feature_j": [features[k] for k in j.ravel()],
            "value": m.ravel(),
        }
    )
    axis = {"type": "nominal", "sort": list(features), "title": None}
    # 22 px a cell fits a 10 px label on both axes; no overlap reduction, which would drop every other name.
    side = max(200, CELL * f)
    spec = {
        "title": title,
        "width": side,
        "height": side,
        "mark": "rect",
        "encoding": {
            "x": {"field": "feature_j", **axis, "axis": {**FEATURE_AXIS, "labelAngle": -60}},
            "y": {"field": "feature_i", **axis, "axis": FEATURE_AXIS},
            "color": {"field": "value", "type": "quantitative", "scale": {"scheme": "viridis"}, "title": value_title},
            "tooltip": [{"field": "feature_i"}, {"field": "feature_j"}, {"field": "value", "format": ".4g"}],
        },
    }
    return df, spec


def lines(
    df: pd.DataFrame, *, x: str, y: str, color: str | None, title: str, log_y: bool = False, x_title=None, y_title=None
) -> dict:
    """A line chart with points, optionally a log ``y`` scale; an integer ``x`` (a depth) gets integer ticks only."""
    integer = pd.api.types.is_integer_dtype(df[x])
    enc = {
        "x": {
            "field": x,
            "type": "quantitative" if pd.api.types.is_numeric_dtype(df[x]) else "nominal",
            "title": x_title or x,
            "sort": None,
            **({"axis": {"format": "d", "tickMinStep": 1}} if integer else {}),
        },
        "y": {"field": y, "type": "quantitative", "title": y_title or y, "scale": {"type": "log"} if log_y else {}},
        "tooltip": [{"field": c} for c in df.columns],
    }
    if color is not None:
        enc["color"] = {"field": color, "type": "nominal", "legend": LEGEND}
    return {"title": title, "mark": {"type": "line", "point": True}, "encoding": enc}

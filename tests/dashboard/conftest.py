"""AppTest helpers for the dashboard pages: read images, charts and texts off a finished run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
# The dashboard's persistent compilation cache, kept inside the checkout for tests (the browser
# test's server process reads what these in-process runs compiled).
os.environ.setdefault("EXPLAIN_JAX_CACHE", str(ROOT / "build" / "jax-cache"))
TIMEOUT = 90  # a page's first run compiles its JAX functions on a shared 2-core machine


def open_page(page: str | None = None) -> AppTest:
    """A fresh AppTest of app.py, opened on ``page`` (e.g. ``"dashboard/sensitivity.py"``) and run.

    Each page's ``url_path`` is its file's stem, so the page is found before the first run
    and the default page is never rendered (and compiled) on the way.
    """
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if page is not None:
        at.switch_page(page)
    return at.run()


def captions(at: AppTest) -> list[str]:
    return [i.caption for el in at.get("image") for i in el.proto.imgs]


def charts(at: AppTest) -> list[tuple[dict, pd.DataFrame]]:
    """``(vega-lite spec, data)`` of every built-in chart (st.bar_chart, st.line_chart, ...)."""
    out = []
    for el in at.get("vega_lite_chart"):
        spec = json.loads(el.proto.spec)
        frames = [pa.ipc.open_stream(d.data.data).read_pandas() for d in el.proto.datasets]
        if el.proto.data.data:
            frames.append(pa.ipc.open_stream(el.proto.data.data).read_pandas())
        out.append((spec, frames[0] if frames else pd.DataFrame()))
    return out


def texts(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown] + [c.value for c in at.caption]


def chart(at: AppTest, title_part: str) -> tuple[dict, pd.DataFrame]:
    """The one chart whose title contains ``title_part``."""
    found = [(spec, df) for spec, df in charts(at) if title_part in str(spec.get("title", ""))]
    assert len(found) == 1, [s.get("title") for s, _ in charts(at)]
    return found[0]


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.fixture(autouse=True)
def shipped_models_only():
    """Every test starts and ends on the shipped models: app.py sets the user's models process-wide."""
    from dashboard import config, state

    state.configure(config.Config())
    yield
    state.configure(config.Config())


@pytest.fixture(scope="session")
def ui() -> SimpleNamespace:
    return SimpleNamespace(
        open_page=open_page,
        captions=captions,
        charts=charts,
        chart=chart,
        texts=texts,
        no_errors=no_errors,
        TIMEOUT=TIMEOUT,
    )

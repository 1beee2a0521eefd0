"""Streamlit entry point. Page code lives in dashboard/, one module per page.

Run on the shipped models::

    streamlit run app.py

and on your own models beside them (or instead of them, ``--only``)::

    streamlit run app.py -- --model my_model.py:make --data images/ --model pkg.models:mlp --data rows.csv
    streamlit run app.py -- --only --model my_model.py:make --data images/

Each ``--data PATH`` belongs to the ``--model SPEC`` just before it. For deployments, where the command
line is fixed, the environment says the same::

    EXPLAIN_MODELS="my_model.py:make@images/;pkg.models:mlp@rows.csv" EXPLAIN_ONLY=1 streamlit run app.py

(``;`` between models, ``@`` before a model's data path; the command line's models come first.)

``SPEC`` is a shipped name, ``package.module:factory`` or ``path/to/file.py:factory`` (see
:mod:`explain.specs`); the factory returns an ``explain.Model`` or a bundle with ``.model`` (and optionally
``.dataset`` with a ``.test`` split and ``.class_names``). ``PATH`` is an image folder (class subfolders
give labels), an image, ``.npy``/``.npz`` (``x``, optional ``y``) or ``.csv``/``.parquet`` rows, read by
:func:`explain.data.load` (the first 1,000 rows or files); a spec's own test split wins over ``--data``.
Image models (``(H, W, 1|3)`` inputs, classification) appear on the saliency, adversarial, gradient-flow
and "Which map to trust" pages; tabular models (``(F,)`` inputs) on the sensitivity and gradient-flow pages. A
model that fails to load is one line on each page; the others keep working. Models come only from these arguments and this
environment: nothing a visitor uploads is ever imported.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import streamlit as st

from dashboard import common, config, state
from explain import runtime

log = logging.getLogger("dashboard")

PAGES = [
    st.Page(
        "dashboard/saliency.py",
        title="Saliency explorer",
        icon=":material/image_search:",
        url_path="saliency",
        default=True,
    ),
    st.Page("dashboard/sensitivity.py", title="Sensitivity", icon=":material/tune:", url_path="sensitivity"),
    st.Page("dashboard/adversarial.py", title="Adversarial lab", icon=":material/bug_report:", url_path="adversarial"),
    st.Page(
        "dashboard/gradflow.py",
        title="Chain rule and gradient flow",
        icon=":material/account_tree:",
        url_path="gradflow",
    ),
    st.Page("dashboard/trust.py", title="Which map to trust", icon=":material/verified:", url_path="trust"),
]


def script_args() -> list[str]:
    """The arguments after ``--``: ``streamlit run`` sets ``sys.argv`` to ``[this script, *args]``. Run in any
    other way (AppTest inside pytest), ``sys.argv`` is another program's and only the environment counts."""
    started_here = bool(sys.argv) and Path(sys.argv[0]).resolve() == Path(__file__).resolve()
    return sys.argv[1:] if started_here else []


runtime.configure()  # glibc malloc tunables and the persistent compilation cache
st.set_page_config(page_title="Gradient explainability", page_icon=":material/insights:", layout="wide")
try:
    state.configure(config.from_process(script_args(), os.environ))
except config.ConfigError as e:
    # The shipped models still work; the mistake is on every page until the server is restarted.
    state.configure(config.Config())
    st.error(common.redact(str(e)))
page = st.navigation(PAGES)
try:
    page.run()
except Exception as e:  # st.stop/st.rerun are BaseExceptions and pass through
    # The traceback goes to the server log only; the page gets a short message.
    log.exception("page %s failed", page.title)
    st.error(
        f"This page hit an unexpected error ({type(e).__name__}). The rest of the app keeps working; details are in the server log."
    )

"""Streamlit entry point: `streamlit run app.py`. Page code lives in dashboard/, one module per page."""

from __future__ import annotations

import logging

import streamlit as st

from dashboard import state

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
]

state.enable_compilation_cache()
st.set_page_config(page_title="Gradient explainability", page_icon=":material/insights:", layout="wide")
page = st.navigation(PAGES)
try:
    page.run()
except Exception as e:  # st.stop/st.rerun are BaseExceptions and pass through
    # The traceback goes to the server log only; the page gets a short message.
    log.exception("page %s failed", page.title)
    st.error(
        f"This page hit an unexpected error ({type(e).__name__}). The rest of the app keeps working; details are in the server log."
    )

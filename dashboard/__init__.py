"""Streamlit dashboard pages (one module per page) and their shared helpers."""

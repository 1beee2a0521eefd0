"""Page boundaries: a page never imports another page; saliency maps only through the registry."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboard"
PAGES = ("saliency", "sensitivity", "adversarial", "gradflow", "trust")


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, ``from a import b`` counted as both ``a`` and ``a.b``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


@pytest.mark.parametrize("page", PAGES)
def test_a_page_imports_no_other_page(page):
    others = {f"dashboard.{p}" for p in PAGES if p != page}
    assert not imported_modules(DASHBOARD / f"{page}.py") & others


def test_shared_modules_import_no_page():
    for path in DASHBOARD.glob("*.py"):
        if path.stem not in PAGES:
            assert not imported_modules(path) & {f"dashboard.{p}" for p in PAGES}, path.name


@pytest.mark.parametrize("page", PAGES)
def test_saliency_methods_are_called_through_the_registry(page):
    """No page calls a saliency method or a gradient wrapper itself: one ``registry.call`` per map."""
    imports = imported_modules(DASHBOARD / f"{page}.py")
    direct = {m for m in imports if m.startswith("explain.saliency.") and m != "explain.saliency.registry"}
    assert direct <= {"explain.saliency.cam", "explain.saliency.integrated"}, direct  # option vocabularies only
    source = (DASHBOARD / f"{page}.py").read_text()
    assert "input_gradients" not in source and ".fn(" not in source

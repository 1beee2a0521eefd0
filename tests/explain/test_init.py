"""The public surface: every name in __all__ exists and __init__ only re-exports."""

import ast
from pathlib import Path

import explain


def test_public_names_exist():
    missing = [n for n in explain.__all__ if not hasattr(explain, n)]
    assert missing == []
    assert sorted(explain.__all__) == list(explain.__all__)


def test_init_only_imports():
    tree = ast.parse(Path(explain.__file__).read_text())
    body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    assert all(isinstance(n, (ast.Import, ast.ImportFrom, ast.Assign)) for n in body)


def test_core_never_imports_models():
    root = Path(explain.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if "cli" in path.relative_to(root).parts or path.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path.name}: {n}" for n in names if n == "models" or n.startswith("models.")]
    assert offenders == []

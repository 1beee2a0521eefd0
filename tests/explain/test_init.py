"""The public surface: every name in __all__ exists and __init__ only re-exports."""

import ast
import subprocess
import sys
from pathlib import Path

import explain

ROOT = Path(explain.__file__).resolve().parents[1]


def test_public_names_exist():
    missing = [n for n in explain.__all__ if not hasattr(explain, n)]
    assert missing == []
    assert sorted(explain.__all__) == list(explain.__all__)


def test_init_only_maps_names_to_modules():
    """__init__ holds imports, the name -> module table and PEP 562's __getattr__/__dir__: nothing else."""
    tree = ast.parse(Path(explain.__file__).read_text())
    body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    assert all(isinstance(n, (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.FunctionDef)) for n in body)
    assert sorted(n.name for n in body if isinstance(n, ast.FunctionDef)) == ["__dir__", "__getattr__"]
    assert sorted(explain._LAZY) == sorted(explain.__all__)


def test_import_explain_and_specs_import_no_jax():
    """``import explain`` and ``explain.specs`` (``--help``, shipped names) stay light: no JAX, no Flax."""
    code = (
        "import sys, explain, explain.specs as s; names = s.shipped_names(); "
        "print(len(names), 'jax' in sys.modules, 'flax' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    n, jax_loaded, flax_loaded = out.stdout.split()
    assert int(n) >= 1 and (jax_loaded, flax_loaded) == ("False", "False"), out.stdout


def test_core_never_imports_models():
    """Not even the command line: ``--model`` names reach ``models`` through ``explain.specs`` (data, not imports)."""
    root = Path(explain.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
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


def test_library_never_touches_global_plotting_state():
    """No ``matplotlib.use`` (process-wide backend) and no pyplot (global figure registry) anywhere in explain/:
    figures are built with ``matplotlib.figure.Figure`` and saved to a buffer."""
    root = Path(explain.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        rel = path.relative_to(root).as_posix()
        if "matplotlib.use(" in text:
            offenders.append(f"{rel}: matplotlib.use(")
        if "plt." in text:
            offenders.append(f"{rel}: plt.")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [f"{node.module or ''}.{a.name}" for a in node.names] + [node.module or ""]
            else:
                continue
            offenders += [f"{rel}: import {n}" for n in names if n.split(".")[:2] == ["matplotlib", "pyplot"]]
    assert offenders == []


# Functions whose leading arguments are not (model, x): constructors of a Model.
_NOT_METHODS = {"as_model": ("obj",), "from_linen": ("module", "variables"), "from_nnx": ("module",)}


def test_every_public_function_is_keyword_only_after_x():
    import inspect

    bad = []
    for name in explain.__all__:
        obj = getattr(explain, name)
        if inspect.ismodule(obj) or inspect.isclass(obj):
            continue
        params = list(inspect.signature(obj).parameters.values())
        leading = _NOT_METHODS.get(name, ("model", "x"))
        positional = tuple(p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if positional != leading or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            bad.append(f"{name}{inspect.signature(obj)}")
    assert bad == []

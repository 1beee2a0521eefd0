"""``pip install .`` gives a package that works outside the repository.

The wheel is built offline (``--no-build-isolation`` with the pinned setuptools), installed into a
folder of its own, and the commands run from a temporary directory with that folder first on the path,
so nothing can come from the repository checkout: the shipped checkpoints must be package data and the
console script must point at a real entry point.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("pkg")
    source = tmp / "source"
    for folder in ("explain", "models"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.tmp"))
    for file in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / file, source / file)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # The build works on a copy so it never writes build/ or *.egg-info into the checkout.
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp / "dist"), str(source)],
        check=True,
        cwd=tmp,
        timeout=240,
    )
    (wheel,) = (tmp / "dist").glob("flax_explain-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "models/checkpoints/shapes_cnn.msgpack" in names and "models/checkpoints/shapes_cnn.json" in names
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
    site = tmp / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)], check=True, timeout=240
    )
    return site


def _run(site: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def test_installed_package_is_the_one_imported_outside_the_checkout(installed, tmp_path):
    out = _run(
        installed, tmp_path, sys.executable, "-c", "import explain, models; print(explain.__file__, models.__file__)"
    )
    assert out.returncode == 0, out.stderr
    assert all(str(installed) in p for p in out.stdout.split()), out.stdout


def test_console_script_and_module_run_a_shipped_model_from_a_temporary_folder(installed, tmp_path):
    script = installed / "bin" / "flax-explain"
    help_out = _run(installed, tmp_path, sys.executable, str(script), "--help")
    assert help_out.returncode == 0 and "saliency" in help_out.stdout, help_out.stderr
    assert help_out.stdout.startswith("usage: flax-explain "), help_out.stdout  # the script names itself
    out = tmp_path / "grid.png"
    run = _run(
        installed, tmp_path, sys.executable, "-m", "explain", "saliency",
        "--model", "shapes_cnn", "--n", "1", "--methods", "vanilla_gradient", "--out", str(out),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

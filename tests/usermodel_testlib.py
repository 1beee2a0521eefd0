"""The user's package of ``tests/user_package``, trained once per test session, outside the repository.

:func:`trained_package` copies ``usermodels`` into a folder beside pytest's temporary folders (never
under the repository) and trains it there with ``python -m usermodels.train``. Workers of one session
share the result: each trains into a private folder and renames it into place, so a reader sees
either nothing or a complete package.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(__file__).resolve().parent / "user_package" / "usermodels"
CNN, MLP = "usermodels.nets:cnn", "usermodels.nets:mlp"


def _source_digest() -> str:
    h = hashlib.sha256()
    for path in sorted(PACKAGE.glob("*.py")):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()[:12]


def env_for(folder: Path) -> dict[str, str]:
    """The environment of a process that imports the user's package (and this checkout's explain)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)])}


def trained_package(tmp_path_factory) -> Path:
    """The folder holding the trained ``usermodels`` package (put it on ``sys.path`` to use the specs)."""
    shared = tmp_path_factory.getbasetemp()
    shared = shared.parent if os.environ.get("PYTEST_XDIST_WORKER") else shared
    final = shared / f"usermodels-{_source_digest()}"
    if not (final / "usermodels" / "weights" / "mlp.msgpack").exists():
        work = tmp_path_factory.mktemp("usermodels-build")
        assert ROOT not in work.resolve().parents, "the user's package must live outside the repository"
        shutil.copytree(PACKAGE, work / "usermodels", ignore=shutil.ignore_patterns("__pycache__", "weights"))
        subprocess.run([sys.executable, "-m", "usermodels.train"], cwd=work, env=env_for(work), check=True, timeout=900)
        with contextlib.suppress(OSError):  # another worker finished first: use its copy
            os.rename(work, final)
    return final

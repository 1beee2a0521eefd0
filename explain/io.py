"""Atomic file output: a failed or interrupted job never leaves half a file behind."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Writes ``data`` to a temporary file beside ``path`` and renames it into place.

    The rename is atomic on POSIX, so readers see the old file or the new one,
    never a partial one. The temporary file is created with mode ``0o666`` and
    the kernel applies the process umask, so the file gets the usual
    ``0o666 & ~umask`` mode without reading or changing the umask (which is
    process-wide: a read-and-restore round trip races with other threads).
    On any failure the temporary file is removed and the old file, if any, is kept.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def params_sha256(params: Any) -> str:
    """sha256 of a parameter pytree: its structure (key paths, shapes, dtypes) and every value's bytes.

    Works for any pytree (linen variables, an ``nnx.State``, an exported artifact's params), so the
    same weights give the same hash however they were loaded; provenance for manifests and reports.
    """
    import jax
    import numpy as np

    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        value = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}:{value.dtype.str}:{value.shape};".encode())
        h.update(value.tobytes())
    return h.hexdigest()

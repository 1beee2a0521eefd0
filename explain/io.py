"""Atomic file output: a failed or interrupted job never leaves half a file behind."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
from collections.abc import Iterator
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


class FolderBusyError(ValueError):
    """Another run holds the output folder."""


@contextlib.contextmanager
def exclusive_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Holds an exclusive lock on the folder ``path`` (created when missing) for the ``with`` block.

    A POSIX ``flock`` on the folder itself: no lock file to clean up, and the kernel releases it when
    the holder exits, ``kill -9`` included, so a crashed run never blocks its own resume. Two runs
    writing one folder would interleave shards and manifests; the second one raises instead.

    A folder this call created is removed again when the block leaves it empty (a job that failed
    before its first write leaves nothing behind).

    Raises:
      FolderBusyError: another process (or another open of the folder in this one) holds it.
    """
    folder = Path(path)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusyError(
                f"{folder} is being written by another run; wait for it to finish or use another folder "
                "(runs are never mixed)"
            ) from None
        yield folder
    finally:
        if created and not any(folder.iterdir()):  # a job that failed before writing leaves no trace
            folder.rmdir()
        os.close(fd)  # closing the descriptor releases the lock

"""Where a batch run's inputs come from, read one shard at a time and never loaded whole.

* :class:`ArraySource`: an in-memory array or a ``np.memmap`` ``(N, *input_shape)``; a shard is a slice.
* :class:`FolderSource`: a folder of PNG/JPEG/WebP images (searched recursively, as :func:`explain.data.load`
  lists them); a shard decodes only its own files, in a thread pool (Pillow releases the GIL), each
  converted exactly as a dashboard upload (:func:`explain.images.load_file`). A file that cannot be
  used is recorded with its reason and the run goes on.
* any other path (``.npy``, ``.npz``, ``.csv``, ``.parquet``, one image) is read by
  :func:`explain.data.load`, which memory-maps ``.npy`` and uncompressed ``.npz`` inputs.

Rows are numbered globally: row ``i`` is the ``i``-th array row or the ``i``-th image file in sorted
order, whether or not it decodes, so a row's number (and so its random draws) never depends on the
shard it falls in. :func:`prefetch` reads the next shard in a background thread while the devices
work on the current one.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import mmap
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from jaxtyping import Float, Int

from explain import data, images
from explain.model import Model

_DECODE_THREADS = 8


@dataclasses.dataclass(frozen=True)
class Shard:
    """The usable rows of one shard.

    Attributes:
      x: ``(R, *input_shape)`` inputs, ``R <= stop - start`` (fewer when files were skipped).
      rows: ``(R,)`` int64 global row numbers of ``x``.
      skipped: ``(row, id, reason)`` of each row of the shard that could not be used.
    """

    x: Float[np.ndarray, " r *features"]
    rows: Int[np.ndarray, " r"]
    skipped: tuple[tuple[int, str, str], ...] = ()


class Source(Protocol):
    """Rows ``0 .. n-1`` readable shard by shard."""

    n: int
    dtype: np.dtype

    def id(self, row: int) -> str: ...

    def read(self, start: int, stop: int) -> Shard: ...

    def fingerprint(self) -> str: ...

    def listed_skips(self) -> tuple[tuple[str, str], ...]: ...


def _digest(data_: bytes) -> str:
    return hashlib.sha256(data_).hexdigest()


@dataclasses.dataclass(frozen=True, eq=False)
class ArraySource:
    """An array-like ``x (N, *input_shape)`` (a ``np.memmap`` is read one shard at a time).

    ``ids`` name the rows (default ``"row <i>"``); ``fingerprint_rows`` rows are hashed as a cheap guard
    against resuming on another dataset of the same shape (hashing all of ``x`` would read it twice).
    """

    x: Any
    ids: tuple[str, ...] | None = None
    fingerprint_rows: int = 64

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.x.dtype)

    def id(self, row: int) -> str:
        return self.ids[row] if self.ids is not None else f"row {row}"

    def read(self, start: int, stop: int) -> Shard:
        part = self.x[start:stop]
        if isinstance(part, np.memmap):
            part = _read_and_release(part)
        return Shard(np.asarray(part), np.arange(start, stop, dtype=np.int64))

    def fingerprint(self) -> str:
        return _digest(np.ascontiguousarray(np.asarray(self.x[: self.fingerprint_rows])).tobytes())

    def listed_skips(self) -> tuple[tuple[str, str], ...]:
        return ()


def _read_and_release(part: np.memmap) -> np.ndarray:
    """A copy of a slice of a read-only ``np.memmap``, its pages then dropped from this process.

    A slice of a memmap is a view: every page a run touches stays mapped and counts in its resident
    memory until the end, so a streamed 10,000-image file peaked at 1.9x the 1,000-image one
    (``benchmarks/batch_bench.py``). ``MADV_DONTNEED`` on the copied range gives the pages back
    (they are the file's, read again from it if touched). Only for mode ``"r"``: a copy-on-write
    mapping would lose its private changes.
    """
    copy = np.array(part)
    mapping = getattr(part, "_mmap", None)
    if part.mode != "r" or mapping is None or not hasattr(mapping, "madvise") or part.nbytes == 0:
        return copy
    base = np.frombuffer(mapping, np.uint8).ctypes.data
    first = part.ctypes.data - base
    start = first - first % mmap.PAGESIZE
    with contextlib.suppress(OSError, ValueError):  # advice only: a kernel that refuses it keeps the pages
        mapping.madvise(mmap.MADV_DONTNEED, start, first + part.nbytes - start)
    return copy


@dataclasses.dataclass(frozen=True, eq=False)
class FolderSource:
    """Image files under ``root`` (relative ``/``-separated paths, sorted), decoded per shard for ``model``.

    ``others`` lists the files that are not images, with the reason, as :func:`explain.data.load` does.
    """

    root: Path
    files: tuple[str, ...]
    model: Model
    others: tuple[tuple[str, str], ...] = ()
    max_bytes: int = images.MAX_UPLOAD_BYTES
    max_pixels: int = images.MAX_PIXELS

    @property
    def n(self) -> int:
        return len(self.files)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    def id(self, row: int) -> str:
        return self.files[row]

    def _decode(self, row: int) -> np.ndarray | str:
        """One file as ``(H, W, C)`` float32, or the reason it cannot be used."""
        try:
            return images.load_file(
                self.root / self.files[row],
                self.model.input_spec.shape,
                value_range=self.model.input_spec.value_range,
                max_bytes=self.max_bytes,
                max_pixels=self.max_pixels,
            ).x
        except images.UploadError as e:
            return str(e)

    def read(self, start: int, stop: int) -> Shard:
        with concurrent.futures.ThreadPoolExecutor(_DECODE_THREADS, thread_name_prefix="explain-batch") as pool:
            decoded = list(pool.map(self._decode, range(start, stop)))
        ok = [i for i, d in enumerate(decoded) if not isinstance(d, str)]
        skipped = tuple((start + i, self.files[start + i], d) for i, d in enumerate(decoded) if isinstance(d, str))
        shape = self.model.input_spec.shape
        x = np.stack([decoded[i] for i in ok]) if ok else np.zeros((0, *shape), np.float32)
        return Shard(x.astype(np.float32, copy=False), np.asarray(ok, np.int64) + start, skipped)

    def fingerprint(self) -> str:
        # names and sizes: a changed file set refuses to resume; reading every file to hash it would cost a pass
        sizes = [f"{f}\0{(self.root / f).stat().st_size}" for f in self.files]
        return _digest("\n".join(sizes).encode())

    def listed_skips(self) -> tuple[tuple[str, str], ...]:
        return self.others


def folder(root: str | os.PathLike, model: Model) -> FolderSource:
    """The images under ``root``; raises :class:`explain.data.DataError` when there are none."""
    root = Path(root)
    files = data.walk(root)  # the one listing rule of explain.data: recursive, sorted, hidden left out
    pics = tuple(f for f in files if Path(f).suffix.lower() in data.IMAGE_SUFFIXES)
    others = tuple(
        (f, f"not an image: suffix {Path(f).suffix or '(none)'!r}, expected one of {', '.join(data.IMAGE_SUFFIXES)}")
        for f in files
        if Path(f).suffix.lower() not in data.IMAGE_SUFFIXES
    )
    shape = model.input_spec.shape
    if len(shape) != 3 or shape[2] not in (1, 3):
        raise data.DataError(
            f"data {str(root)!r}: a folder of images needs an image model (samples of shape (H, W, 1) or "
            f"(H, W, 3)); model {model.name!r} takes {model.input_spec.describe()}"
        )
    if not pics:
        held = f"; it holds {len(files)} other file(s), e.g. {files[:3]}" if files else " (it is empty)"
        raise data.DataError(
            f"data {str(root)!r}: no {', '.join(data.IMAGE_SUFFIXES)} images in the folder or its subfolders{held}"
        )
    return FolderSource(root, pics, model, others)


def open_source(x: Any, model: Model) -> Source:
    """``x`` as a :class:`Source`: a path (a folder streamed per shard, any other file through
    :func:`explain.data.load`), an existing source, or an array-like."""
    if isinstance(x, (str, os.PathLike)):
        if Path(x).is_dir():
            return folder(x, model)
        loaded = data.load(x, model)
        return ArraySource(loaded.x, loaded.ids)
    if isinstance(x, (ArraySource, FolderSource)):
        return x
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = np.asarray(x)
    return ArraySource(x)


def prefetch(source: Source, bounds: Iterable[tuple[int, int, int]]) -> Iterator[tuple[int, Shard]]:
    """``(index, shard)`` for each ``(index, start, stop)``, the next shard read in a background thread
    while the caller computes on the current one (one shard ahead: memory holds at most two)."""
    todo = list(bounds)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="explain-prefetch") as pool:
        ahead = pool.submit(source.read, *todo[0][1:]) if todo else None
        for k, (i, _, _) in enumerate(todo):
            shard = ahead.result()
            ahead = pool.submit(source.read, *todo[k + 1][1:]) if k + 1 < len(todo) else None
            yield i, shard

"""Your data for your model: one path (``--data PATH``, the dashboard) read into ``(N, *input_spec.shape)`` inputs.

:func:`load` reads, by the form of ``path``:

* a folder of images, searched recursively (``.png``, ``.jpg``/``.jpeg``, ``.webp`` by suffix, paths
  sorted, hidden files and folders ignored): each file is decoded and converted exactly as a dashboard
  upload (:func:`explain.images.load_file`: byte and pixel limits checked before decoding, EXIF
  orientation, mode, centre crop, resize, value range). Files that fail are listed in
  :attr:`Data.skipped` with the reason, and so are files of other kinds. Labels follow the ImageFolder
  layout (``root/<class>/.../image.png``): when every image sits under a first-level subfolder and every
  subfolder name is one of the model's class names (or an integer ``< K``), the labels are those
  classes, else ``None``. Decoding runs in a thread pool (Pillow releases the GIL);
* one image file, ``N = 1``;
* ``.npy``, memory-mapped (``np.load(mmap_mode="r", allow_pickle=False)``), shape ``(N, *shape)``;
* ``.npz`` with the inputs under ``x`` (or ``X``, ``images``, ``inputs``), optional labels under ``y``
  (or ``labels``) and optional ``class_names``. ``np.load`` never memory-maps an ``.npz`` member, so an
  uncompressed member (``np.savez``) is memory-mapped here from its offset in the zip file; a
  compressed one (``np.savez_compressed``) is read into memory. Every member's header (shape, dtype)
  is checked before its data is read;
* ``.csv`` / ``.parquet`` for tabular models: columns matched to ``input_spec.feature_names`` by
  header, in any order (other columns are ignored, and not parsed); a model without feature names
  takes the file's columns in order when there are exactly ``F`` besides ``label_column``.
  ``label_column`` gives the labels.

Arrays are float32: a float32 file is used as stored (a ``np.memmap``: nothing is read until it is
used); other float dtypes are converted in blocks of ~64 MB, so the peak is the float32 copy plus one
block. Integer images are never rescaled silently: an integer array for an image model is refused
unless the model's value range is ``(0, 255)``. Labels are ``int64`` class indices for a
classification model (class names matched to indices) and ``float32`` values for regression.

Every check that can fail runs before the heavy work (decoding, parsing, converting), and every
failure is a :class:`DataError` with a one-line message naming the path, what was expected and what
was found, e.g. ``data 'x.npy': expected shape (N, 32, 32, 3), got (100, 28, 28)``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import os
import struct
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Float, Int

from explain import checks, chunking, images
from explain.model import Model, as_model

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
ARRAY_SUFFIXES = (".npy", ".npz")
FORMS = "a folder of PNG/JPEG/WebP images, one such image, .npy, .npz, .csv or .parquet"
X_KEYS = ("x", "X", "images", "inputs")
Y_KEYS = ("y", "Y", "labels")
NAMES_KEY = "class_names"
# Files decoded per round of the thread pool, per thread: bounds the decoded images in flight.
_FILES_PER_THREAD = 32
_ZIP_LOCAL_HEADER = struct.Struct("<4s5H3I2H")  # signature .. extra-field length, 30 bytes


class DataError(ValueError):
    """Data that cannot be used with the model; the message is one line naming the path and the problem."""


@dataclasses.dataclass(frozen=True, eq=False)
class Data:
    """Inputs (and labels when the data carries them) read from one path, ready for any method.

    Attributes:
      x: ``(N, *input_spec.shape)`` float32; a ``np.memmap`` for a float32 ``.npy`` or uncompressed ``.npz``.
      labels: ``(N,)`` int64 class indices (classification) or float32 targets (regression;
        ``(N, K)`` from an array file), or ``None``.
      ids: one per row: the image's path relative to the folder (``/``-separated), the file name of
        one image, ``"<file>[i]"`` for an array file, ``"row <i>"`` (0-based data row) for a table.
      class_names: the names of the label indices (the model's, or the ``.npz``'s ``class_names``), or ``None``.
      skipped: ``(path, reason)`` of each file of a folder that could not be used.
      source: the path as given.
    """

    x: np.ndarray
    labels: np.ndarray | None
    ids: tuple[str, ...]
    class_names: tuple[str, ...] | None
    skipped: tuple[tuple[str, str], ...]
    source: str

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclasses.dataclass(frozen=True)
class _Ctx:
    """What every reader needs: where the data comes from and what the model expects."""

    source: str
    model: Model
    class_names: tuple[str, ...] | None
    limit: int | None

    def error(self, message: str) -> DataError:
        return DataError(f"data {self.source!r}: {message}")

    @property
    def shape(self) -> tuple[int, ...]:
        return self.model.input_spec.shape

    @property
    def expected(self) -> str:
        return f"({', '.join(['N', *map(str, self.shape)])})"


def load(
    path: str | os.PathLike,
    model: Model | Any,
    *,
    label_column: str | None = None,
    limit: int | None = None,
    max_bytes: int = images.MAX_UPLOAD_BYTES,
    max_pixels: int = images.MAX_PIXELS,
) -> Data:
    """Reads ``path`` (see the module doc for the forms) into inputs for ``model``.

    Args:
      path: a folder of images, an image, or a ``.npy`` / ``.npz`` / ``.csv`` / ``.parquet`` file.
      model: an :class:`~explain.model.Model` or anything with ``.model`` (its ``.class_names`` is
        used when the model has none).
      label_column: the labels' column of a table (``.csv`` / ``.parquet`` only).
      limit: read the first ``limit`` rows (files of a folder, in sorted order; a file that fails is
        replaced by the next one).
      max_bytes: refuse image files larger than this (checked before reading them).
      max_pixels: refuse images whose header declares more pixels (checked before decoding).

    Returns:
      :class:`Data` with ``x`` of shape ``(N, *model.input_spec.shape)``, ``1 <= N <= limit``.

    Raises:
      DataError: a path that is not there or not a known form, data that does not fit the model.
      TypeError: ``model`` is not a model.
    """
    source = os.fspath(path)
    m = as_model(model)
    limit = checks.check_optional_int("limit", limit)
    names = m.class_names or _names(getattr(model, "class_names", None))
    ctx = _Ctx(source, m, names, limit)
    p = Path(source)
    if not p.exists():
        raise ctx.error(f"no such file or folder; expected {FORMS}")
    suffix = p.suffix.lower()
    if label_column is not None and (p.is_dir() or suffix not in TABLE_SUFFIXES):
        raise ctx.error(
            f"label_column={label_column!r} applies to a .csv or .parquet table; a folder of images takes its "
            "labels from its subfolders, an .npz from its 'y' array"
        )
    if p.is_dir():
        return _folder(ctx, p, max_bytes=max_bytes, max_pixels=max_pixels)
    if suffix in IMAGE_SUFFIXES:
        return _image(ctx, p, max_bytes=max_bytes, max_pixels=max_pixels)
    if suffix == ".npy":
        return _npy(ctx, p)
    if suffix == ".npz":
        return _npz(ctx, p)
    if suffix in TABLE_SUFFIXES:
        return load_table(p, m, label_column=label_column, limit=limit, kind="csv" if suffix == ".csv" else "parquet")
    raise ctx.error(f"unknown suffix {p.suffix!r}; expected {FORMS}")


# --- images ------------------------------------------------------------------------------------------------------


def _need_image_model(ctx: _Ctx, what: str) -> tuple[int, int, int]:
    shape = ctx.shape
    if len(shape) != 3 or shape[2] not in (1, 3):
        raise ctx.error(
            f"{what} needs an image model (samples of shape (H, W, 1) or (H, W, 3)); model {ctx.model.name!r} "
            f"takes {ctx.model.input_spec.describe()}"
        )
    return shape  # type: ignore[return-value]


def _convert(path: Path, shape: tuple[int, int, int], ctx: _Ctx, max_bytes: int, max_pixels: int):
    """One image file as ``(H, W, C)`` float32, or the reason it cannot be used (a string)."""
    try:
        return images.load_file(
            path, shape, value_range=ctx.model.input_spec.value_range, max_bytes=max_bytes, max_pixels=max_pixels
        ).x
    except images.UploadError as e:
        return str(e)


def _image(ctx: _Ctx, path: Path, *, max_bytes: int, max_pixels: int) -> Data:
    shape = _need_image_model(ctx, "an image file")
    out = _convert(path, shape, ctx, max_bytes, max_pixels)
    if isinstance(out, str):
        raise ctx.error(out)
    return Data(out[None], None, (path.name,), None, (), ctx.source)


def walk(root: Path) -> list[str]:
    """Every file under ``root`` as a sorted ``/``-separated relative path; hidden files and folders left out.

    ``os.walk`` does not follow symlinked folders, so a link loop cannot recurse forever.
    """
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = Path(folder).relative_to(root)
        found += [(rel / f).as_posix() for f in files if not f.startswith(".")]
    return sorted(found)


def folder_labels(
    rel_paths: Sequence[str], model: Model, class_names: Sequence[str] | None
) -> tuple[np.ndarray | None, tuple[str, ...] | None]:
    """``(labels (N,) int64, class names)`` from the ImageFolder layout ``<class>/.../file``, else ``(None, None)``.

    A layout counts when the model classifies, every file sits under a first-level subfolder and
    every such subfolder is named after one of the model's classes, or is an integer ``< K``.
    """
    if model.output_kind != "classification" or not rel_paths:
        return None, None
    parts = [p.split("/") for p in rel_paths]
    if any(len(q) < 2 for q in parts):
        return None, None
    first = [q[0] for q in parts]
    if class_names and set(first) <= set(class_names):
        index = {n: i for i, n in enumerate(class_names)}
        return np.asarray([index[f] for f in first], np.int64), tuple(class_names)
    k = len(class_names) if class_names else model.num_outputs
    if all(f.isdecimal() and int(f) < k for f in first):
        return np.asarray([int(f) for f in first], np.int64), tuple(class_names) if class_names else None
    return None, None


def _folder(ctx: _Ctx, root: Path, *, max_bytes: int, max_pixels: int) -> Data:
    shape = _need_image_model(ctx, "a folder of images")
    files = walk(root)
    pics = [f for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES]
    skipped = [
        (f, f"not an image: suffix {Path(f).suffix or '(none)'!r}, expected one of {', '.join(IMAGE_SUFFIXES)}")
        for f in files
        if Path(f).suffix.lower() not in IMAGE_SUFFIXES
    ]
    if not pics:
        others = f"; it holds {len(files)} other file(s), e.g. {files[:3]}" if files else " (it is empty)"
        raise ctx.error(f"no {', '.join(IMAGE_SUFFIXES)} images in the folder or its subfolders{others}")
    # The layout is read from every image found, so `limit` never changes whether there are labels.
    all_labels, names = folder_labels(pics, ctx.model, ctx.class_names)
    want = len(pics) if ctx.limit is None else min(ctx.limit, len(pics))
    x = np.empty((want, *shape), np.float32)
    kept: list[int] = []
    pos = 0
    workers = min(8, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="explain-data") as pool:
        while len(kept) < want and pos < len(pics):
            batch = range(pos, min(len(pics), pos + min(_FILES_PER_THREAD * workers, want - len(kept))))
            pos = batch.stop
            results = pool.map(lambda i: _convert(root / pics[i], shape, ctx, max_bytes, max_pixels), batch)
            for i, r in zip(batch, results):
                if isinstance(r, str):
                    skipped.append((pics[i], r))
                else:
                    x[len(kept)] = r
                    kept.append(i)
    if not kept:
        failed = [f"{f}: {why}" for f, why in skipped if Path(f).suffix.lower() in IMAGE_SUFFIXES]
        raise ctx.error(f"none of the {pos} image(s) could be used; {'; '.join(failed[:2])}")
    labels = None if all_labels is None else all_labels[kept]
    skipped.sort()
    return Data(x[: len(kept)], labels, tuple(pics[i] for i in kept), names, tuple(skipped), ctx.source)


# --- arrays ------------------------------------------------------------------------------------------------------


def _names(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(str(v) for v in value)


def _check_header(ctx: _Ctx, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Shape ``(N, *input_spec.shape)``, ``N >= 1``, and a dtype that converts to float32 without rescaling."""
    want = ctx.shape
    if len(shape) != len(want) + 1 or tuple(shape[1:]) != want:
        hint = ""
        if tuple(shape) == want:
            hint = " (one sample without its batch axis: save x[None])"
        elif len(shape) == len(want) + 1 and sorted(shape[1:]) == sorted(want):
            hint = f" (the same axes in another order: move them to {ctx.expected}, e.g. with np.moveaxis)"
        raise ctx.error(f"expected shape {ctx.expected}, got {tuple(shape)}{hint}")
    if shape[0] == 0:
        raise ctx.error(f"expected shape {ctx.expected} with N >= 1, got no samples")
    if dtype.kind == "f":
        return
    spec = ctx.model.input_spec
    if dtype.kind in "iu":
        if spec.is_tabular or spec.value_range == (0.0, 255.0):
            return
        lo, hi = spec.value_range or (0.0, 1.0)
        raise ctx.error(
            f"integer dtype {dtype}, but model {ctx.model.name!r} takes floats in [{lo:g}, {hi:g}]; integer images "
            f"are not rescaled silently: save x.astype('float32') / 255 (8-bit images into [0, 1]) or convert "
            "to the model's range yourself"
        )
    raise ctx.error(f"expected a floating (or integer) dtype, got {dtype}")


def _float32(x: np.ndarray) -> np.ndarray:
    """``x`` as float32: as is when it already is (a memmap stays one), else converted a block of rows at a time."""
    if x.dtype == np.float32:
        return x
    out = np.empty(x.shape, np.float32)
    step = max(1, chunking.MEMORY_BUDGET // max(1, x[:1].nbytes))  # float32 conversion, block by block
    for a, b in chunking.chunk_bounds(x.shape[0], step):
        out[a:b] = x[a:b]
    return out


def labels_for(
    values: Any, model: Model, class_names: Sequence[str] | None, n: int, *, where: str
) -> Int[np.ndarray, " n"] | Float[np.ndarray, " n *k"]:
    """``(N,)`` int64 class indices (classification) or float32 values (regression) from raw labels.

    Class names are matched to indices when the labels are strings; numbers must be integers in
    ``[0, K)``. Regression labels are ``(N,)`` or ``(N, K)``, finite.

    Raises:
      ValueError: naming ``where`` (e.g. ``"label column 'y'"``), what was expected and what was found.
    """
    arr = np.asarray(values)
    if arr.dtype == object:  # pandas text columns
        if not all(isinstance(v, str) for v in arr.ravel()):
            raise ValueError(f"{where}: expected numbers or class names, got mixed values")
        arr = arr.astype(str)
    if arr.shape[:1] != (n,):
        raise ValueError(f"{where}: expected {n} labels (one per sample), got shape {arr.shape}")
    if model.output_kind == "classification":
        if arr.ndim != 1:
            raise ValueError(f"{where}: expected class labels of shape ({n},), got {arr.shape}")
        if arr.dtype.kind in "US":
            if not class_names:
                raise ValueError(
                    f"{where}: class names given as text, but model {model.name!r} has no class names; "
                    "use class indices 0..K-1"
                )
            text = arr.astype(str).tolist()
            index = {c: i for i, c in enumerate(class_names)}
            if unknown := sorted(set(text) - set(index)):
                raise ValueError(
                    f"{where}: {unknown[:5]} are not class names of model {model.name!r}; expected {list(class_names)}"
                )
            return np.asarray([index[t] for t in text], np.int64)
        if arr.dtype.kind == "f" and (bad := np.flatnonzero(~np.isfinite(arr))).size:
            raise ValueError(f"{where}: missing labels in {bad.size} row(s), first at row {bad[0]}")
        if arr.dtype.kind not in "iuf" or (arr.dtype.kind == "f" and (arr != np.round(arr)).any()):
            raise ValueError(f"{where}: expected integer class indices or class names, got dtype {arr.dtype}")
        k = len(class_names) if class_names else model.num_outputs
        ints = arr.astype(np.int64)
        if (bad := np.flatnonzero((ints < 0) | (ints >= k))).size:
            raise ValueError(f"{where}: expected class indices in 0..{k - 1}, got {ints[bad[0]]} at row {bad[0]}")
        return ints
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{where}: expected numeric regression targets, got dtype {arr.dtype}")
    if arr.ndim not in (1, 2) or (arr.ndim == 2 and arr.shape[1] != model.num_outputs):
        raise ValueError(f"{where}: expected targets of shape ({n},) or ({n}, {model.num_outputs}), got {arr.shape}")
    out = arr.astype(np.float32)
    if (bad := np.flatnonzero(~np.isfinite(out.reshape(n, -1)).all(axis=1))).size:
        raise ValueError(f"{where}: missing or non-finite targets in {bad.size} row(s), first at row {bad[0]}")
    return out


def _finish(ctx: _Ctx, x: np.ndarray, labels: Any, names: tuple[str, ...] | None, stem: str) -> Data:
    """Labels checked on every row, then ``limit`` applied and ``x`` converted to float32."""
    n = x.shape[0]
    if labels is not None:
        try:
            labels = labels_for(labels, ctx.model, names, n, where="labels")
        except ValueError as e:
            raise ctx.error(str(e)) from None
    k = n if ctx.limit is None else min(ctx.limit, n)
    x, labels = x[:k], None if labels is None else labels[:k]
    names = names if labels is not None and ctx.model.output_kind == "classification" else None
    return Data(_float32(x), labels, tuple(f"{stem}[{i}]" for i in range(k)), names, (), ctx.source)


def _npy(ctx: _Ctx, path: Path) -> Data:
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ctx.error(f"not a NumPy .npy file that can be read without pickle ({e})") from None
    if not isinstance(x, np.ndarray):
        raise ctx.error("is an .npz archive, not an .npy array: name it .npz")
    _check_header(ctx, x.shape, x.dtype)
    return _finish(ctx, x, None, None, path.name)


def _member_header(zf: zipfile.ZipFile, member: str) -> tuple[tuple[int, ...], bool, np.dtype, int] | None:
    """``(shape, fortran_order, dtype, header bytes)`` of an ``.npy`` member, read without its data; None if unknown."""
    with zf.open(member) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            return None
        return tuple(shape), bool(fortran), dtype, f.tell()


def _member_memmap(path: Path, zf: zipfile.ZipFile, member: str, header: tuple) -> np.memmap | None:
    """A stored (uncompressed, unencrypted) ``.npy`` member memory-mapped at its offset in the zip file."""
    info = zf.getinfo(member)
    shape, fortran, dtype, header_len = header
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1 or dtype.hasobject:
        return None
    if header_len + math.prod(shape) * dtype.itemsize > info.file_size:
        return None  # truncated: np.load reports it
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(_ZIP_LOCAL_HEADER.size)
    if len(local) != _ZIP_LOCAL_HEADER.size:
        return None
    fields = _ZIP_LOCAL_HEADER.unpack(local)
    if fields[0] != b"PK\x03\x04":
        return None
    # The local header's own name and extra lengths, which may differ from the central directory's.
    offset = info.header_offset + _ZIP_LOCAL_HEADER.size + fields[-2] + fields[-1] + header_len
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def _npz(ctx: _Ctx, path: Path) -> Data:
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise ctx.error(f"not a NumPy .npz archive ({e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ctx.error("is an .npy array, not an .npz archive: name it .npy")
    with archive:
        keys = archive.files
        x_key = next((k for k in X_KEYS if k in keys), None)
        if x_key is None:
            raise ctx.error(f"no inputs array: expected one named {' or '.join(map(repr, X_KEYS))}, found {keys}")
        y_key = next((k for k in Y_KEYS if k in keys), None)
        member = f"{x_key}.npy"
        try:
            header = _member_header(archive.zip, member)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise ctx.error(f"cannot read array {x_key!r} ({e})") from None
        if header is not None:  # shape and dtype checked before a byte of data is read
            _check_header(ctx, header[0], header[2])
        try:
            x = None if header is None else _member_memmap(path, archive.zip, member, header)
            if x is None:
                x = archive[x_key]
            labels = None if y_key is None else archive[y_key]
            names = _names(archive[NAMES_KEY]) if NAMES_KEY in keys else None
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise ctx.error(f"cannot read the .npz archive without pickle ({e})") from None
        if header is None:
            _check_header(ctx, x.shape, x.dtype)
    names = _merge_names(ctx, names)
    return _finish(ctx, x, labels, names, path.name)


def _merge_names(ctx: _Ctx, names: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The model's class names, or the data's when the model has none; refused when both are given and differ."""
    if names is None or ctx.class_names is None:
        names = names or ctx.class_names
    elif names != ctx.class_names:
        raise ctx.error(f"its class_names {list(names)} differ from model's {list(ctx.class_names)}")
    if names is not None and ctx.model.output_kind == "classification" and len(names) != ctx.model.num_outputs:
        raise ctx.error(f"expected {ctx.model.num_outputs} class names (one per output), got {len(names)}")
    return names


# --- tables ------------------------------------------------------------------------------------------------------


def _columns(path: Path, kind: str) -> list[str]:
    """The table's column names, read without its rows."""
    if kind == "csv":
        import pandas as pd

        return [str(c) for c in pd.read_csv(path, nrows=0).columns]
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


def _read(path: Path, kind: str, columns: list[str], limit: int | None):
    import pandas as pd

    if kind == "csv":
        return pd.read_csv(path, usecols=columns, nrows=limit)
    frame = pd.read_parquet(path, columns=columns)
    return frame if limit is None else frame.iloc[:limit]


def load_table(
    path: str | os.PathLike,
    model: Model | Any,
    *,
    label_column: str | None = None,
    limit: int | None = None,
    kind: str = "csv",
) -> Data:
    """:func:`load` for a table whatever its suffix: ``kind`` ``"csv"`` (one header row) or ``"parquet"``.

    Columns are matched to ``model.input_spec.feature_names`` by header, in any order; other columns
    are ignored (and not parsed). A model without feature names takes the columns in file order when
    there are exactly ``F`` besides ``label_column``. Feature columns must be numeric and finite.
    """
    source = os.fspath(path)
    m = as_model(model)
    checks.check_choice("kind", kind, ("csv", "parquet"))
    limit = checks.check_optional_int("limit", limit)
    ctx = _Ctx(source, m, m.class_names or _names(getattr(model, "class_names", None)), limit)
    spec = m.input_spec
    if not spec.is_tabular:
        raise ctx.error(
            f"a table needs a tabular model (samples of shape (F,)); model {m.name!r} takes {spec.describe()}"
        )
    path = Path(source)
    try:
        columns = _columns(path, kind)
    except ImportError as e:
        raise ctx.error(f"reading {kind} needs {e.name or 'pyarrow'} (pip install pyarrow)") from None
    except (ValueError, OSError) as e:
        raise ctx.error(f"cannot read the {kind} header ({e})") from None
    if label_column is not None and label_column not in columns:
        raise ctx.error(f"label column {label_column!r} not in the file; its columns are {columns}")
    f = spec.shape[0]
    if spec.feature_names:
        features = list(spec.feature_names)
        if missing := [c for c in features if c not in columns]:
            raise ctx.error(
                f"missing {missing}: expected the model's {f} feature columns {features} (matched by header, any "
                f"order, other columns ignored); the file has {columns}"
            )
    else:
        features = [c for c in columns if c != label_column]
        if len(features) != f:
            raise ctx.error(
                f"model {m.name!r} declares no feature names, so expected exactly {f} feature columns (besides the "
                f"label column), taken in file order; got {len(features)}: {features}"
            )
    wanted = list(dict.fromkeys([*features, *([label_column] if label_column is not None else [])]))
    try:
        frame = _read(path, kind, wanted, limit)
    except (ValueError, OSError) as e:
        raise ctx.error(f"cannot read the {kind} rows ({e})") from None
    if len(frame) == 0:
        raise ctx.error("no rows: expected at least one row below the header")
    if text := [c for c in features if frame[c].dtype.kind not in "iuf"]:
        raise ctx.error(f"feature column(s) {text} are not numeric (dtype {frame[text[0]].dtype}); expected numbers")
    x = frame[features].to_numpy(dtype=np.float32)
    if (bad := np.flatnonzero(~np.isfinite(x).all(axis=1))).size:
        raise ctx.error(
            f"missing or non-finite values in {bad.size} row(s), first at row {bad[0]} (rows {bad[:5].tolist()}"
            f"{'...' if bad.size > 5 else ''}); drop or impute them"
        )
    labels = None
    if label_column is not None:
        try:
            labels = labels_for(
                frame[label_column].to_numpy(), m, ctx.class_names, len(frame), where=f"label column {label_column!r}"
            )
        except ValueError as e:
            raise ctx.error(str(e)) from None
    names = ctx.class_names if labels is not None and m.output_kind == "classification" else None
    return Data(x, labels, tuple(f"row {i}" for i in range(len(frame))), names, (), source)

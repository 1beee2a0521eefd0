"""The local engine: a whole dataset attributed shard by shard over every local device, resumable.

``attribute_dataset`` runs one saliency method over a source of ``N`` rows (an array, a ``np.memmap``,
or a path: :mod:`explain.batch.sources`) shard by shard: ``batch_size`` rows per shard, each shard's
result written to ``out_dir/shard-{i:05d}.npz`` as soon as it is computed, so a dataset larger than
memory streams through and a crashed run resumes where it stopped. ``batch_size`` means rows per
shard file and nothing else; how much is computed per compiled call is ``memory_budget`` (per device).

How a shard is computed. When the method has a pure core that takes the chosen options (every
method but adaptive IG, and IG-family methods with a non-zero baseline), the engine calls that core
itself under ``jax.jit``, with each call's rows split over the devices (:mod:`explain.batch.devices`),
and random cores draw row ``i`` of the dataset from ``fold_in(fold_in(key, s), i)`` with ``i`` the
GLOBAL row number (the cores' ``row_ids``): the result of a row depends on the key alone, never on
``batch_size``, the device count or where a run resumed, and equals one direct call of the public
method on the whole array with that key. Otherwise, and for a deterministic method whose one sample
already needs more rows than ``memory_budget`` allows (IG with thousands of steps: a core call holds all
of a sample's draws, the public method chunks them), the shard is one
:func:`explain.saliency.registry.call` on one device (a key is then folded with the shard index, so
such a random baseline depends on ``batch_size``).

Every shard, the ``manifest.json`` and the ``index.parquet`` (:mod:`explain.batch.index`) are written
atomically (:func:`explain.io.atomic_write_bytes`). The manifest records the settings, a fingerprint
of them, provenance (the model spec, versions, engine, devices) and the shards completed so far, each
with its file's sha256. A rerun with the same settings skips the listed shards whose file is intact
(a missing or corrupt one is recomputed); a rerun with other settings in the same ``out_dir`` raises
naming the changed settings instead of mixing two runs. How shards are stored is a setting
(``values_dtype="float16"``, ``compress=True``); ``memory_budget``, ``devices``, ``engine`` and
``show_progress`` change how, not what, is computed, so they are not, and neither are ``heatmaps``
(:mod:`explain.batch.heatmaps`: a rerun with them draws the missing maps from the shards on disk).

Engines. ``engine="local"`` computes here, reading the next shard in a background thread
(:func:`explain.batch.sources.prefetch`); ``engine="ray"`` hands the same per-shard code to a Ray Data
stage of stateful workers (:mod:`explain.batch.ray_engine`) while this process keeps the lock, the
manifest and the index, so shard ``i`` holds the same bytes whichever engine wrote it and a run moves
between them. :attr:`BatchRun.seconds` says where a call's time went (waiting for data, computing,
writing).

Example:
  >>> run = attribute_dataset(m, x_memmap, method="integrated_gradients", out_dir="ig", options={"steps": 32})
  >>> values = run.load()  # (N, *input_shape), one direct call on the whole array
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib.metadata
import inspect
import io
import json
import os
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import jax
import numpy as np

from explain import chunking, specs, targets
from explain.arrays import ArrayLike
from explain.batch import heatmaps as heatmaps_lib
from explain.batch import index as index_lib
from explain.batch.devices import Devices
from explain.batch.sources import ArraySource, Shard, Source, open_source, prefetch
from explain.checks import check_int, check_key, input_dtype
from explain.gradients import forward, prepare
from explain.io import atomic_write_bytes, atomic_write_text, exclusive_folder, params_sha256
from explain.model import Model, as_model
from explain.saliency import registry
from explain.saliency.attribution import Attribution

MANIFEST = "manifest.json"
FORMAT = 3  # 3: per-example keys from global rows, per-row stats and row numbers in shards, index.parquet
_FIELDS = ("values", "convergence_delta", "steps")
# The masked adaptive-IG core pads every round to max_steps; its public path recomputes only what is unconverged.
_PUBLIC_ONLY = frozenset({"integrated_gradients_adaptive"})


def shard_path(out_dir: str | os.PathLike, index: int) -> Path:
    """``out_dir/shard-{index:05d}.npz``."""
    return Path(out_dir) / f"shard-{index:05d}.npz"


@dataclasses.dataclass(frozen=True)
class BatchRun:
    """Where a run's shards are and what this call did.

    Attributes:
      out_dir: the folder holding the shards, ``manifest.json`` and ``index.parquet``.
      n_shards: ``ceil(N / batch_size)``.
      completed: indices of the shards computed by this call.
      skipped: indices of the shards found intact from an earlier run and reused.
      seconds: where THIS call's wall time went: ``"total"``; ``"wait"``, blocked on the source for the
        next shard's rows (reading and decoding the prefetch did not hide); ``"compute"``, the method and
        the forward pass; ``"write"``, encoding and writing shards, heatmaps, the manifest and the index.
        With ``engine="ray"`` the last three are worker-seconds summed over the workers (each worker reads
        its own shard, so its ``"wait"`` is the whole read), and ``"stream"`` is the driver's time blocked
        on the result stream; :attr:`wait_share` is comparable across engines.
    """

    out_dir: Path
    n_shards: int
    completed: tuple[int, ...]
    skipped: tuple[int, ...]
    seconds: Mapping[str, float] = dataclasses.field(default_factory=dict)

    @property
    def wait_share(self) -> float:
        """``wait / (wait + compute + write)``: the share of working time spent waiting for data (0 if none)."""
        busy = sum(self.seconds.get(k, 0.0) for k in ("wait", "compute", "write"))
        return self.seconds.get("wait", 0.0) / busy if busy > 0 else 0.0

    def _field(self, name: str) -> np.ndarray | None:
        parts = []
        for i in range(self.n_shards):
            with np.load(shard_path(self.out_dir, i)) as shard:
                if shard["row"].shape[0]:  # a shard whose every file was skipped holds no rows
                    parts.append(shard[name] if name in shard.files else None)
        if all(p is None for p in parts):
            return None
        if any(p is None for p in parts):
            raise ValueError(f"{name!r} is in some shards of {self.out_dir} but not all")
        return np.concatenate(parts)

    def load(self) -> np.ndarray:
        """The attribution values of all usable rows in order, ``(N, ...)`` (``(N, K, ...)`` with ``target="all"``)."""
        return self._field("values")

    def rows(self) -> np.ndarray:
        """The global row number of each row of :meth:`load` ``(N,)`` (files skipped in a folder are absent)."""
        return self._field("row")

    def convergence_delta(self) -> np.ndarray | None:
        """Path methods' completeness error per sample ``(N,)``, else ``None``."""
        return self._field("convergence_delta")

    def steps(self) -> np.ndarray | None:
        """Path methods' integration steps per sample ``(N,)``, else ``None``."""
        return self._field("steps")

    def index(self) -> Any:
        """The run's ``index.parquet`` as a ``pyarrow.Table`` (:mod:`explain.batch.index`)."""
        return index_lib.read(self.out_dir)


# ----------------------------------------------------------------------------- settings


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _array_record(value: Any) -> dict[str, Any]:
    if isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
        value = jax.random.key_data(value)
    arr = np.ascontiguousarray(np.asarray(value))
    return {"sha256": _digest(arr.tobytes()), "shape": list(arr.shape), "dtype": str(arr.dtype)}


def _callable_name(fn: Any) -> str:
    fn = getattr(fn, "func", fn)  # functools.partial
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"


def _canonical(value: Any, name: str) -> Any:
    """A JSON-able record of a setting; arrays by content hash, callables by qualified name."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_canonical(v, name) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _canonical(v, f"{name}[{k!r}]") for k, v in sorted(value.items())}
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return _array_record(value)
    if isinstance(value, targets.Target):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        fields["fn"] = None if value.fn is None else _callable_name(value.fn)
        return {"Target": _canonical(fields, name)}
    if callable(value):
        return {"callable": _callable_name(value)}
    raise TypeError(f"expected {name} to be a number, string, array, callable or a list of those, got {type(value)}")


def _fingerprint(settings: Mapping[str, Any]) -> str:
    return _digest(json.dumps(settings, sort_keys=True).encode())


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for dist in ("flax-explain", "jax", "jaxlib", "flax", "numpy"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[dist] = importlib.metadata.version(dist)
    return found


# ----------------------------------------------------------------------------- method


def _method_name(method: Any) -> str:
    """The registry name of ``method``: a name, or a method function the registry lists (by identity)."""
    if isinstance(method, str):
        registry.get(method)  # raises on an unknown name, listing the known ones
        return method
    for name, info in registry.METHODS.items():
        if info.fn is method:
            return name
    what = getattr(method, "__qualname__", type(method).__name__)
    raise TypeError(
        f"expected method to be a method name or a method function of explain.saliency.registry, got {what}; "
        f"expected one of {sorted(registry.METHODS)}"
    )


def _check_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` checked against the method's signature before any work (unknown names listed with the valid ones)."""
    reserved = sorted(registry.RESERVED & set(options))
    if reserved:
        raise ValueError(f"pass {reserved} as arguments of attribute_dataset, not in options")
    registry.get(name).check_options(options)
    return dict(options)


@dataclasses.dataclass(frozen=True, eq=False)
class Method:
    """One method with its options, ready to compute shards.

    ``compiled`` is ``jit(core)`` when the pure core serves (module doc), else ``None`` (the public method
    through :func:`explain.saliency.registry.call`).
    """

    name: str
    info: registry.MethodInfo
    options: dict[str, Any]
    key: jax.Array | None
    references: np.ndarray | None
    memory_budget: int | None
    devices: Devices
    compiled: Callable[..., tuple[Attribution, jax.Array]] | None

    def core_rows(self, model: Model, *, all_outputs: bool, dtype: Any) -> int | None:
        """Samples per compiled core call within ``memory_budget``, or ``None`` where the public method serves:
        no core takes the options, or one sample of a deterministic method already needs more rows than the
        budget allows (a core call holds all of a sample's draws, IG's steps; the public method chunks them)."""
        if self.compiled is None:
            return None
        per_row = self.info.rows_per_sample(model, self.info.check_options(self.options))
        factor = model.num_outputs if all_outputs else 1
        budget_rows = chunking.rows_per_chunk(model, memory_budget=self.memory_budget, factor=factor, dtype=dtype)
        if per_row > budget_rows and not self.info.needs_key:
            return None
        return max(1, budget_rows // per_row)


def _core(model: Model, name: str, info: registry.MethodInfo, options: Mapping[str, Any]) -> Callable | None:
    """``jit((params, x, target, row_ids, key, references) -> (Attribution, outputs))``, or ``None`` when the
    core cannot take ``options`` (a non-zero baseline) or the public path is better (adaptive IG)."""
    if info.core is None or name in _PUBLIC_ONLY:
        return None
    try:
        static = info.core_options(model, info.check_options(options))
    except ValueError:
        return None  # the public method says the same, or handles the option itself
    takes = inspect.signature(info.core).parameters
    fn = model.tap if info.uses_tap else model.apply

    def call(params, x, target, row_ids, key, references):
        kw = dict(static)
        kw.update({k: v for k, v in (("row_ids", row_ids), ("key", key), ("references", references)) if k in takes})
        # the outputs for the index in the same call, where XLA can share the core's forward pass
        return info.core(fn, params, x, target, **kw), model.apply(params, x)

    return jax.jit(call)


def _bound_class(target: Any, rows: int) -> np.ndarray | None:
    """The bound target's class per row ``(R,)`` when it explains one class per row, else ``None``."""
    aux = getattr(target, "aux", None)
    if aux is None or target.fn is None:
        return None
    aux = np.asarray(aux) if hasattr(aux, "shape") else None
    if aux is None or aux.shape != (rows,) or not np.issubdtype(aux.dtype, np.integer):
        return None
    return aux


def attribute_shard(
    method: Method, model: Model, x: np.ndarray, row_ids: np.ndarray, target: Any, labels: Any, shard: int
) -> tuple[Attribution, np.ndarray, np.ndarray | None]:
    """``(attribution, outputs (R, K), target class (R,) or None)`` of one padded shard ``x (R, ...)``.

    ``row_ids (R,)`` are the rows' global numbers (their random streams); the one call per shard.
    """
    p = prepare(
        model, x, target=target, labels=labels, allow_all=method.info.supports_all, memory_budget=method.memory_budget
    )
    cls = _bound_class(p.target, p.n)
    per_call = method.core_rows(model, all_outputs=p.target.all_outputs, dtype=p.x.dtype)
    if per_call is None:
        att = registry.call(
            method.name, model, p.x, target=target, labels=labels,
            key=None if method.key is None else jax.random.fold_in(method.key, shard),
            references=method.references, memory_budget=method.memory_budget, **method.options,
        )  # fmt: skip
        outputs = forward(model, p.x, memory_budget=method.memory_budget)
        return att, np.asarray(outputs), cls
    chunk = method.devices.chunk(per_call, p.n)
    params, key, refs = method.devices.replicate((model.params, method.key, method.references))
    run = functools.partial(_run_chunk, method.compiled, params, key, refs)
    att, outputs = method.devices.map(run, {"x": p.x, "target": p.target, "row_ids": row_ids}, chunk)
    return att, outputs, cls


def _run_chunk(compiled: Callable, params: Any, key: Any, refs: Any, part: Mapping[str, Any]) -> Any:
    return compiled(params, part["x"], part["target"], part["row_ids"], key, refs)


# ----------------------------------------------------------------------------- per-sample inputs


def _rows(name: str, value: Any, n: int) -> Any:
    """``value`` as an ``(N, ...)`` array when it is per-sample, else unchanged (a scalar, a string, a callable)."""
    if isinstance(value, (list, tuple)) or (hasattr(value, "shape") and not callable(value)):
        arr = np.asarray(value)
        if arr.ndim == 0:
            return value
        if arr.shape[0] != n:
            raise ValueError(f"expected {name} with one entry per sample, leading dimension {n}, got shape {arr.shape}")
        return arr
    return value


def _slicer(name: str, value: Any, n: int) -> Callable[[np.ndarray, int], Any]:
    """``(global rows, padded size) -> value for that shard``, per-sample arrays taken and padded."""
    if isinstance(value, targets.Target):
        classes, labels = _rows(f"{name}.classes", value.classes, n), _rows(f"{name}.labels", value.labels, n)
        take_c, take_l = _slicer(name, classes, n), _slicer(name, labels, n)
        return lambda idx, size: dataclasses.replace(value, classes=take_c(idx, size), labels=take_l(idx, size))
    value = _rows(name, value, n)
    if isinstance(value, np.ndarray):
        return lambda idx, size: _pad(value[idx], size)
    return lambda idx, size: value


def _pad(part: np.ndarray, rows: int) -> np.ndarray:
    """Repeats row 0 up to ``rows`` rows, so the last shard has the shape every compiled call was built for."""
    if part.shape[0] == rows:
        return part
    return np.concatenate([part, np.repeat(part[:1], rows - part.shape[0], axis=0)])


def _check_x(model: Model, source: Source, batch: int) -> None:
    """Shape and dtype of a whole array source (metadata only, nothing copied), full validation of its first batch."""
    if not isinstance(source, ArraySource):
        return  # a folder is decoded into the model's own shape and range
    x, spec = source.x, model.input_spec
    if len(x.shape) != len(spec.shape) + 1 or tuple(x.shape[1:]) != spec.shape:
        raise ValueError(f"expected x of shape {spec.describe()}, got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"expected x of shape {spec.describe()} with N >= 1, got an empty array")
    spec.validate(np.asarray(x[:batch]), name="x (first batch)")


# ----------------------------------------------------------------------------- manifest and shards

ValuesDtype = Literal["float32", "float16"]
VALUES_DTYPES: tuple[str, ...] = ("float32", "float16")


@dataclasses.dataclass(frozen=True)
class Output:
    """How each shard is stored.

    ``values_dtype`` is the dtype of the stored ``values`` only (``"float16"`` halves the files; the index
    statistics are computed from the float32 values before the cast); ``compress`` writes
    ``np.savez_compressed``; ``heatmaps`` also writes one PNG per row (:mod:`explain.batch.heatmaps`),
    drawn signed when the method's maps are signed.
    """

    values_dtype: ValuesDtype = "float32"
    compress: bool = False
    heatmaps: bool = False
    signed: bool = False


def _npz_bytes(arrays: Mapping[str, np.ndarray], compress: bool = False) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, **arrays)
    return buf.getvalue()


def _stored(arrays: Mapping[str, np.ndarray], values_dtype: str) -> dict[str, np.ndarray]:
    """``arrays`` as a shard file holds them: ``values`` cast to ``values_dtype``, the rest unchanged."""
    if "values" not in arrays:
        return dict(arrays)
    return {**arrays, "values": np.asarray(arrays["values"]).astype(values_dtype, copy=False)}


def value_shape_of(arrays: Mapping[str, np.ndarray]) -> list[int] | None:
    """The per-row shape of a shard's values, ``None`` for a shard whose every file was skipped."""
    return list(arrays["values"].shape[1:]) if "values" in arrays else None


def write_shard(out_dir: Path, i: int, shard: Shard, arrays: Mapping[str, np.ndarray], output: Output) -> dict:
    """Writes shard ``i`` (and its heatmaps) atomically; its manifest entry, to be listed only afterwards."""
    stored = _stored(arrays, output.values_dtype)
    data = _npz_bytes(stored, output.compress)
    path = atomic_write_bytes(shard_path(out_dir, i), data)
    if output.heatmaps and "values" in stored:  # before the manifest lists the shard: a crash redoes both
        heatmaps_lib.render(out_dir, stored["values"], stored["row"], signed=output.signed)
    return {
        "index": i, "file": path.name, "rows": int(shard.rows.shape[0]), "sha256": _digest(data),
        "skipped": [[row, why] for row, _, why in shard.skipped],
    }  # fmt: skip


@dataclasses.dataclass
class Ledger:
    """The manifest as a run goes: the shards listed so far, rewritten atomically after each one."""

    out_dir: Path
    header: dict[str, Any]
    value_shape: list[int] | None
    done: dict[int, dict]

    def _write(self) -> None:
        _write_manifest(self.out_dir, self.header, self.value_shape, self.done)

    def check(self, i: int, shape: list[int] | None) -> None:
        """Raises when shard ``i``'s values do not have the shape of the earlier shards'."""
        if shape is not None and self.value_shape is not None and shape != list(self.value_shape):
            raise ValueError(f"shard {i} has values of shape {shape} per sample, earlier shards {self.value_shape}")

    def open(self, shape: list[int] | None) -> None:
        """Writes the manifest before the first shard file, so no shard is ever on disk without one."""
        if shape is not None and self.value_shape is None:
            self.value_shape = shape
            self._write()
        elif not (self.out_dir / MANIFEST).exists():
            self._write()

    def add(self, entry: dict, shape: list[int] | None) -> None:
        """Lists a written shard."""
        self.check(entry["index"], shape)
        if shape is not None and self.value_shape is None:
            self.value_shape = shape
        self.done[entry["index"]] = entry
        self._write()


def _write_manifest(out_dir: Path, header: dict[str, Any], value_shape: Any, done: dict[int, dict]) -> None:
    record = {**header, "value_shape": value_shape, "shards": [done[i] for i in sorted(done)]}
    atomic_write_text(out_dir / MANIFEST, json.dumps(record, indent=1, sort_keys=True))


def _read_manifest(out_dir: Path, settings: dict[str, Any], fingerprint: str) -> dict[str, Any] | None:
    """The earlier run's manifest, or ``None``; raises when it belongs to other settings."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"expected out_dir to be a folder, got the file {out_dir}")
    path = out_dir / MANIFEST
    if not path.exists():
        if out_dir.is_dir() and any(out_dir.glob("shard-*.npz")):
            raise ValueError(f"{out_dir} holds shards but no {MANIFEST}; use an empty folder (runs are never mixed)")
        return None
    try:
        old = json.loads(path.read_text())
        old_fp, old_settings = old["fingerprint"], old["settings"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"unreadable {path} ({e}); use another out_dir or remove it") from e
    if old_fp != fingerprint:
        changed = sorted(k for k in set(settings) | set(old_settings) if settings.get(k) != old_settings.get(k))
        raise ValueError(
            f"{out_dir} holds a run with different settings (changed: {changed}); "
            "use another out_dir or remove it (runs are never mixed)"
        )
    return old


def _intact(out_dir: Path, entry: Any, value_shape: Any) -> bool:
    """Whether a listed shard's file is there, unchanged (sha256), and of the expected shape."""
    try:
        path = out_dir / entry["file"]
        if _digest(path.read_bytes()) != entry["sha256"]:
            return False
        with np.load(path) as shard:
            rows = shard["row"].shape[0]
            return rows == entry["rows"] and (rows == 0 or shard["values"].shape == (rows, *value_shape))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _shard_arrays(att: Attribution, outputs: np.ndarray, cls: Any, rows: np.ndarray, classification: bool) -> dict:
    """What a shard file holds for its ``R = len(rows)`` real rows (padding trimmed)."""
    r = rows.shape[0]
    arrays = {f: np.asarray(getattr(att, f))[:r] for f in _FIELDS if getattr(att, f) is not None}
    stats = index_lib.stats(
        arrays["values"], np.asarray(outputs)[:r], None if cls is None else cls[:r], classification=classification
    )
    return {**arrays, **stats, "row": rows}


def _empty_arrays() -> dict[str, np.ndarray]:
    """A shard whose every file was skipped: no rows."""
    return {"row": np.zeros((0,), np.int64)}


def _write_index(out_dir: Path, source: Source, done: Mapping[int, dict]) -> None:
    def shards():
        for i in sorted(done):
            with np.load(out_dir / done[i]["file"]) as f:
                yield i, {k: f[k] for k in f.files if k != "values"}

    skipped = [(None, None, name, why) for name, why in source.listed_skips()]
    skipped += [(i, row, source.id(row), why) for i in sorted(done) for row, why in done[i].get("skipped", [])]
    index_lib.write(out_dir, index_lib.table(shards(), source.id, skipped))


# ----------------------------------------------------------------------------- timing


class Clock:
    """Seconds per stage, summed: ``with clock("compute"): ...``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {"wait": 0.0, "compute": 0.0, "write": 0.0}

    @contextlib.contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start

    def waited(self, items: Iterable[Any], stage: str = "wait") -> Iterator[Any]:
        """``items``, the time blocked on each ``next`` counted under ``stage``."""
        it = iter(items)
        while True:
            with self(stage):
                item = next(it, _END)
            if item is _END:
                return
            yield item


_END = object()


# ----------------------------------------------------------------------------- public


def build_method(
    model: Model, name: str, options: Mapping[str, Any], key: Any, references: Any, memory_budget: int | None,
    devices: int | None,
) -> Method:  # fmt: skip
    """The :class:`Method` of checked arguments on this process's first ``devices`` local devices."""
    info = registry.get(name)
    compiled = _core(model, name, info, options)
    return Method(name, info, dict(options), key, references, memory_budget, Devices.local(devices), compiled)


def attribute_dataset(
    model: Model | Any,
    x: Any,
    *,
    method: str | Callable[..., Attribution],
    out_dir: str | os.PathLike,
    batch_size: int = 64,
    target: Any = None,
    labels: Any = None,
    key: jax.Array | None = None,
    references: ArrayLike | None = None,
    options: Mapping[str, Any] | None = None,
    memory_budget: int | None = None,
    devices: int | None = None,
    show_progress: bool = False,
    spec: str | None = None,
    values_dtype: ValuesDtype = "float32",
    compress: bool = False,
    heatmaps: bool = False,
    engine: Literal["local", "ray"] = "local",
    address: str | None = None,
    workers: int | None = None,
) -> BatchRun:
    """Attributes every sample of ``x`` shard by shard, writing one file per shard (module doc).

    Args:
      model: a :class:`~explain.model.Model` (contract in :mod:`explain.model`), a bundle, or a model
        spec string (:func:`explain.specs.resolve`), recorded in the manifest.
      x: ``(N, *input_shape)`` floating array-like (a ``np.memmap`` is read one shard at a time), or a
        path (:mod:`explain.batch.sources`: a folder of images decoded per shard, ``.npy``, ``.npz``,
        ``.csv``, ``.parquet``).
      method: a method name of :data:`explain.saliency.registry.METHODS` (e.g. ``"integrated_gradients"``),
        or that function itself.
      out_dir: folder for ``shard-{i:05d}.npz``, ``manifest.json`` and ``index.parquet``; created if missing.
      batch_size: rows per shard file (default 64) and nothing else: it sets how often results reach the
        disk and where a crashed run resumes. The last shard is padded to it (so each shape compiles
        once) and trimmed on write.
      target, labels: as the method takes them (:mod:`explain.targets`); per-sample arrays (leading
        dimension ``N``, also inside a :class:`~explain.targets.Target`) are taken per shard.
      key: ``jax.random.key``, required when the method is random; row ``i`` draws from it by its global
        number ``i`` (module doc).
      references: the reference set of methods that draw baselines from one (Expected Gradients,
        GradientSHAP), required for them: the default of a direct call, the batch itself, would make
        results depend on ``batch_size``. Ignored by the other methods.
      options: the method's own keyword options, e.g. ``{"steps": 64}``; validated before any work.
      memory_budget: bytes per compiled call on each device (default :data:`explain.chunking.MEMORY_BUDGET`).
      devices: how many of ``jax.devices()`` share each compiled call (default all; with ``engine="ray"``,
        each worker's own devices); not a setting.
      show_progress: a tqdm bar over examples, with rate and ETA.
      spec: the model's spec string when ``model`` is already resolved: provenance, and what each Ray
        worker resolves.
      values_dtype: ``"float32"`` (default) or ``"float16"``, the dtype the shards store ``values`` in
        (statistics in the index are computed before the cast); a setting.
      compress: write shards with ``np.savez_compressed`` (default ``False``); a setting.
      heatmaps: also write ``out_dir/heatmaps/{row:08d}.png`` per usable row (image models; not a
        setting: a rerun with it renders the missing PNGs from the shards on disk).
      engine: ``"local"`` (default: this process, every local device) or ``"ray"`` (a Ray Data stage of
        stateful workers, :mod:`explain.batch.ray_engine`; needs ``pip install flax-explain[ray]`` and a
        model given by spec string, and writes the same shards). Not a setting.
      address: with ``engine="ray"``, the cluster to join (``"host:port"``, or ``"auto"``); default: the
        Ray instance this process already runs, else a new local one.
      workers: with ``engine="ray"``, how many workers (default: one per GPU of the cluster, else per node).

    Returns:
      :class:`BatchRun`; ``.load()`` gives the values ``(N, ...)``, ``.index()`` the index table,
      ``.seconds`` where this call's time went.

    Raises:
      ValueError / TypeError: before any work or compilation, for a bad model, ``x``, ``batch_size``,
      ``memory_budget``, ``devices``, ``values_dtype``, ``engine``, method name or option, a missing key or
      reference set, per-sample arrays of the wrong length, an ``out_dir`` holding a run with other
      settings, or ``engine="ray"`` without a spec string or with an ``address`` that does not answer.
      explain.data.DataError: a path that cannot be read (an empty folder, a table missing columns).
      ImportError: ``engine="ray"`` without Ray installed.
    """
    start = time.perf_counter()
    if engine not in ("local", "ray"):
        raise ValueError(f"expected engine to be 'local' or 'ray', got {engine!r}")
    if values_dtype not in VALUES_DTYPES:
        raise ValueError(f"expected values_dtype to be one of {list(VALUES_DTYPES)}, got {values_dtype!r}")
    if isinstance(model, str):
        spec, model = model, specs.resolve(model)
    if engine == "ray":
        from explain.batch import ray_engine  # Ray is an optional extra: imported only when asked for

        ray_engine.check(spec, x, address, workers)
    model = as_model(model)
    batch_size = check_int("batch_size", batch_size)
    chunking.check_budget(memory_budget)
    name = _method_name(method)
    info = registry.get(name)
    options = _check_options(name, dict(options or {}))
    options_record = _canonical(options, "options")
    info.check_model(model)
    if heatmaps:
        heatmaps_lib.check(model.input_spec.shape, target)
    uses_key = info.accepts_key and (info.needs_key or key is not None)
    key = check_key(key, what=repr(name)) if uses_key else None
    if info.needs_references:
        if references is None:
            raise ValueError(
                f"{name!r} draws baselines from a reference set; pass references=array (the default of a "
                "direct call, the batch itself, would make results depend on batch_size)"
            )
        references = model.input_spec.validate(references, name="references", check_range=False)
        references = np.asarray(references)
    else:
        references = None
    # The Ray driver never computes: its devices are not checked or used (each worker checks its own).
    run_method = build_method(model, name, options, key, references, memory_budget, devices if engine == "local" else 1)
    source = open_source(x, model)
    _check_x(model, source, batch_size)
    n = source.n
    rows = min(batch_size, n)
    take_target, take_labels = _slicer("target", target, n), _slicer("labels", labels, n)
    output = Output(values_dtype, bool(compress), bool(heatmaps), bool(info.signed))
    settings = {
        "method": name,
        "options": options_record,
        "batch_size": batch_size,
        "n": n,
        "input_shape": list(model.input_spec.shape),
        "dtype": str(source.dtype),
        "model": model.name,
        "params_sha256": params_sha256(model.params),
        "source_sha256": source.fingerprint(),
        "target": _canonical(target, "target"),
        "labels": _canonical(labels, "labels"),
        "key": _canonical(key, "key") if uses_key else None,
        "references": None if references is None else _array_record(references),
        "values_dtype": values_dtype,
        "compress": bool(compress),
    }
    fingerprint = _fingerprint(settings)
    out_dir = Path(out_dir)
    bounds = list(chunking.chunk_bounds(n, rows))
    # Provenance, not settings: the same weights reached by name or object, on any devices, resume alike.
    mesh = run_method.devices
    all_outputs = isinstance(target, str) and target == targets.ALL
    core = run_method.core_rows(model, all_outputs=all_outputs, dtype=input_dtype(source.dtype))
    where = {
        "name": "local",
        "path": "public" if core is None else "core",
        "devices": mesh.count,
        "device_kind": mesh.kind,
    }
    header = {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "settings": settings,
        "n_shards": len(bounds),
        "spec": spec,
        "source": os.fspath(x) if isinstance(x, (str, os.PathLike)) else None,
        "engine": where,
        "versions": _versions(),
    }

    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"expected out_dir to be a folder, got the file {out_dir}")
    clock = Clock()
    with exclusive_folder(out_dir):  # a second run on this folder raises instead of interleaving shards
        old = _read_manifest(out_dir, settings, fingerprint)
        value_shape = None if old is None else old.get("value_shape")
        done: dict[int, dict] = {}
        if old is not None and value_shape is not None:
            for entry in old.get("shards", []):
                i = entry.get("index") if isinstance(entry, dict) else None
                if isinstance(i, int) and 0 <= i < len(bounds) and _intact(out_dir, entry, value_shape):
                    done[i] = entry
        skipped = tuple(sorted(done))
        if heatmaps:
            with clock("write"):  # maps of shards computed earlier without them (heatmaps are not a setting)
                for i in skipped:
                    if done[i]["rows"]:
                        heatmaps_lib.complete(out_dir, out_dir / done[i]["file"], signed=output.signed)
        todo = [(i, a, b) for i, (a, b) in enumerate(bounds) if i not in done]
        ledger = Ledger(out_dir, header, value_shape, done)
        classification = model.output_kind == "classification"
        with chunking.progress(sum(b - a for _, a, b in todo), enabled=show_progress, desc="examples") as bar:
            bar.unit = "ex"
            if engine == "local":
                completed = _run_local(
                    run_method, model, source, todo, rows, take_target, take_labels, classification, output,
                    ledger, clock, bar,
                )  # fmt: skip
            else:
                job = ray_engine.Job(
                    spec=spec, method=name, options=options, key=key, references=references,
                    memory_budget=memory_budget, devices=devices, target=target, labels=labels, n=n, rows=rows,
                    classification=classification, out_dir=str(out_dir.resolve()), output=output,
                )  # fmt: skip
                completed = ray_engine.run(job, x, todo, ledger, clock, bar, address=address, workers=workers)
        with clock("write"):
            _write_index(out_dir, source, done)
        seconds = {**clock.seconds, "total": time.perf_counter() - start}
        return BatchRun(out_dir, len(bounds), tuple(completed), skipped, seconds)


def _run_local(
    method: Method, model: Model, source: Source, todo: list[tuple[int, int, int]], rows: int,
    take_target: Callable, take_labels: Callable, classification: bool, output: Output, ledger: Ledger,
    clock: Clock, bar: Any,
) -> list[int]:  # fmt: skip
    """The local engine's loop: the next shard read ahead in a thread, each computed here and listed."""
    completed = []
    for i, shard in clock.waited(prefetch(source, todo)):
        with clock("compute"):
            arrays = _compute(method, model, shard, rows, take_target, take_labels, i, classification)
        with clock("write"):
            shape = value_shape_of(arrays)
            ledger.check(i, shape)
            ledger.open(shape)  # before the first shard: no orphan shards
            ledger.add(write_shard(ledger.out_dir, i, shard, arrays, output), shape)
        completed.append(i)
        bar.update(int(shard.rows.shape[0]) + len(shard.skipped))
    return completed


def _compute(
    method: Method, model: Model, shard: Shard, rows: int, take_target: Callable, take_labels: Callable, i: int,
    classification: bool,
) -> dict[str, np.ndarray]:  # fmt: skip
    """One shard's arrays: its usable rows padded to ``rows``, attributed, trimmed (float32 values)."""
    if shard.rows.shape[0] == 0:
        return _empty_arrays()
    xb, ids = _pad(shard.x, rows), _pad(shard.rows, rows)
    att, outputs, cls = attribute_shard(
        method, model, xb, ids, take_target(shard.rows, rows), take_labels(shard.rows, rows), i
    )
    return _shard_arrays(att, outputs, cls, shard.rows, classification)

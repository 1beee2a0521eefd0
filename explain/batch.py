"""Streaming batch attribution over a whole dataset: one shard file per ``batch_size`` rows, resumable.

``attribute_dataset`` runs one saliency method over ``x (N, *input_shape)``
shard by shard: ``batch_size`` rows per shard, each shard's result written to
``out_dir/shard-{i:05d}.npz`` as soon as it is computed, so a dataset larger
than memory (a ``np.memmap``) streams through and a crashed run resumes where
it stopped. ``batch_size`` means rows per shard file and nothing else (the one
meaning of ``batch_size`` in ``explain``); how much is computed per compiled
call inside a shard is the method's own ``memory_budget``, as in a direct call.
Each shard is one :func:`explain.saliency.registry.call`, the call the command
line and the dashboard make; options are checked against the method's
signature (:meth:`~explain.saliency.registry.MethodInfo.check_options`) before
any work.

Shards are independent because samples do not interact (the model contract
in :mod:`explain.model`), so per-sample results do not depend on
``batch_size`` for deterministic methods. Random methods draw shard ``i`` with
``jax.random.fold_in(key, i)``: the result depends on the key and the batch
size, never on where a run resumed.

Every shard and the ``manifest.json`` are written atomically
(:func:`explain.io.atomic_write_bytes`); the manifest records the settings, a
fingerprint of them, and the shards completed so far. A crash therefore leaves
only whole shards and a manifest listing them. A rerun with the same settings
skips the listed shards whose file is intact; a rerun with other settings in
the same ``out_dir`` raises instead of mixing two runs (``memory_budget`` and
``show_progress`` are not settings: they change how, not what, is computed).

Example:
  >>> run = attribute_dataset(m, x_memmap, method="integrated_gradients", out_dir="ig", options={"steps": 32})
  >>> values = run.load()  # (N, *input_shape), same as one direct call on the whole array
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from explain import chunking, specs, targets
from explain.arrays import ArrayLike, Batch
from explain.checks import check_int, check_key
from explain.io import atomic_write_bytes, atomic_write_text, params_sha256
from explain.model import Model, as_model
from explain.saliency import registry
from explain.saliency.attribution import Attribution

MANIFEST = "manifest.json"
FORMAT = 2  # 2: method names are function names, references are a setting of their own
_FIELDS = ("values", "convergence_delta", "steps")


def shard_path(out_dir: str | os.PathLike, index: int) -> Path:
    """``out_dir/shard-{index:05d}.npz``."""
    return Path(out_dir) / f"shard-{index:05d}.npz"


@dataclasses.dataclass(frozen=True)
class BatchRun:
    """Where a run's shards are and what this call did.

    Attributes:
      out_dir: the folder holding the shards and ``manifest.json``.
      n_shards: ``ceil(N / batch_size)``.
      completed: indices of the shards computed by this call.
      skipped: indices of the shards found intact from an earlier run and reused.
    """

    out_dir: Path
    n_shards: int
    completed: tuple[int, ...]
    skipped: tuple[int, ...]

    def _field(self, name: str) -> np.ndarray | None:
        parts = []
        for i in range(self.n_shards):
            with np.load(shard_path(self.out_dir, i)) as shard:
                parts.append(shard[name] if name in shard.files else None)
        if all(p is None for p in parts):
            return None
        if any(p is None for p in parts):
            raise ValueError(f"{name!r} is in some shards of {self.out_dir} but not all")
        return np.concatenate(parts)

    def load(self) -> np.ndarray:
        """The attribution values of all shards in order, ``(N, ...)`` (``(N, K, ...)`` with ``target="all"``)."""
        return self._field("values")

    def convergence_delta(self) -> np.ndarray | None:
        """Path methods' completeness error per sample ``(N,)``, else ``None``."""
        return self._field("convergence_delta")

    def steps(self) -> np.ndarray | None:
        """Path methods' integration steps per sample ``(N,)``, else ``None``."""
        return self._field("steps")


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


def _slicer(name: str, value: Any, n: int) -> Callable[[int, int, int], Any]:
    """``(start, stop, rows) -> value for that batch``, per-sample arrays sliced and padded to ``rows``."""
    if isinstance(value, targets.Target):
        classes, labels = _rows(f"{name}.classes", value.classes, n), _rows(f"{name}.labels", value.labels, n)
        take_c, take_l = _slicer(name, classes, n), _slicer(name, labels, n)
        return lambda a, b, rows: dataclasses.replace(value, classes=take_c(a, b, rows), labels=take_l(a, b, rows))
    value = _rows(name, value, n)
    if isinstance(value, np.ndarray):
        return lambda a, b, rows: _pad(value[a:b], rows)
    return lambda a, b, rows: value


def _pad(part: np.ndarray, rows: int) -> np.ndarray:
    """Repeats row 0 up to ``rows`` rows, so the last batch has the shape every compiled call was built for."""
    if part.shape[0] == rows:
        return part
    return np.concatenate([part, np.repeat(part[:1], rows - part.shape[0], axis=0)])


def _check_x(model: Model, x: Any, batch: int) -> Any:
    """Shape and dtype of the whole ``x`` (metadata only, nothing copied), full validation of its first batch."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = np.asarray(x)
    spec = model.input_spec
    if len(x.shape) != len(spec.shape) + 1 or tuple(x.shape[1:]) != spec.shape:
        raise ValueError(f"expected x of shape {spec.describe()}, got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"expected x of shape {spec.describe()} with N >= 1, got an empty array")
    spec.validate(np.asarray(x[:batch]), name="x (first batch)")
    return x


# ----------------------------------------------------------------------------- manifest and shards


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


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


def _intact(out_dir: Path, entry: Any, rows: int, value_shape: Any) -> bool:
    """Whether a listed shard's file is there, unchanged, and of the expected shape."""
    try:
        path = out_dir / entry["file"]
        if _digest(path.read_bytes()) != entry["sha256"]:
            return False
        with np.load(path) as shard:
            return shard["values"].shape == (rows, *value_shape)
    except (OSError, ValueError, KeyError, TypeError):
        return False


# ----------------------------------------------------------------------------- public


def attribute_dataset(
    model: Model | Any,
    x: Batch,
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
    show_progress: bool = False,
) -> BatchRun:
    """Attributes every sample of ``x`` shard by shard, writing one file per shard (module doc).

    Each shard is one :func:`explain.saliency.registry.call` of the method on
    ``batch_size`` rows; inside it the method chunks its own work within
    ``memory_budget``, exactly as a direct call does.

    Args:
      model: a :class:`~explain.model.Model` (contract in :mod:`explain.model`), a bundle, or a model
        spec string (:func:`explain.specs.resolve`: a shipped name, ``package.module:factory``,
        ``path/to/file.py:factory`` or an exported artifact folder), recorded in the manifest.
      x: ``(N, *input_shape)`` floating array-like; a ``np.memmap`` is read one shard at a time.
      method: a method name of :data:`explain.saliency.registry.METHODS` (its function name, e.g.
        ``"integrated_gradients"``), or that function itself (``explain.integrated_gradients``).
      out_dir: folder for ``shard-{i:05d}.npz`` and ``manifest.json``; created if missing.
      batch_size: rows per shard file (default 64) and nothing else: it sets how often results
        reach the disk and where a crashed run resumes, never how much is computed at once
        (that is ``memory_budget``). The last shard is padded to it (so each shape compiles
        once) and trimmed on write. Random methods draw with ``fold_in(key, shard)``, so their
        results depend on ``batch_size``.
      target, labels: as the method takes them (:mod:`explain.targets`); per-sample arrays
        (leading dimension ``N``, also inside a :class:`~explain.targets.Target`) are sliced per shard.
      key: ``jax.random.key``, required when the method is random; shard ``i`` uses ``fold_in(key, i)``.
      references: the reference set of methods that draw baselines from one (Expected Gradients,
        GradientSHAP), required for them: the default of a direct call, the batch itself, would
        make results depend on ``batch_size``. Ignored by the other methods.
      options: the method's own keyword options, e.g. ``{"steps": 64}``; validated against its
        signature before any work (unknown names raise, listing the valid ones).
      memory_budget: bytes per compiled call inside each shard (default
        :data:`explain.chunking.MEMORY_BUDGET`); not part of the run's settings.
      show_progress: a progress bar over shards.

    Returns:
      :class:`BatchRun`; ``.load()`` gives the values ``(N, ...)``.

    Raises:
      ValueError / TypeError: before any work or compilation, for a bad model, ``x``, ``batch_size``,
      ``memory_budget``, method name or option, a missing key or reference set, per-sample arrays of
      the wrong length, or an ``out_dir`` holding a run with other settings.
    """
    spec = model if isinstance(model, str) else None
    model = as_model(specs.resolve(model) if spec is not None else model)
    batch_size = check_int("batch_size", batch_size)
    chunking.check_budget(memory_budget)
    name = _method_name(method)
    info = registry.get(name)
    options = _check_options(name, dict(options or {}))
    options_record = _canonical(options, "options")
    info.check_model(model)
    uses_key = info.accepts_key and (info.needs_key or key is not None)
    if uses_key:
        key = check_key(key, what=repr(name))
    if info.needs_references:
        if references is None:
            raise ValueError(
                f"{name!r} draws baselines from a reference set; pass references=array (the default of a "
                "direct call, the batch itself, would make results depend on batch_size)"
            )
        references = model.input_spec.validate(references, name="references", check_range=False)
    else:
        references = None
    x = _check_x(model, x, batch_size)
    n = int(x.shape[0])
    rows = min(batch_size, n)
    take_target, take_labels = _slicer("target", target, n), _slicer("labels", labels, n)
    settings = {
        "method": name,
        "options": options_record,
        "batch_size": batch_size,
        "n": n,
        "input_shape": list(model.input_spec.shape),
        "dtype": str(x.dtype),
        "model": model.name,
        "params_sha256": params_sha256(model.params),
        # a cheap guard against a different dataset of the same shape; hashing all of x would read it twice
        "first_batch_sha256": _digest(np.ascontiguousarray(np.asarray(x[:rows])).tobytes()),
        "target": _canonical(target, "target"),
        "labels": _canonical(labels, "labels"),
        "key": _canonical(key, "key") if uses_key else None,
        "references": None if references is None else _array_record(references),
    }
    fingerprint = _fingerprint(settings)
    out_dir = Path(out_dir)
    bounds = list(chunking.chunk_bounds(n, rows))
    # The spec is provenance, not a setting: the same weights reached by name or by object resume alike.
    header = {"format": FORMAT, "fingerprint": fingerprint, "settings": settings, "n_shards": len(bounds), "spec": spec}

    old = _read_manifest(out_dir, settings, fingerprint)
    value_shape = None if old is None else old.get("value_shape")
    done: dict[int, dict] = {}
    if old is not None and value_shape is not None:
        for entry in old.get("shards", []):
            i = entry.get("index") if isinstance(entry, dict) else None
            if isinstance(i, int) and 0 <= i < len(bounds) and _intact(out_dir, entry, _count(bounds[i]), value_shape):
                done[i] = entry
    skipped = tuple(sorted(done))
    completed = []
    with chunking.progress(len(bounds) - len(done), enabled=show_progress, desc="shards") as bar:
        for i, (a, b) in enumerate(bounds):
            if i in done:
                continue
            xb = _pad(np.asarray(x[a:b]), rows)
            att = registry.call(
                name, model, xb, target=take_target(a, b, rows), labels=take_labels(a, b, rows),
                key=jax.random.fold_in(key, i) if uses_key else None, references=references,
                memory_budget=memory_budget, **options,
            )  # fmt: skip
            arrays = {f: np.asarray(getattr(att, f))[: b - a] for f in _FIELDS if getattr(att, f) is not None}
            shape = list(arrays["values"].shape[1:])
            if value_shape is not None and shape != list(value_shape):
                raise ValueError(f"shard {i} has values of shape {shape} per sample, earlier shards {value_shape}")
            if value_shape is None or not (out_dir / MANIFEST).exists():
                value_shape = shape
                _write_manifest(out_dir, header, value_shape, done)  # before the first shard: no orphan shards
            data = _npz_bytes(arrays)
            path = atomic_write_bytes(shard_path(out_dir, i), data)
            done[i] = {"index": i, "file": path.name, "rows": b - a, "sha256": _digest(data)}
            _write_manifest(out_dir, header, value_shape, done)
            completed.append(i)
            bar.update()
    return BatchRun(out_dir, len(bounds), tuple(completed), skipped)


def _count(bound: tuple[int, int]) -> int:
    return bound[1] - bound[0]

"""``jax.export`` artifacts as a model: a folder that any spec can be written to and loaded back without its code.

:func:`export` writes three or four files, each atomically (``model.json`` last, so a folder holding it is complete):

* ``model.stablehlo``: ``jax.export.export(jax.jit(apply))(params, x)`` with a symbolic batch dimension
  ``b`` (``x`` of shape ``(b, *input_shape)``), serialized with its VJPs up to ``vjp_order``. The params are
  an input, not baked-in constants, so the artifact stays small and parameter-space gradients keep working.
* ``params.npz``: the parameter leaves in the order of the Exported's ``in_tree`` (no pickle); the tree is
  rebuilt from that ``in_tree``. Leaves are keyed by their path in the model's params (``"params/conv/kernel"``),
  so the tree is a plain ``dict`` and loading needs neither Flax nor the model's code.
* ``data.npz`` (optional): the first ``samples`` rows of the spec's test split (``x``, ``y``), so the commands
  have inputs to explain without ``--data`` (an artifact carries no code to rebuild its dataset).
* ``model.json``: format version, input spec, output kind, class names, name, ``num_outputs``, ``vjp_order``,
  platforms, the sha256 and size of the other files, and the JAX version.

:func:`load` checks everything it can before deserialising (files present, the JSON's keys and types, both
hashes), then the Exported against the metadata (one symbolic batch dimension, the per-sample shape, ``K``)
and the params against the ``in_tree`` (shapes, dtypes, finite). Every failure is an :class:`ExportError`
whose one-line message names the file and the problem.

Derivatives of a loaded model. ``jax.export`` serializes reverse mode only (``Exported.vjp()``, one level per
``vjp_order``); JAX cannot differentiate the serialized call forward nor batch it. The loaded ``apply`` rebuilds
both from the serialized VJPs (``E₀ = f``, ``E₁(a, c) = J(a)ᵀc``, ``E₂(a, c, u) = ∇₍ₐ,c₎⟨E₁(a, c), u⟩``):

* reverse mode (``jax.grad``, parameters or input): ``custom_vjp`` whose backward pass is ``E₁``;
* forward over reverse in ``x`` (:func:`explain.hvp`, interactions), ``vjp_order >= 2`` (Pearlmutter 1994):
  the primal's tangent is ``J t`` with ``(J t)ₙₖ = ⟨E₁(a, eₖ)ₓ, tₓ⟩ₙ``, one ``E₁`` call on the batch repeated per
  output ``k`` (``E₁`` is linear in ``c``; samples do not interact); the backward pass's tangent in ``(tₐ, t_c)`` is
  ``E₁(a, t_c) + H_c tₐ`` with ``H_c = ∇²ₐ⟨c, f(a)⟩`` symmetric, so ``H_c tₐ = E₂(a, c, tₐ)ₐ``;
* ``jax.vmap``: samples do not interact (:mod:`explain.model`), so a batched ``x`` folds into the symbolic
  batch dimension (one call); any other batched argument (cotangents, tangents) runs as a ``lax.map`` loop.

Not available: plain forward mode of ``apply`` itself (``jax.jvp(apply)``: it is a ``custom_vjp``), forward over
reverse in the params (:data:`NO_PARAM_JVP`), reverse over reverse, and layer taps (no layer structure survives: Grad-CAM, layer gradients, Guided Backprop /
Deconvnet and gradient flow say so, see :meth:`explain.model.Model.check_tap`).

Example::

    $ python -m explain export --model shapes_cnn --out artifacts/shapes_cnn
    >>> m = explain.exported.load("artifacts/shapes_cnn")   # no Flax, no models package
    >>> explain.integrated_gradients(m, x, steps=32)
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export
from jax.custom_derivatives import SymbolicZero
from jaxtyping import Array, Float

from explain.io import atomic_write_bytes, atomic_write_text
from explain.model import InputSpec, Model, as_model

FORMAT = "explain.exported"
FORMAT_VERSION = 1
METADATA = "model.json"
ARTIFACT = "model.stablehlo"
PARAMS = "params.npz"
DATA = "data.npz"
SAMPLES = 8  # rows of the test split kept in data.npz by default (a 64x64x3 image is 48 KiB, ~42 compressed)
ORIGIN = "export"
NO_PARAM_JVP = (
    "forward-mode derivatives in the parameters of a jax.export artifact are not supported "
    "(only reverse mode, and forward over reverse in the input x)"
)
# Lowered for every platform JAX can lower to without the hardware, so an artifact written on a CPU
# runs on a GPU; the current platform alone where that fails (an op without a lowering elsewhere).
PLATFORMS = ("cpu", "cuda", "tpu")

_KEYS: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "format_version": int,
    "name": str,
    "output_kind": str,
    "class_names": (list, type(None)),
    "input": dict,
    "num_outputs": int,
    "vjp_order": int,
    "platforms": list,
    "files": dict,
    "num_params": int,
    "jax_version": str,
}
_INPUT_KEYS: dict[str, type | tuple[type, ...]] = {
    "shape": list,
    "dtype": str,
    "value_range": (list, type(None)),
    "feature_names": (list, type(None)),
}


class ExportError(ValueError):
    """An artifact that cannot be written or loaded; the message is one line naming the file and the problem."""


# ----------------------------------------------------------------------------- writing


def _leaf_name(path: Sequence[Any]) -> str:
    """``"params/conv/kernel"`` for a key path (dict keys, attributes and indices joined by ``/``)."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts) or "param"


def _named_params(params: Any) -> tuple[dict[str, Any], Callable[[dict[str, Any]], Any]]:
    """The params as a flat ``{path: leaf}`` dict (plain containers only, so loading needs no Flax), and
    the function rebuilding the model's own tree from such a dict."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    names = [_leaf_name(path) for path, _ in flat]
    if len(set(names)) != len(names):  # two paths joining to one name: fall back to JAX's own key strings
        names = [jax.tree_util.keystr(path) for path, _ in flat]
    for name, (_, leaf) in zip(names, flat, strict=True):
        dtype = np.dtype(getattr(leaf, "dtype", np.asarray(leaf).dtype))
        if not np.issubdtype(dtype, np.floating):
            raise ExportError(f"params leaf {name!r} has dtype {dtype}; only floating params can be exported")
        if not np.isfinite(np.asarray(leaf)).all():
            raise ExportError(f"params leaf {name!r} holds NaN or inf; refusing to export a broken model")
    named = {n: jnp.asarray(leaf) for n, (_, leaf) in zip(names, flat, strict=True)}
    return named, lambda d: jax.tree_util.tree_unflatten(treedef, [d[n] for n in names])


def _lower(fn: Callable, args: tuple) -> jax_export.Exported:
    try:
        return jax_export.export(jax.jit(fn), platforms=PLATFORMS)(*args)
    except Exception:  # noqa: BLE001 - an op without a lowering on some platform: the current one alone
        return jax_export.export(jax.jit(fn))(*args)


def _npz_bytes(leaves: Sequence[Any]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{f"p{i:05d}": np.asarray(leaf) for i, leaf in enumerate(leaves)})
    return buf.getvalue()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_out_dir(out_dir: str | Path) -> Path:
    """``out_dir`` as a path; ``ExportError`` when it is a file or a folder that is not empty."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ExportError(f"{str(out)!r} is a file; expected a new or empty folder for the artifact")
    if out.is_dir() and any(out.iterdir()):
        raise ExportError(f"{str(out)!r} is not empty; expected a new or empty folder for the artifact")
    return out


def _sample_bytes(dataset: Any, samples: int, shape: tuple[int, ...]) -> bytes | None:
    """``data.npz`` (``x`` float32 ``(n, *shape)``, ``y`` ``(n,)``): the first ``samples`` rows of ``dataset.test``;
    ``None`` when there is no such split, or nothing to keep."""
    split = getattr(dataset, "test", None)
    if samples < 1 or split is None or not (hasattr(split, "x") and hasattr(split, "y")):
        return None
    x = np.asarray(split.x[:samples], dtype=np.float32)
    y = np.asarray(split.y[:samples])
    if x.shape[1:] != shape or y.shape != (len(x),) or not np.issubdtype(y.dtype, np.number):
        raise ExportError(
            f"expected the test split as x {('n', *shape)} and numeric y (n,), got x {x.shape} and y "
            f"{y.dtype}{y.shape}; export with samples=0 (--samples 0) to keep no rows"
        )
    buf = io.BytesIO()
    np.savez_compressed(buf, x=x, y=y)
    return buf.getvalue()


def export(
    model_or_spec: Model | Any | str, out_dir: str | Path, *, vjp_order: int = 2, samples: int = SAMPLES
) -> Path:
    """Writes the model as a ``jax.export`` artifact folder (see the module docstring) and returns the folder.

    Args:
      model_or_spec: a :class:`~explain.model.Model`, a bundle with ``.model``, or a spec string
        (:func:`explain.specs.resolve`: a shipped name, ``module:factory``, ``file.py:factory``).
      out_dir: a new or empty folder.
      vjp_order: reverse-mode derivative levels serialized with the function: 1 for gradients,
        2 (default) also for Hessian-vector products (:func:`explain.hvp`, interactions).
      samples: rows of the test split (of a spec or bundle with a ``.dataset``) kept in ``data.npz``;
        0 for none.

    Raises:
      ExportError: a non-empty ``out_dir``, ``vjp_order`` below 1, a model that is already an artifact,
        non-floating or non-finite params, an ``apply`` that does not return ``(N, K)`` for any ``N``.
    """
    if isinstance(vjp_order, bool) or not isinstance(vjp_order, int) or vjp_order < 1:
        raise ExportError(f"expected vjp_order an integer >= 1 (gradients need the VJP), got {vjp_order!r}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
        raise ExportError(f"expected samples an integer >= 0, got {samples!r}")
    out = check_out_dir(out_dir)
    name, class_names, dataset = None, None, None
    if isinstance(model_or_spec, str):
        from explain import specs

        resolved = specs.resolve(model_or_spec)
        model, name, class_names, dataset = resolved.model, resolved.name, resolved.class_names, resolved.dataset
    else:
        model = as_model(model_or_spec)
        class_names = getattr(model_or_spec, "class_names", None)
        name = getattr(model_or_spec, "name", None) if model_or_spec is not model else None
        dataset = getattr(model_or_spec, "dataset", None) if model_or_spec is not model else None
    if model.origin == ORIGIN:
        # Its apply calls the serialized function, whose derivatives JAX cannot serialize again.
        raise ExportError(f"model {model.name!r} is already a jax.export artifact; copy its folder instead")
    name = name if isinstance(name, str) and name else model.name
    class_names = model.class_names if class_names is None else tuple(map(str, class_names))

    spec = model.input_spec
    data_bytes = _sample_bytes(dataset, samples, tuple(spec.shape))  # checked before the slow lowering
    named, rebuild = _named_params(model.params)
    (b,) = jax_export.symbolic_shape("b")
    x_abstract = jax.ShapeDtypeStruct((b, *spec.shape), jnp.float32)
    p_abstract = {n: jax.ShapeDtypeStruct(v.shape, v.dtype) for n, v in named.items()}
    exp = _lower(lambda p, x: model.apply(rebuild(p), x), (p_abstract, x_abstract))
    out_shape = exp.out_avals[0].shape if len(exp.out_avals) == 1 else None
    if out_shape is None or len(out_shape) != 2 or not isinstance(out_shape[1], int):
        raise ExportError(f"expected apply to return one array of shape (N, K), got {[a.shape for a in exp.out_avals]}")
    blob = bytes(exp.serialize(vjp_order=vjp_order))
    leaves = exp.in_tree.flatten_up_to(((named, 0), {}))[:-1]  # in_tree order; the x placeholder dropped
    params_bytes = _npz_bytes(leaves)
    files = {ARTIFACT: blob, PARAMS: params_bytes, **({DATA: data_bytes} if data_bytes is not None else {})}
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "output_kind": model.output_kind,
        "class_names": None if class_names is None else list(class_names),
        "input": {
            "shape": list(spec.shape),
            "dtype": "float32",
            "value_range": None if spec.value_range is None else [float(v) for v in spec.value_range],
            "feature_names": None if spec.feature_names is None else list(spec.feature_names),
        },
        "num_outputs": int(out_shape[1]),
        "vjp_order": vjp_order,
        "platforms": list(exp.platforms),
        "files": {fname: {"sha256": _sha256(data), "bytes": len(data)} for fname, data in files.items()},
        "num_params": int(sum(math.prod(v.shape) for v in named.values())),
        "jax_version": jax.__version__,
    }
    for fname, data in files.items():
        atomic_write_bytes(out / fname, data)
    atomic_write_text(out / METADATA, json.dumps(meta, indent=2) + "\n")
    return out


# ----------------------------------------------------------------------------- reading and checking


def artifact_dir(path: str | Path) -> Path | None:
    """The artifact folder ``path`` names (the folder, or its ``model.json``), or ``None`` when it names none."""
    p = Path(path).expanduser()
    if p.is_dir():
        return p if (p / METADATA).is_file() else None
    return p.parent if p.is_file() and p.suffix == ".json" else None


def _check_type(where: str, key: str, value: Any, expected: type | tuple[type, ...]) -> None:
    types = expected if isinstance(expected, tuple) else (expected,)
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        want = " or ".join("null" if t is type(None) else t.__name__ for t in types)
        raise ExportError(f"{where}: {key!r} must be {want}, got {type(value).__name__}")


def read_metadata(path: str | Path) -> dict[str, Any]:
    """``model.json`` parsed and checked (an object with the expected keys and types); nothing else is read.

    Raises:
      ExportError: not JSON, not an object, not our format, a missing key or one of the wrong type.
    """
    path = Path(path)
    where = path.name
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{where}: no such file in {str(path.parent)!r}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{where}: not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(meta, dict):
        raise ExportError(f"{where}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise ExportError(
            f'{where}: not an explain artifact (expected "format": {FORMAT!r}, got {meta.get("format")!r}); '
            "write one with `python -m explain export`"
        )
    missing = sorted(set(_KEYS) - set(meta))
    if missing:
        raise ExportError(f"{where}: missing key(s) {missing}")
    for key, expected in _KEYS.items():
        _check_type(where, key, meta[key], expected)
    if meta["format_version"] != FORMAT_VERSION:
        raise ExportError(
            f"{where}: format_version {meta['format_version']} is not supported (expected {FORMAT_VERSION})"
        )
    missing = sorted(set(_INPUT_KEYS) - set(meta["input"]))
    if missing:
        raise ExportError(f"{where}: 'input' is missing key(s) {missing}")
    for key, expected in _INPUT_KEYS.items():
        _check_type(where, f"input.{key}", meta["input"][key], expected)
    shape = meta["input"]["shape"]
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ExportError(f"{where}: 'input.shape' must be a list of positive integers, got {shape!r}")
    rng = meta["input"]["value_range"]
    if rng is not None and (len(rng) != 2 or not all(isinstance(v, (int, float)) for v in rng)):
        raise ExportError(f"{where}: 'input.value_range' must be [low, high] or null, got {rng!r}")
    if meta["output_kind"] not in ("classification", "regression"):
        raise ExportError(f"{where}: 'output_kind' must be 'classification' or 'regression'")
    if meta["num_outputs"] < 1 or meta["vjp_order"] < 1:
        raise ExportError(f"{where}: 'num_outputs' and 'vjp_order' must be >= 1")
    names = meta["class_names"]
    if names is not None and (len(names) != meta["num_outputs"] or not all(isinstance(n, str) for n in names)):
        raise ExportError(f"{where}: 'class_names' must be {meta['num_outputs']} strings (one per output)")
    for fname in (ARTIFACT, PARAMS, DATA):
        entry = meta["files"].get(fname)
        if (entry is not None or fname != DATA) and (
            not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str)
        ):
            raise ExportError(f"{where}: 'files' must give the sha256 of {fname}")
    return meta


def _read_checked(folder: Path, fname: str, meta: dict[str, Any]) -> bytes:
    path = folder / fname
    if not path.is_file():
        raise ExportError(f"{fname}: missing from {str(folder)!r} (model.json describes it)")
    data = path.read_bytes()
    expected, got = meta["files"][fname]["sha256"], _sha256(data)
    if expected != got:
        raise ExportError(
            f"{fname}: sha256 mismatch (expected {expected}, got {got}): "
            "the file was modified or is not the one model.json describes"
        )
    return data


def _check_exported(exp: jax_export.Exported, meta: dict[str, Any]) -> None:
    """The deserialised function against the metadata: one symbolic batch dimension, the per-sample shape, K."""
    shape = tuple(meta["input"]["shape"])
    x_aval = exp.in_avals[-1]
    got = tuple(x_aval.shape)
    if len(got) != len(shape) + 1 or isinstance(got[0], int) or tuple(got[1:]) != shape:
        raise ExportError(
            f"model.json: input shape {shape} does not match {ARTIFACT}'s input {got} "
            "(expected one symbolic batch dimension, then the per-sample shape)"
        )
    if str(x_aval.dtype) != meta["input"]["dtype"]:
        raise ExportError(
            f"model.json: input dtype {meta['input']['dtype']} does not match {ARTIFACT}'s {x_aval.dtype}"
        )
    outs = [tuple(a.shape) for a in exp.out_avals]
    if len(outs) != 1 or len(outs[0]) != 2 or outs[0][1] != meta["num_outputs"]:
        raise ExportError(
            f"model.json: num_outputs {meta['num_outputs']} does not match {ARTIFACT}'s outputs {outs} "
            "(expected one (b, K) output)"
        )
    order, available = 0, exp
    while order < meta["vjp_order"] and available.has_vjp():
        available, order = available.vjp(), order + 1
    if order < meta["vjp_order"]:
        raise ExportError(f"{ARTIFACT}: holds VJPs to order {order}, model.json says {meta['vjp_order']}")


def _load_params(data: bytes, exp: jax_export.Exported) -> dict[str, Any]:
    """The params leaves (``params.npz``, no pickle) checked against the ``in_tree``'s avals, as its tree."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ExportError(f"{PARAMS}: not a readable .npz without pickles ({e})") from None
    avals = exp.in_avals[:-1]
    keys = [f"p{i:05d}" for i in range(len(avals))]
    if sorted(arrays) != keys:
        raise ExportError(f"{PARAMS}: expected {len(avals)} arrays p00000..., got {len(arrays)}: {sorted(arrays)[:4]}")
    leaves = []
    for i, (key, aval) in enumerate(zip(keys, avals, strict=True)):
        a = arrays[key]
        if tuple(a.shape) != tuple(aval.shape) or a.dtype != aval.dtype:
            raise ExportError(
                f"{PARAMS}: leaf {i} has {a.dtype}{list(a.shape)}, {ARTIFACT} expects {aval.dtype}{list(aval.shape)}"
            )
        if not np.isfinite(a).all():
            raise ExportError(f"{PARAMS}: leaf {i} holds NaN or inf")
        leaves.append(jnp.asarray(a))
    (params, _), _ = exp.in_tree.unflatten([*leaves, None])
    return params


@dataclasses.dataclass(frozen=True)
class Split:
    """Rows kept with an artifact: ``x`` ``(n, *input_shape)`` float32, ``y`` ``(n,)`` (labels or targets)."""

    x: np.ndarray
    y: np.ndarray


@dataclasses.dataclass(frozen=True)
class Samples:
    """The dataset of a loaded artifact (``data.npz``): its ``test`` split only."""

    test: Split


def _load_samples(data: bytes, meta: dict[str, Any]) -> Samples:
    """``data.npz`` (no pickle) checked against the metadata: ``x`` ``(n, *input_shape)`` finite, ``y`` ``(n,)``."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ExportError(f"{DATA}: not a readable .npz without pickles ({e})") from None
    if sorted(arrays) != ["x", "y"]:
        raise ExportError(f"{DATA}: expected arrays x and y, got {sorted(arrays)}")
    x, y = arrays["x"], arrays["y"]
    shape = tuple(meta["input"]["shape"])
    if x.dtype != np.float32 or x.shape[1:] != shape or y.shape != (len(x),) or not np.issubdtype(y.dtype, np.number):
        raise ExportError(
            f"{DATA}: expected x float32 {('n', *shape)} and numeric y (n,), got x {x.dtype}{x.shape}, y {y.dtype}{y.shape}"
        )
    if not np.isfinite(x).all():
        raise ExportError(f"{DATA}: x holds NaN or inf")
    return Samples(test=Split(x=x, y=y))


def load_samples(path: str | Path) -> Samples | None:
    """The rows kept with the artifact at ``path`` (its folder or ``model.json``), or ``None`` when it kept none.

    Raises:
      ExportError: one line naming the file and the problem (as :func:`load`).
    """
    p = Path(path).expanduser()
    folder = p.parent if p.suffix == ".json" else p
    meta = read_metadata(p if p.suffix == ".json" else folder / METADATA)
    if DATA not in meta["files"]:
        return None
    return _load_samples(_read_checked(folder, DATA, meta), meta)


# ----------------------------------------------------------------------------- the differentiable call


def _flat_call(exp: jax_export.Exported) -> Callable[..., tuple[jax.Array, ...]]:
    """``exp``'s call on flat arguments, returning flat outputs."""

    def call(*flat):
        args, kwargs = exp.in_tree.unflatten(flat)
        return tuple(jax.tree_util.tree_leaves(exp.call(*args, **kwargs)))

    return call


def _batchable(call: Callable[..., tuple], *, fold_last: bool) -> Callable[..., tuple]:
    """``call`` made ``jax.vmap``-able (the serialized call has no batching rule).

    With ``fold_last`` (the primal, whose last argument is ``x``): a batched ``x`` alone folds into the
    symbolic batch dimension, ``(B, N, ...) -> (B·N, ...)``, one call (samples do not interact). Anything
    else is a ``lax.map`` over the batch, calling the batchable function again so nested vmaps work.
    """
    f = jax.custom_batching.custom_vmap(call)

    @f.def_vmap
    def rule(axis_size: int, in_batched: Sequence[bool], *args):
        if fold_last and in_batched[-1] and not any(in_batched[:-1]):
            x = args[-1]
            outs = f(*args[:-1], x.reshape((axis_size * x.shape[1], *x.shape[2:])))
            outs = tuple(o.reshape((axis_size, x.shape[1], *o.shape[1:])) for o in outs)
            return outs, tuple(True for _ in outs)
        batched = [a for a, b in zip(args, in_batched, strict=True) if b]

        def one(rows):
            it = iter(rows)
            return f(*[next(it) if b else a for a, b in zip(args, in_batched, strict=True)])

        outs = jax.lax.map(one, batched)
        return outs, tuple(True for _ in outs)

    return f


def _missing(order: int, have: int) -> Callable[..., Any]:
    def fail(*_):
        raise ExportError(
            f"{ARTIFACT}: this derivative needs the VJP of order {order}, the artifact holds {have}; "
            f"export it again with vjp_order={order}"
        )

    return fail


def differentiable_call(exp: jax_export.Exported, vjp_order: int) -> Callable[..., jax.Array]:
    """``F(*a) -> y`` on the flat inputs ``a`` (param leaves, then ``x``): reverse mode from ``E₁``,
    forward over reverse from ``E₂``, vmap by folding or looping (see the module docstring)."""
    e = [exp]
    while len(e) <= min(vjp_order, 2) and e[-1].has_vjp():
        e.append(e[-1].vjp())
    raw0 = _batchable(_flat_call(e[0]), fold_last=True)
    raw1 = _batchable(_flat_call(e[1]), fold_last=False) if len(e) > 1 else _missing(1, len(e) - 1)
    raw2 = _batchable(_flat_call(e[2]), fold_last=False) if len(e) > 2 else _missing(2, len(e) - 1)

    @jax.custom_jvp
    def primal(*a):
        return raw0(*a)[0]

    def primal_jvp(a, ta):
        # J t from E₁ alone: (J t)ₙₖ = ⟨E₁(a, eₖ)ₓ, tₓ⟩ₙ (E₁ is linear in c, samples do not interact), the K
        # one-hot cotangents folded into the batch, one call. Not the c-part of E₂(a, 0, t): XLA (jaxlib 0.10.2,
        # CPU) miscompiles that call when its other outputs are dropped, returning uninitialised memory (1e30s).
        y = primal(*a)
        if not all(isinstance(t, SymbolicZero) for t in ta[:-1]):
            raise ExportError(NO_PARAM_JVP)
        if isinstance(ta[-1], SymbolicZero):
            return y, jnp.zeros_like(y)
        *p, x = a
        (n, k), tx = y.shape, ta[-1]
        xs = jnp.broadcast_to(x, (k, *x.shape)).reshape((k * n, *x.shape[1:]))
        cs = jnp.broadcast_to(jnp.eye(k, dtype=y.dtype)[:, None, :], (k, n, k)).reshape((k * n, k))
        g = raw1(*p, xs, cs)[-1].reshape((k, n, -1))  # ∂yₙₖ/∂xₙ, (K, N, features)
        return y, jnp.einsum("knf,nf->nk", g, tx.reshape((n, -1))).astype(y.dtype)

    primal.defjvp(primal_jvp, symbolic_zeros=True)

    @jax.custom_jvp
    def backward(*a_c):
        return raw1(*a_c)

    @backward.defjvp
    def backward_jvp(a_c, t_a_c):
        # E₁(a, c) = J(a)ᵀc: its tangent is E₁(a, t_c) + H_c tₐ, and H_c tₐ = the a-part of E₂(a, c, tₐ).
        *a, c = a_c
        *ta, tc = t_a_c
        out = backward(*a_c)
        lin = raw1(*a, tc)
        curv = raw2(*a, c, *ta)[: len(a)]
        return out, tuple(u + v for u, v in zip(lin, curv, strict=True))

    @jax.custom_vjp
    def f(*a):
        return primal(*a)

    def f_fwd(*a):
        return primal(*a), a

    def f_bwd(a, ct):
        return tuple(backward(*a, ct))

    f.defvjp(f_fwd, f_bwd)
    return f


@dataclasses.dataclass(frozen=True, eq=False)
class Artifact:
    """A loaded artifact: the deserialised function, its metadata and folder; ``apply`` is the model's."""

    exported: jax_export.Exported
    metadata: dict[str, Any]
    folder: Path
    call: Callable[..., jax.Array]

    def apply(self, params: Any, x: Float[Array, " n *features"]) -> Float[Array, " n k"]:
        """``(params, x (N, *shape)) -> (N, K)``; ``params`` with the tree of the loaded ones."""
        flat, tree = jax.tree_util.tree_flatten(((params, 0), {}))
        if tree != self.exported.in_tree:
            raise ValueError(f"expected params with the tree of the artifact's {self.exported.in_tree}, got {tree}")
        dtype = self.exported.in_avals[-1].dtype
        return self.call(*flat[:-1], jnp.asarray(x).astype(dtype))


def load_artifact(path: str | Path) -> tuple[Artifact, dict[str, Any]]:
    """The checked artifact and its params (see :func:`load`)."""
    p = Path(path).expanduser()
    folder = p.parent if p.suffix == ".json" else p
    if not folder.is_dir():
        raise ExportError(f"{str(folder)!r}: no such folder (expected an artifact folder or its {METADATA})")
    meta = read_metadata(p if p.suffix == ".json" else folder / METADATA)
    blob = _read_checked(folder, ARTIFACT, meta)
    params_bytes = _read_checked(folder, PARAMS, meta)
    try:
        exp = jax_export.deserialize(bytearray(blob))
    except Exception as e:  # noqa: BLE001 - any decoding failure of a file whose hash matched its JSON
        raise ExportError(f"{ARTIFACT}: cannot be deserialised ({type(e).__name__}: {str(e)[:200]})") from None
    _check_exported(exp, meta)
    params = _load_params(params_bytes, exp)
    artifact = Artifact(exp, meta, folder, differentiable_call(exp, meta["vjp_order"]))
    return artifact, params


def load(path: str | Path) -> Model:
    """The :class:`~explain.model.Model` of an artifact folder (or its ``model.json``) written by :func:`export`.

    ``apply`` calls the deserialised function: jit-able, differentiable in ``params`` and ``x`` (reverse
    mode, and forward over reverse with ``vjp_order >= 2``), vmap-able; no ``tap`` and no layer names
    (``origin="export"``). Imports neither Flax nor the model's code.

    Raises:
      ExportError: one line naming the file and the problem (missing file, bad JSON, sha256 mismatch,
        shapes that disagree, non-finite params, ...).
    """
    artifact, params = load_artifact(path)
    meta = artifact.metadata
    try:
        spec = InputSpec(
            shape=tuple(meta["input"]["shape"]),
            value_range=None if meta["input"]["value_range"] is None else tuple(meta["input"]["value_range"]),
            feature_names=None if meta["input"]["feature_names"] is None else tuple(meta["input"]["feature_names"]),
        )
    except ValueError as e:
        raise ExportError(f"{METADATA}: {e}") from None
    return Model(
        apply=artifact.apply,
        params=params,
        input_spec=spec,
        output_kind=meta["output_kind"],
        class_names=None if meta["class_names"] is None else tuple(meta["class_names"]),
        name=meta["name"],
        origin=ORIGIN,
    )

"""Checkpoints without pickle: msgpack arrays, validated against the module's own shapes.

A checkpoint is ``NAME.msgpack`` (``flax.serialization`` msgpack: typed
arrays, no code) and ``NAME.json`` (metadata, including the file's sha256).
Loading checks, in order, before any array is used: the metadata is a JSON
object naming the model that was asked for, the file exists, its sha256
matches the metadata, it decodes, every array's path, shape and dtype equal
those of ``module.init`` (evaluated abstractly, no compute), and every value
is finite.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from explain.io import atomic_write_bytes


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupted, or does not match its model."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save(path: Path, variables: Any, metadata: dict) -> dict:
    """Writes ``path`` (.msgpack) and its ``.json`` metadata atomically; returns the metadata written."""
    path = Path(path)
    host = jax.tree_util.tree_map(np.asarray, variables)
    atomic_write_bytes(path, serialization.msgpack_serialize(serialization.to_state_dict(host)))
    meta = {**metadata, "file": path.name, "sha256": sha256_file(path)}
    atomic_write_bytes(path.with_suffix(".json"), (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    return meta


def read_metadata(path: Path) -> dict:
    meta_path = Path(path).with_suffix(".json")
    if not meta_path.exists():
        raise CheckpointError(f"{meta_path}: metadata file not found")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{meta_path}: metadata is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_path}: expected a JSON object of metadata, got a JSON {type(meta).__name__}")
    return meta


def check_finite(path: Path, variables: Any) -> None:
    """Raises :class:`CheckpointError` naming the first array holding NaN or inf."""
    for key, value in _flat(variables).items():
        if not np.isfinite(np.asarray(value)).all():
            raise CheckpointError(f"{path}: {key} holds NaN or inf; a trained model's weights are finite")


def _flat(tree: Any) -> dict[str, Any]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(p): v for p, v in leaves}


def validate_against(path: Path, restored: Any, template: Any) -> None:
    """Raises :class:`CheckpointError` naming the file and the first path, shape or dtype mismatch."""
    got, want = _flat(restored), _flat(template)
    for key in sorted(set(want) | set(got)):
        if key not in got:
            raise CheckpointError(f"{path}: missing array {key} (expected shape {tuple(want[key].shape)})")
        if key not in want:
            raise CheckpointError(f"{path}: unexpected array {key} not in the model")
        g, w = got[key], want[key]
        if not isinstance(g, np.ndarray):
            raise CheckpointError(f"{path}: {key} is {type(g).__name__}, expected an array")
        if tuple(g.shape) != tuple(w.shape):
            raise CheckpointError(f"{path}: {key} has shape {tuple(g.shape)}, expected {tuple(w.shape)}")
        if g.dtype != w.dtype:
            raise CheckpointError(f"{path}: {key} has dtype {g.dtype}, expected {w.dtype}")


def load(path: Path, template: Any, *, model: str | None = None) -> tuple[Any, dict]:
    """Loads and validates a checkpoint; ``template`` is a pytree of ``ShapeDtypeStruct`` (or arrays).

    ``model``, when given, must be the name the metadata records: swapping two models' files (both
    the ``.msgpack`` and its ``.json``) otherwise loads one model's weights under the other's name.

    Returns:
      ``(variables, metadata)`` with variables as NumPy arrays in the template's structure.

    Raises:
      CheckpointError: missing, truncated, corrupted or mismatched file; the message names the file.
    """
    path = Path(path)
    meta = read_metadata(path)
    if model is not None and meta.get("model") != model:
        raise CheckpointError(
            f"{path.with_suffix('.json')}: the metadata describes model {meta.get('model')!r}, "
            f"but {model!r} was asked for (files swapped or copied from another model)"
        )
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint file not found")
    digest = sha256_file(path)
    if digest != meta.get("sha256"):
        raise CheckpointError(
            f"{path}: sha256 {digest[:16]}… does not match the metadata's {str(meta.get('sha256'))[:16]}… "
            "(file truncated, corrupted or replaced)"
        )
    try:
        state = serialization.msgpack_restore(path.read_bytes())
    except Exception as e:  # msgpack raises several unrelated types on bad bytes
        raise CheckpointError(f"{path}: not a valid msgpack checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict of arrays, got {type(state).__name__}")
    validate_against(path, state, serialization.to_state_dict(template))
    check_finite(path, state)
    return serialization.from_state_dict(template, state), meta

"""Instances in, arrays out: JSON lists, base64 PNG/JPEG images and base64 ``.npy``, checked field by field.

Instances come as

* nested JSON lists ``(N, *input_shape)``;
* per instance ``{"b64": "<PNG/JPEG/WebP, base64>"}``, decoded by :mod:`explain.images` exactly as the
  dashboard's uploads are (byte and pixel limits before decoding, mode, size and range converted to the
  model's input spec);
* the whole batch as ``{"npy_b64": "<.npy, base64>"}`` in place of the list (``np.load`` with
  ``allow_pickle=False``: a pickled object array is refused, never unpickled).

Every failure is a ``422`` :class:`~explain.serve.errors.ServeError` naming the field: ``instances[3]``
for one bad instance, ``instances`` for the batch. Nothing here imports JAX.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

import numpy as np

from explain import images
from explain.serve.errors import invalid


def b64decode(text: Any, field: str) -> bytes:
    """Strict base64 (standard alphabet, padding required) of a JSON string; ``422`` naming ``field`` otherwise."""
    if not isinstance(text, str):
        raise invalid(f"expected a base64 string, got {type(text).__name__}", field)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise invalid(f"invalid base64: {e}", field) from None


def npy_load(text: Any, field: str) -> np.ndarray:
    """A base64 ``.npy`` as a numeric array; object arrays and other files are refused (``422``)."""
    data = b64decode(text, field)
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise invalid(f"expected a base64 .npy file (np.save; no pickled objects): {e}", field) from None
    if not isinstance(arr, np.ndarray):
        raise invalid("expected one .npy array, got an .npz archive", field)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise invalid(f"expected a numeric .npy array, got dtype {arr.dtype}", field)
    return arr


def npy_b64(a: np.ndarray) -> dict[str, str]:
    """``{"npy_b64": ...}`` of ``a`` (``np.save`` format, read back with ``np.load(..., allow_pickle=False)``)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return {"npy_b64": base64.b64encode(buf.getvalue()).decode("ascii")}


def encode(a: np.ndarray, output: str) -> Any:
    """``a`` as nested JSON lists (``output="json"``; float32 values round-trip exactly) or as base64 ``.npy``."""
    return npy_b64(a) if output == "npy" else np.asarray(a).tolist()


def _check_rows(x: np.ndarray, shape: tuple[int, ...], field: str) -> np.ndarray:
    """``x (N, *shape)`` float32 with every value finite; the error names the first bad instance."""
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        raise invalid(f"expected instances of shape (N, {', '.join(map(str, shape))}), got {tuple(x.shape)}", field)
    if x.shape[0] == 0:
        raise invalid("expected at least one instance, got none", field)
    x = x.astype(np.float32, copy=False)
    finite = np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise invalid("expected finite values, got NaN or inf", f"instances[{i}]")
    return x


def _image(item: dict, i: int, model: Any, max_image_bytes: int) -> np.ndarray:
    field = f"instances[{i}]"
    shape = model.input_spec.shape
    if set(item) != {"b64"}:
        raise invalid(f'expected an image instance as {{"b64": "<base64 PNG/JPEG>"}}, got keys {sorted(item)}', field)
    if len(shape) != 3 or shape[2] not in (1, 3):
        raise invalid(f"model {model.name!r} takes {model.input_spec.describe()}, not images: send lists", field)
    data = b64decode(item["b64"], f"{field}.b64")
    try:
        return images.load_upload(data, shape, value_range=model.input_spec.value_range, max_bytes=max_image_bytes).x
    except images.UploadError as e:
        raise invalid(str(e), f"{field}.b64") from None


def _one(item: Any, i: int, model: Any, max_image_bytes: int) -> np.ndarray:
    """One instance: a nested list of numbers or an image; its shape is checked by the caller."""
    if isinstance(item, dict):
        return _image(item, i, model, max_image_bytes)
    try:
        a = np.asarray(item, dtype=np.float32)
    except (ValueError, TypeError):
        raise invalid("expected a nested list of numbers (same length at every level)", f"instances[{i}]") from None
    if a.shape != model.input_spec.shape:
        shape = model.input_spec.shape
        raise invalid(f"expected an instance of shape {shape}, got {a.shape}", f"instances[{i}]")
    return a


def _too_many(max_instances: int, n: int) -> str:
    return (
        f"expected at most {max_instances} instances per request (the server's cap; --max-instances raises it), "
        f"got {n}; split the request"
    )


def decode_instances(instances: Any, model: Any, *, max_instances: int, max_image_bytes: int) -> np.ndarray:
    """The request's instances as ``(N, *input_spec.shape)`` float32, finite.

    Args:
      instances: a list (nested numbers or ``{"b64": ...}`` per instance) or ``{"npy_b64": ...}``.
      model: the served :class:`~explain.model.Model` (its input spec).
      max_instances: most instances per request.
      max_image_bytes: most bytes of one encoded image.

    Raises:
      ServeError: ``422`` naming ``instances`` or ``instances[i]``.
    """
    if isinstance(instances, dict):
        if set(instances) != {"npy_b64"}:
            raise invalid(
                f'expected a list of instances or {{"npy_b64": ...}}, got keys {sorted(instances)}', "instances"
            )
        x = npy_load(instances["npy_b64"], "instances.npy_b64")
    elif isinstance(instances, list):
        if len(instances) > max_instances:
            raise invalid(_too_many(max_instances, len(instances)), "instances")
        if not any(isinstance(item, dict) for item in instances):
            try:  # the common case in one conversion; any mistake is found instance by instance below
                x = np.asarray(instances, dtype=np.float32)
            except (ValueError, TypeError):
                x = None
            if x is not None and x.shape[1:] == model.input_spec.shape:
                return _check_rows(x, model.input_spec.shape, "instances")
        rows = [_one(item, i, model, max_image_bytes) for i, item in enumerate(instances)]
        x = np.stack(rows) if rows else np.zeros((0, *model.input_spec.shape), np.float32)
    else:
        raise invalid(
            f'expected a list of instances or {{"npy_b64": ...}}, got {type(instances).__name__}', "instances"
        )
    if x.ndim >= 1 and x.shape[0] > max_instances:
        raise invalid(_too_many(max_instances, x.shape[0]), "instances")
    return _check_rows(x, model.input_spec.shape, "instances")


def decode_array(value: Any, field: str) -> np.ndarray:
    """A per-row array parameter (labels, target classes, a baseline) from a JSON list or ``{"npy_b64": ...}``."""
    if isinstance(value, dict):
        if set(value) != {"npy_b64"}:
            raise invalid(f'expected a list or {{"npy_b64": ...}}, got keys {sorted(value)}', field)
        return npy_load(value["npy_b64"], f"{field}.npy_b64")
    try:
        a = np.asarray(value)
    except (ValueError, TypeError):
        a = None
    if a is None or not np.issubdtype(a.dtype, np.number):  # bools and strings are not numbers here
        raise invalid("expected numbers (a number or a nested list of them)", field)
    return a

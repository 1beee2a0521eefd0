"""Every local device: one compiled call's rows split over ``jax.devices()[:n]``, parameters replicated.

A :class:`Devices` holds a one-axis :class:`jax.sharding.Mesh` named ``"batch"``. :meth:`Devices.map`
runs a function over chunks of rows whose size is a multiple of the device count; each chunk's
row-aligned leaves are placed with ``NamedSharding(mesh, P("batch"))`` (device ``d`` holds rows
``d·c/n .. (d+1)·c/n``) and everything else with ``NamedSharding(mesh, P())`` (replicated), so
``jax.jit`` partitions the computation along the batch axis (GSPMD) and needs no collective: samples
do not interact (the model contract in :mod:`explain.model`). The last chunk is padded by repeating
its first row, so every call has one shape and compiles once; the padding is trimmed on the host.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from explain import chunking
from explain.checks import check_optional_int

AXIS = "batch"


def local_devices(n: int | None = None) -> list[jax.Device]:
    """The first ``n`` of ``jax.devices()`` (``None``: all of them).

    Raises:
      ValueError: ``n < 1`` or more devices than there are.
    """
    devices = jax.devices()
    n = check_optional_int("devices", n)
    if n is None:
        return list(devices)
    if n > len(devices):
        raise ValueError(f"expected devices <= {len(devices)} (the {devices[0].platform} devices here), got {n}")
    return list(devices[:n])


def _pad_rows(a: np.ndarray, rows: int) -> np.ndarray:
    """``a`` padded to ``rows`` rows by repeating its first row (so a chunk keeps the compiled shape)."""
    if a.shape[0] == rows:
        return a
    return np.concatenate([a, np.repeat(a[:1], rows - a.shape[0], axis=0)])


@dataclasses.dataclass(frozen=True)
class Devices:
    """A batch-axis mesh over some local devices."""

    mesh: Mesh

    @classmethod
    def local(cls, n: int | None = None) -> Devices:
        return cls(Mesh(np.asarray(local_devices(n)), (AXIS,)))

    @property
    def count(self) -> int:
        return int(self.mesh.devices.size)

    @property
    def kind(self) -> str:
        return str(self.mesh.devices.flat[0].device_kind)

    def replicate(self, tree: Any) -> Any:
        """Every leaf on every device (parameters, keys, a reference set)."""
        return jax.device_put(tree, NamedSharding(self.mesh, PartitionSpec()))

    def split(self, tree: Any) -> Any:
        """Every leaf's leading (row) axis split over the devices; the row count must divide evenly."""
        return jax.device_put(tree, NamedSharding(self.mesh, PartitionSpec(AXIS)))

    def chunk(self, rows_per_device: int, total: int) -> int:
        """Rows per compiled call: ``rows_per_device`` on each device, but no more than ``total`` needs."""
        per_device = max(1, min(rows_per_device, -(-total // self.count)))
        return per_device * self.count

    def map(self, fn: Callable[..., Any], rows: Any, chunk: int) -> Any:
        """``fn(rows_chunk)`` over chunks of ``chunk`` rows of the pytree ``rows`` (leaves share the leading
        axis ``R``), each chunk split over the devices; results gathered to host arrays of leading axis ``R``.

        ``chunk`` must be a multiple of :attr:`count` (see :meth:`chunk`); the last chunk is padded.
        """
        if chunk % self.count:
            raise ValueError(f"expected a chunk that is a multiple of {self.count} devices, got {chunk}")
        total = jax.tree_util.tree_leaves(rows)[0].shape[0]
        parts = []
        for start, stop in chunking.chunk_bounds(total, chunk):
            part = jax.tree_util.tree_map(lambda a, a0=start, b0=stop: _pad_rows(np.asarray(a[a0:b0]), chunk), rows)
            out = fn(self.split(part))
            parts.append(jax.tree_util.tree_map(lambda r, n=stop - start: np.asarray(r)[:n], out))
        return jax.tree_util.tree_map(lambda *p: np.concatenate(p), *parts)

"""The Ray engine: the shards of a batch run computed by a Ray Data stage of stateful workers.

The driver (:func:`explain.batch.run.attribute_dataset`) does everything it does for the local engine
(the checks, the lock on the folder, the manifest, resume, the index); only the per-shard work moves.
The shards still to do become a Ray Data dataset of descriptors ``{"shard": i, "start": a, "stop": b}``,
one block each, mapped by ``map_batches(ShardWorker, batch_size=1, concurrency=workers)``: an actor pool
whose every worker, once, resolves the model from its spec string, builds and compiles the method, and
opens the source; then per descriptor it reads its rows, computes them with the local engine's own code
(:func:`explain.batch.run._compute`), writes the shard file (and its heatmaps) atomically itself, and
returns the shard's manifest entry. The driver lists each entry in the manifest as results stream in,
so a run interrupted on Ray resumes on Ray or locally, and the other way round.

Why descriptors and not Ray Data's readers (``read_images``, ``read_parquet``): a run's results are
defined by GLOBAL row numbers (row ``i`` draws its random numbers from ``fold_in(key, i)``) and by which
files are skipped and why, and the shard files hold fixed row ranges. Ray Data's readers neither keep a
stable global row order across blocks nor record undecodable files as our sources do; reading with
:mod:`explain.batch.sources` in the worker keeps shard ``i`` of a Ray run the same bytes as the local
engine's shard ``i``. Inputs travel as paths (every node must see them at the same path, as it must see
``out_dir``) or, for an in-memory array, once through the object store (``ray.put``; a large ``np.memmap``
is copied there too: give large files by path).

Fault tolerance is Ray Data's: its actor pools restart a lost worker (``max_restarts=-1``) and retry the
task it held (``max_task_retries=-1``). A retried shard is computed again from its global rows and
rewritten atomically with the same bytes. Shards listed before a driver crash are kept by the rerun.

CPU-only workers claim half a CPU each (:data:`CPU_PER_WORKER`): on a small machine a whole CPU per worker
leaves Ray Data no room to schedule and the stage waits forever; JAX still uses every core of the node.
On a cluster with GPUs each worker claims one GPU (set ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` for a
driver on a GPU node, or it holds most of that GPU's memory).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from explain.checks import check_optional_int

RAY_MISSING = "engine='ray' needs Ray, an optional extra: pip install flax-explain[ray]"
NEEDS_SPEC = (
    "engine='ray' resolves the model in each worker from its spec string: pass the model as a spec string "
    "(e.g. 'digits_cnn' or 'my_models.py:make'), or spec=... with the resolved model"
)
CPU_PER_WORKER = 0.5
# A worker's exception reaches the driver only as text inside Ray's wrapping; these come back as themselves.
CALLER_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError, OSError)
CONNECT_TIMEOUT = 3.0  # seconds: a cluster that does not accept a TCP connection by then is not there


def import_ray() -> Any:
    """``ray`` with ``ray.data``, or an :class:`ImportError` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise ImportError(RAY_MISSING) from e
    return ray


def _host_port(address: str) -> tuple[str, int]:
    """``"host:port"`` or ``"ray://host:port"`` -> ``(host, port)``."""
    bare = address.split("://", 1)[-1]
    host, sep, port = bare.rpartition(":")
    if not sep or not host or not port.isdecimal():
        raise ValueError(f"expected address as host:port (e.g. 10.0.0.1:6379) or 'auto', got {address!r}")
    return host.strip("[]"), int(port)


def check_address(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Raises unless ``address`` accepts a TCP connection within ``timeout`` seconds (``"auto"`` is Ray's)."""
    if address == "auto":
        return
    host, port = _host_port(address)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise ValueError(
            f"the Ray cluster at {address!r} does not answer ({e.strerror or e}); start it with "
            "`ray start --head` on that machine, or check --address"
        ) from None


def check(spec: Any, x: Any, address: str | None, workers: int | None) -> None:
    """Everything the Ray engine needs, checked before any work: Ray, a spec string, a live address."""
    import_ray()
    if not isinstance(spec, str):
        raise ValueError(NEEDS_SPEC)
    check_optional_int("workers", workers)
    if address is not None:
        check_address(address)


@dataclasses.dataclass(frozen=True)
class Job:
    """What every worker needs to compute any shard, checked by the driver (sent once per worker)."""

    spec: str
    method: str
    options: Mapping[str, Any]
    key: Any
    references: np.ndarray | None
    memory_budget: int | None
    devices: int | None
    target: Any
    labels: Any
    n: int
    rows: int
    classification: bool
    out_dir: str
    output: Any  # explain.batch.run.Output


def _source_arg(ray: Any, x: Any) -> tuple[str, Any, Any]:
    """How a worker reaches the input: ``("path", path, None)`` or ``("ref", object ref, row ids)``."""
    from explain.batch.sources import ArraySource, FolderSource

    if isinstance(x, (str, os.PathLike)):
        return "path", os.fspath(Path(x).resolve()), None
    if isinstance(x, FolderSource):
        return "path", os.fspath(x.root.resolve()), None
    ids = x.ids if isinstance(x, ArraySource) else None
    arr = x.x if isinstance(x, ArraySource) else x
    return "ref", ray.put(np.asarray(arr)), ids


def _open_source(arg: tuple[str, Any, Any], model: Any) -> Any:
    from explain.batch import sources

    kind, value, ids = arg
    if kind == "path":
        return sources.open_source(value, model)
    import ray

    return sources.ArraySource(ray.get(value), ids)


class ShardWorker:
    """One Ray Data worker: the model, method and source set up once, then shard after shard."""

    def __init__(self, job: Job, source: tuple[str, Any, Any]):
        from explain import specs
        from explain.batch import run as run_lib
        from explain.model import as_model

        self.job = job
        self.model = as_model(specs.resolve(job.spec))
        self.method = run_lib.build_method(
            self.model, job.method, job.options, job.key, job.references, job.memory_budget, job.devices
        )
        self.source = _open_source(source, self.model)
        self.take_target = run_lib._slicer("target", job.target, job.n)
        self.take_labels = run_lib._slicer("labels", job.labels, job.n)

    def shard(self, i: int, start: int, stop: int) -> dict[str, Any]:
        """Reads, computes and writes shard ``i``; its entry, value shape and seconds per stage."""
        from explain.batch import run as run_lib

        job, clock = self.job, run_lib.Clock()
        with clock("wait"):
            shard = self.source.read(start, stop)
        with clock("compute"):
            arrays = run_lib._compute(
                self.method, self.model, shard, job.rows, self.take_target, self.take_labels, i, job.classification
            )
        with clock("write"):
            entry = run_lib.write_shard(Path(job.out_dir), i, shard, arrays, job.output)
        return {"entry": entry, "value_shape": run_lib.value_shape_of(arrays), "seconds": clock.seconds}

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        done = []
        for i, a, b in zip(batch["shard"], batch["start"], batch["stop"], strict=True):
            try:
                done.append(json.dumps(self.shard(int(i), int(a), int(b))))
            except CALLER_ERRORS as e:  # the caller's mistake, raised on the driver as the local engine raises it
                kind = next(t for t in CALLER_ERRORS if isinstance(e, t))
                done.append(json.dumps({"error": [kind.__name__, f"shard {int(i)}: {e}"]}))
        return {"result": np.asarray(done, dtype=object)}


def _init(ray: Any, address: str | None) -> bool:
    """Joins ``address``, or the Ray this process runs, or starts a local one; whether this call started it."""
    if ray.is_initialized():
        return False
    if address is not None:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, log_to_driver=False)
    return True


def _default_workers(ray: Any) -> int:
    """One worker per GPU of the cluster, else one per live node."""
    gpus = int(ray.cluster_resources().get("GPU", 0))
    return gpus or max(1, sum(1 for node in ray.nodes() if node.get("Alive")))


def _resources(ray: Any) -> dict[str, float]:
    if ray.cluster_resources().get("GPU", 0) >= 1:
        return {"num_gpus": 1}
    return {"num_cpus": CPU_PER_WORKER}


def run(
    job: Job, x: Any, todo: list[tuple[int, int, int]], ledger: Any, clock: Any, bar: Any, *,
    address: str | None, workers: int | None,
) -> list[int]:  # fmt: skip
    """Computes the shards ``todo`` (``(index, start, stop)``) on Ray, listing each in ``ledger`` as it arrives.

    ``clock`` gets the workers' ``"wait"``, ``"compute"`` and ``"write"`` seconds summed, and ``"stream"``,
    the driver's time blocked on the results. Returns the indices computed, in the order they arrived.
    """
    ray = import_ray()
    started = _init(ray, address)
    try:
        count = min(max(1, len(todo)), workers or _default_workers(ray))
        ledger.header["engine"] = {
            "name": "ray", "workers": count, "address": address, "path": ledger.header["engine"]["path"],
            "ray": ray.__version__, "resources": _resources(ray),
        }  # fmt: skip
        fresh = not (ledger.out_dir / "manifest.json").exists()
        ledger.open(None)  # a manifest before any worker writes: no shard is ever on disk without one
        if not todo:
            return []
        try:
            return _stream(ray, job, x, todo, count, ledger, clock, bar)
        except BaseException:
            if fresh and not ledger.done:
                _forget(ledger.out_dir, todo)  # as the local engine: a run failing before any shard leaves nothing
            raise
    finally:
        if started:
            ray.shutdown()


def _forget(out_dir: Path, todo: list[tuple[int, int, int]]) -> None:
    """Removes what a run that listed no shard wrote: its manifest, unlisted shard files, their heatmaps."""
    from explain.batch.heatmaps import FOLDER
    from explain.batch.run import MANIFEST, shard_path

    for i, _, _ in todo:
        shard_path(out_dir, i).unlink(missing_ok=True)
    maps = out_dir / FOLDER
    if maps.is_dir():
        for png in maps.glob("*.png"):
            png.unlink()
        maps.rmdir()
    (out_dir / MANIFEST).unlink(missing_ok=True)


def _stream(
    ray: Any, job: Job, x: Any, todo: list[tuple[int, int, int]], count: int, ledger: Any, clock: Any, bar: Any
) -> list[int]:
    """The stage itself; each result listed as it arrives."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver's own bar counts examples
    items = [{"shard": i, "start": a, "stop": b} for i, a, b in todo]
    stage = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        ShardWorker, batch_size=1, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=count),
        fn_constructor_kwargs={"job": job, "source": _source_arg(ray, x)}, **_resources(ray),
    )  # fmt: skip
    completed = []
    with clock("stream"):
        results = stage.iter_rows()
    for row in clock.waited(results, stage="stream"):
        result = json.loads(row["result"])
        if "error" in result:
            kind, message = result["error"]
            raise {t.__name__: t for t in CALLER_ERRORS}[kind](message)
        for stage_name, seconds in result["seconds"].items():
            clock.seconds[stage_name] = clock.seconds.get(stage_name, 0.0) + seconds
        entry = result["entry"]
        with clock("write"):
            ledger.add(entry, result["value_shape"])
        completed.append(entry["index"])
        bar.update(entry["rows"] + len(entry["skipped"]))
    return completed

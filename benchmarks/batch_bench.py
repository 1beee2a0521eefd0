"""Batch attribution at scale, every row in its own subprocess: ``python benchmarks/batch_bench.py [--quick]``.

Issue 15's figures for :func:`explain.batch.attribute_dataset` on ``shapes_cnn``, in one run:

1. **Peak RSS flat in N.** The gradient (``vanilla_gradient``) over 1,000 and over 10,000 ``shapes``
   images, each in a fresh process whose peak is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at its
   end (imports, model, the whole run). The source is a ``.npy`` path, memory-mapped by
   :func:`explain.batch.sources.open_source` and read shard by shard, so only shards are ever held;
   target: the 10,000 peak at most 1.2× the 1,000 peak.
2. **Throughput** in images/s of the gradient and of IG-32 (``integrated_gradients``, 32 steps) with 1, 2
   and 4 devices (on CPU forced with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``; on an
   accelerator the real devices: 1 and all of them) and through Ray Data with 2 workers (one per
   accelerator on a GPU machine), each over the same source as a ratio to forward-only throughput
   there: the source read shard by shard and ``jit(model.apply)`` on each shard, the same rows per
   call, split over the same devices. Beside it, :attr:`BatchRun.wait_share`, the share of working
   time spent waiting for data. Each run builds its jitted core afresh, so a row first runs one shard
   (its time is printed: compiles plus one shard) with JAX's persistent compilation cache on, in a
   folder of the row's own, and ``img/s`` is the whole run after it, its compiles read from that
   cache (Ray workers share it through the environment). Ray rows include starting the workers
   and loading the model in each, which a larger N amortises.
3. **Direct against batch:** one direct IG-16 call on a test array, then ``attribute_dataset`` on it
   (one shard per batch) and a resume over the finished folder, with their largest difference.

The images come from the dataset's own generator (:func:`models.datasets.generate_shapes`, seeded),
written once, block by block, into a ``.npy`` with ``np.lib.format.open_memmap`` (the shipped test
split holds 1,000); every row reads a file of the first ``N`` of them. Each row runs under a
timeout in its own process group, so a hang costs one row, not the bench. The device is probed in a
subprocess too: this process never imports JAX, so on a GPU it holds no accelerator memory.

Timings depend on the machine's load: the load average is printed with them. ``--json PATH`` also
writes every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL = "shapes_cnn"
SEED = 0
RSS_TARGET = 1.2
# label -> (registry name, options)
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "gradient": ("vanilla_gradient", {}),
    "IG-32": ("integrated_gradients", {"steps": 32}),
}
FORCED_DEVICES = (1, 2, 4)
RAY_WORKERS = 2
GENERATE_BLOCK = 500  # images generated per call, a multiple of the 4 classes: the parent holds one block


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How many images each part uses; ``batch`` is ``batch_size``, rows per shard, in every run."""

    rss: tuple[int, int]
    per_method: dict[str, int]
    direct: int
    batch: int = 64


FULL = Sizes(rss=(1_000, 10_000), per_method={"gradient": 1_024, "IG-32": 256}, direct=128)
QUICK = Sizes(rss=(250, 2_500), per_method={"gradient": 256, "IG-32": 128}, direct=32)


# ----------------------------------------------------------------------------- children (each a fresh process)


def _child_probe(_: dict) -> dict:
    """The first device and how many there are."""
    import jax

    d = jax.devices()
    return {"platform": d[0].platform, "device_kind": d[0].device_kind, "count": len(d)}


def _status_mib(fields: tuple[str, ...]) -> dict[str, float]:
    """``fields`` of ``/proc/self/status`` in MiB (empty without ``/proc``)."""
    found = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in fields:
                found[name] = int(value.split()[0]) / 1024
    return found


@contextlib.contextmanager
def _sampled_peaks(fields: tuple[str, ...], every: float = 0.05):
    """The largest value of each ``/proc/self/status`` field seen while the block runs, sampled in a thread.

    ``ru_maxrss`` is one number; this says which kind of page the peak was made of: ``RssAnon`` (heap,
    arrays) or ``RssFile`` (file pages mapped into the process, such as a memory-mapped source's).
    """
    import threading

    peaks: dict[str, float] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(every):
            for k, v in _status_mib(fields).items():
                peaks[k] = max(peaks.get(k, 0.0), v)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peaks
    finally:
        stop.set()
        thread.join()


def _child_rss(job: dict) -> dict:
    """One streamed run over the ``.npy`` at ``job["path"]``; this process's peak RSS at its end."""
    import resource

    from explain.batch import attribute_dataset

    with tempfile.TemporaryDirectory() as out, _sampled_peaks(("RssAnon", "RssFile")) as peaks:
        run = attribute_dataset(
            MODEL, job["path"], method=job["method"], options=job["options"], out_dir=out, batch_size=job["batch"]
        )
    return {
        "seconds": run.seconds["total"],
        "wait_share": run.wait_share,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
        "peak_anon_mib": peaks.get("RssAnon"),
        "peak_file_mib": peaks.get("RssFile"),
    }


def _forward_only(path: str, batch: int, devices: int) -> float:
    """Images/s of reading ``path`` shard by shard and ``jit(model.apply)`` on each shard of ``batch`` rows
    (the last padded), split over the first ``devices`` devices; compile excluded."""
    import jax

    from explain import chunking, specs
    from explain.batch.devices import Devices
    from explain.batch.sources import open_source

    model = specs.resolve(MODEL).model
    source = open_source(path, model)
    mesh = Devices.local(devices)
    params, apply = mesh.replicate(model.params), jax.jit(model.apply)

    def one(start: int, stop: int) -> None:
        x = source.read(start, stop).x
        x = np.concatenate([x, np.repeat(x[:1], batch - x.shape[0], axis=0)]) if x.shape[0] < batch else x
        jax.block_until_ready(apply(params, mesh.split(x)))

    one(0, min(batch, source.n))  # the compile
    t0 = time.perf_counter()
    for start, stop in chunking.chunk_bounds(source.n, batch):
        one(start, stop)
    return source.n / (time.perf_counter() - t0)


def _child_throughput(job: dict) -> dict:
    """A one-shard run (it compiles, filling the persistent compilation cache the environment names), then
    the whole run, local or Ray (its compiles read from that cache), then forward-only over the same source."""
    local = job["engine"] == "local"
    if not local:
        import ray

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    from explain.batch import attribute_dataset

    settings = dict(
        method=job["method"], options=job["options"], batch_size=job["batch"], engine=job["engine"],
        devices=job["devices"] if local else None, workers=None if local else job["workers"],
    )  # fmt: skip
    runs = []
    for path in (job["one_shard"], job["path"]):
        with tempfile.TemporaryDirectory() as out:
            runs.append(attribute_dataset(MODEL, path, out_dir=out, **settings))
    if not local:
        ray.shutdown()
    first, whole = runs
    return {
        "first_shard_s": first.seconds["total"],
        "seconds": whole.seconds,
        "wait_share": whole.wait_share,
        "img_s": job["n"] / whole.seconds["total"],
        "forward_img_s": _forward_only(job["path"], job["batch"], job["devices"] or 1),
    }


def _child_direct(job: dict) -> dict:
    """One direct call on ``job["n"]`` test images, then ``attribute_dataset`` on them and a resume."""
    import jax

    import models
    from explain.batch import attribute_dataset
    from explain.saliency import registry

    bundle = models.load(MODEL)
    x = np.asarray(bundle.dataset.test.x[: job["n"]])
    t0 = time.perf_counter()
    direct = np.asarray(jax.block_until_ready(registry.call(job["method"], bundle, x, **job["options"]).values))
    t_direct = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as out:
        settings = dict(method=job["method"], options=job["options"], out_dir=out, batch_size=job["batch"])
        run = attribute_dataset(bundle, x, **settings)
        again = attribute_dataset(bundle, x, **settings)
        err = float(np.abs(run.load() - direct).max())
    return {
        "direct_s": t_direct,
        "batch_s": run.seconds["total"],
        "resume_s": again.seconds["total"],
        "resumed_skipped": len(again.skipped),
        "shards": run.n_shards,
        "max_abs_diff": err,
    }


CHILDREN = {"probe": _child_probe, "rss": _child_rss, "throughput": _child_throughput, "direct": _child_direct}


# ----------------------------------------------------------------------------- the parent


def _env(devices: int | None, forced: bool, cache: str | None = None) -> dict[str, str]:
    """The children's environment: ``devices`` forced host devices when ``forced``, no GPU preallocation,
    and every compile kept in the persistent cache folder ``cache`` when given (however small or quick)."""
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false", PYTHONUNBUFFERED="1")
    if cache is not None:
        env.update(
            JAX_COMPILATION_CACHE_DIR=cache,
            JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
            JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        )
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    if forced and devices:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    env["XLA_FLAGS"] = " ".join(flags)
    return env


def run_child(kind: str, job: dict, *, env: dict[str, str], timeout: float) -> dict:
    """``CHILDREN[kind](job)`` in a fresh process group, killed whole after ``timeout`` seconds.

    Returns the child's result, or ``{"error": ...}`` for a failure or a timeout (the bench goes on).
    """
    cmd = [sys.executable, __file__, "--child", kind, json.dumps(job)]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: a chatty child (Ray) never blocks
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True,
                                start_new_session=True)  # fmt: skip
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return {"error": f"timed out after {timeout:.0f} s", "wall_s": time.perf_counter() - t0}
        finally:
            _kill_group(proc)  # what the child left behind (Ray's processes), never anything else
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read().strip().splitlines()[-3:]
            return {"error": f"exit {proc.returncode}: {' | '.join(tail)}", "wall_s": time.perf_counter() - t0}
    result = json.loads(out.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - t0
    return result


def _kill_group(proc: subprocess.Popen) -> None:
    """Ends the process group this bench started for ``proc`` (its own id), if anything is left in it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def write_images(folder: Path, sizes: list[int]) -> dict[int, str]:
    """``max(sizes)`` shapes images generated block by block into one ``.npy``, and a ``.npy`` of the first
    ``n`` of them for each other size; ``{n: path}``."""
    from models.datasets import SHAPES_SIZE, generate_shapes

    total = max(sizes)
    big = folder / f"shapes_{total}.npy"
    x = np.lib.format.open_memmap(big, mode="w+", dtype=np.float32, shape=(total, SHAPES_SIZE, SHAPES_SIZE, 3))
    rng = np.random.default_rng(SEED)  # one generator across blocks: the same seed gives the same file
    for start in range(0, total, GENERATE_BLOCK):
        n = min(GENERATE_BLOCK, total - start)
        block = n + (-n % 4)  # generate_shapes balances the 4 classes
        x[start : start + n] = generate_shapes(block, rng).x[:n]
    x.flush()
    paths = {total: str(big)}
    for n in sorted(set(sizes) - {total}):
        path = folder / f"shapes_{n}.npy"
        np.save(path, x[:n])
        paths[n] = str(path)
    del x
    return paths


def device_rows(probe: dict) -> list[tuple[str, int | None, bool]]:
    """``(engine, devices, forced)`` per throughput row: forced host devices on CPU, the real ones elsewhere."""
    if probe["platform"] == "cpu":
        rows = [("local", n, True) for n in FORCED_DEVICES]
    else:
        rows = [("local", n, False) for n in sorted({1, probe["count"]})]
    return rows + [("ray", None, False)]


def ray_workers(probe: dict) -> int:
    """2 workers; on an accelerator no more than its devices (each worker claims one)."""
    return RAY_WORKERS if probe["platform"] == "cpu" else max(1, min(RAY_WORKERS, probe["count"]))


def rss_part(paths: dict[int, str], sizes: Sizes, timeout: float) -> dict:
    """Part 1: the two streamed gradient runs and their peak RSS ratio."""
    small, big = sizes.rss
    job = {"method": METHODS["gradient"][0], "options": METHODS["gradient"][1], "batch": sizes.batch}
    env = _env(None, False)
    runs = {n: run_child("rss", {**job, "path": paths[n]}, env=env, timeout=timeout) for n in (small, big)}
    ratio = None
    if all("peak_rss_mib" in r for r in runs.values()):
        ratio = runs[big]["peak_rss_mib"] / runs[small]["peak_rss_mib"]
    return {"small": small, "big": big, "runs": {str(n): r for n, r in runs.items()}, "ratio": ratio}


def throughput_part(paths: dict[int, str], sizes: Sizes, probe: dict, timeout: float, tmp: Path) -> list[dict]:
    """Part 2: one row per method and device setting, each with its own compilation cache under ``tmp``."""
    rows = []
    for label, (method, options) in METHODS.items():
        n = sizes.per_method[label]
        for engine, devices, forced in device_rows(probe):
            job = {
                "method": method, "options": options, "batch": sizes.batch, "engine": engine, "devices": devices,
                "workers": ray_workers(probe), "n": n, "path": paths[n], "one_shard": paths[sizes.batch],
            }  # fmt: skip
            where = f"{devices} device(s)" if engine == "local" else f"ray x{job['workers']} workers"
            print(f"  {label} {where} N={n} ...", file=sys.stderr, flush=True)
            cache = tmp / f"jax-cache-{len(rows)}"
            result = run_child("throughput", job, env=_env(devices, forced, str(cache)), timeout=timeout)
            rows.append({"method": label, "engine": engine, "devices": devices, "forced": forced, "n": n,
                         "workers": job["workers"] if engine == "ray" else None, **result})  # fmt: skip
    return rows


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(probe: dict, sizes: Sizes, rss: dict, rows: list[dict], direct: dict, load: tuple) -> str:
    """The report: device and load, then one table of every figure."""
    lines = [
        f"device: {probe['platform']} / {probe['device_kind']} x{probe['count']}; model {MODEL}; "
        f"batch_size {sizes.batch}; cpus {os.cpu_count()}",
        f"SHARED MACHINE: load average {load[0]:.1f} before, {load[1]:.1f} after (timings move with it)",
        "",
        f"{'part':<6} {'method':<9} {'where':<18} {'N':>6} {'img/s':>8} {'fwd img/s':>10} {'ratio':>7} "
        f"{'wait':>6}  note",
    ]
    for n in (rss["small"], rss["big"]):
        r = rss["runs"][str(n)]
        note = r.get("error") or (
            f"peak RSS {r['peak_rss_mib']:.0f} MiB (sampled peaks: anon {_fmt(r['peak_anon_mib'], '.0f')}, "
            f"file-backed {_fmt(r['peak_file_mib'], '.0f')} MiB); {r['seconds']:.1f} s, compile included"
        )
        img_s = n / r["seconds"] if "seconds" in r else None
        lines.append(
            f"{'rss':<6} {'gradient':<9} {'1 device':<18} {n:>6} {_fmt(img_s, '8.1f')} {'':>10} {'':>7} "
            f"{_fmt(r.get('wait_share'), '6.1%')}  {note}"
        )
    verdict = "-" if rss["ratio"] is None else ("meets" if rss["ratio"] <= RSS_TARGET else "MISSES")
    lines.append(
        f"{'rss':<6} peak RSS ratio {rss['big']:,} / {rss['small']:,} images = {_fmt(rss['ratio'], '.2f')} "
        f"(target <= {RSS_TARGET}: {verdict})"
    )
    for r in rows:
        where = f"ray x{r['workers']} workers" if r["engine"] == "ray" else f"{r['devices']} device(s)"
        where += " forced" if r["forced"] else ""
        ratio = r["img_s"] / r["forward_img_s"] if r.get("img_s") and r.get("forward_img_s") else None
        note = r.get("error") or f"run {r['seconds']['total']:.1f} s after a first shard of {r['first_shard_s']:.1f} s"
        lines.append(
            f"{'speed':<6} {r['method']:<9} {where:<18} {r['n']:>6} {_fmt(r.get('img_s'), '8.1f')} "
            f"{_fmt(r.get('forward_img_s'), '10.1f')} {_fmt(ratio, '7.4f')} {_fmt(r.get('wait_share'), '6.1%')}  {note}"
        )
    if "error" in direct:
        lines.append(f"{'direct':<6} IG-16: {direct['error']}")
    else:
        lines.append(
            f"{'direct':<6} IG-16 N={sizes.direct}: direct call {direct['direct_s']:.2f} s, attribute_dataset "
            f"{direct['batch_s']:.2f} s ({direct['shards']} shards, ratio {direct['batch_s'] / direct['direct_s']:.2f}), "
            f"resume {direct['resume_s']:.2f} s (skipped {direct['resumed_skipped']}/{direct['shards']}), "
            f"max |batch - direct| {direct['max_abs_diff']:.1e}"
        )
    lines.append(
        "img/s: the whole run after a first shard filled the compilation cache; ratio: img/s over forward-only "
        "img/s on the same source and devices; wait: BatchRun.wait_share (ray: worker-seconds summed)"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"smaller sizes ({QUICK.rss} for RSS)")
    parser.add_argument("--json", metavar="PATH", help="also write every figure to this JSON file")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per row (default 600, quick 300)")
    parser.add_argument("--rss-only", action="store_true", help="only the peak-RSS part (two subprocesses)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "JOB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child[0]](json.loads(args.child[1]))))
        return
    sizes = QUICK if args.quick else FULL
    timeout = args.timeout or (300.0 if args.quick else 600.0)
    load_before = os.getloadavg()[0]
    probe = run_child("probe", {}, env=_env(None, False), timeout=120)
    if "error" in probe:
        sys.exit(f"probing the device failed: {probe['error']}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        needed = [*sizes.rss, *sizes.per_method.values(), sizes.batch]
        paths = write_images(Path(tmp), needed)
        print(f"{max(needed):,} images written in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        rss = rss_part(paths, sizes, timeout)
        if args.rss_only:
            runs = {n: rss["runs"][str(n)].get("peak_rss_mib") for n in (rss["small"], rss["big"])}
            print(f"device {probe}; peak RSS MiB by N: {runs}; ratio {rss['ratio']} (target <= {RSS_TARGET})")
            return
        rows = throughput_part(paths, sizes, probe, timeout, Path(tmp))
    direct_job = {"method": "integrated_gradients", "options": {"steps": 16}, "n": sizes.direct, "batch": 32}
    direct = run_child("direct", direct_job, env=_env(None, False), timeout=timeout)
    load = (load_before, os.getloadavg()[0])
    print(table(probe, sizes, rss, rows, direct, load))
    print(f"bench wall time {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if args.json:
        record = {"device": probe, "sizes": dataclasses.asdict(sizes), "load_average": load, "rss": rss,
                  "throughput": rows, "direct": direct, "rss_target": RSS_TARGET}  # fmt: skip
        Path(args.json).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()

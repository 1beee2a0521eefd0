"""Peak memory of integrated gradients, each case in a fresh subprocess: ``python benchmarks/memory_bench.py``.

Cases (``shapes_cnn``, :func:`explain.saliency.integrated_gradients` with its defaults: zero baseline,
Gauss-Legendre, default ``memory_budget`` unless ``--memory-budget`` is given):

* ``ig50-256``: 50 steps on 256 images;
* ``ig50-4096``: 50 steps on 4,096 images; reported as a ratio of peak RSS to ``ig50-256`` (target ≤ 1.3):
  chunking must keep the working set flat in N (only the inputs and the maps themselves grow);
* ``ig5000-8``: 5,000 steps on 8 images (target < 1.5 GB): draws are chunked too;
* ``ig50-1024``: 50 steps on 1,024 images, a quicker proxy for the 4,096 case (no target).

Only the inputs and the maps (each ``N × 48 KiB`` for 64x64x3 float32) may grow with ``N``, so beside
the raw ratio each pair of ``ig50`` cases also gets the ratio of the peak *beyond* inputs and maps (1.0
when everything else is flat) and the raw ratio a flat working set would give (the smaller case's peak
plus the growth of inputs and maps, over that peak): the raw target is reachable only if this bound is.

The images come from the shapes dataset's own generator (:func:`models.datasets.generate_shapes`,
seeded; the shipped test split holds only 1,000), generated here in the parent and written to a
``.npy``, so each child holds its inputs once and no generation temporaries. Nothing is trained.

``--api batch`` runs the same cases through :func:`explain.batch.attribute_dataset` instead: the
``.npy`` path is its source (memory-mapped and read shard by shard, each shard's pages released after
it is copied) and the maps go to shard files in a temporary folder, so neither the inputs nor the maps
are held whole; there the 1.3 target applies to the raw ratio as it stands. ``--api direct`` (the
default) is the in-memory call, which returns all ``N`` maps and so must hold them.

Per case, printed: the child's whole-process peak RSS (``ru_maxrss`` from ``os.wait4``: imports,
model, inputs, the call), its RSS just before the call, and the peak during the call alone
(``VmHWM`` after resetting it through ``/proc/self/clear_refs`` where the kernel allows), with
the call's time and the largest completeness error. The 4,096 case takes several minutes on 2 cores:
pick cases with ``--cases``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name -> (images, IG steps)
CASES: dict[str, tuple[int, int]] = {
    "ig50-256": (256, 50),
    "ig50-4096": (4096, 50),
    "ig5000-8": (8, 5000),
    "ig50-1024": (1024, 50),
}
DEFAULT_CASES = ("ig50-256", "ig50-4096", "ig5000-8")  # the targets; the proxy only on request
RATIO_TARGET = 1.3
BIG_TARGET_BYTES = 1.5e9  # 1.5 GB = 1,430 MiB
SEED = 0


def _proc_status_mb(field: str) -> float | None:
    """``VmRSS`` / ``VmHWM`` of this process in MiB, or ``None`` without ``/proc``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Resets this process's ``VmHWM`` to its current RSS (Linux ``clear_refs`` value 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _direct(b, path: str, steps: int, memory_budget: int | None):
    """The in-memory call on the whole ``.npy``: ``(N, 64, 64, 3)`` maps held, ``(N,)`` deltas returned."""
    import jax
    import numpy as np

    from explain.saliency import integrated_gradients

    x = np.load(path)
    a = integrated_gradients(b, x, steps=steps, memory_budget=memory_budget)
    jax.block_until_ready(a.values)
    return x.shape[0], np.asarray(a.convergence_delta)


def _batch(b, path: str, steps: int, memory_budget: int | None):
    """``attribute_dataset`` from the ``.npy`` path to shard files in a temporary folder; ``(N,)`` deltas."""
    from explain.batch import attribute_dataset

    with tempfile.TemporaryDirectory() as out:
        run = attribute_dataset(
            b, path, method="integrated_gradients", out_dir=out, options={"steps": steps}, memory_budget=memory_budget
        )
        return len(run.rows()), run.convergence_delta()


def child(path: str, steps: int, memory_budget: int | None, api: str) -> None:
    """Runs one case and prints one JSON line; the parent reads this process's peak RSS from ``os.wait4``."""
    import numpy as np

    import models

    b = models.load("shapes_cnn")  # the model only: the dataset's splits are never generated here
    input_mb = np.load(path, mmap_mode="r").nbytes / 2**20
    before = _proc_status_mb("VmRSS")
    reset = _reset_peak()
    t0 = time.perf_counter()
    n, delta = (_direct if api == "direct" else _batch)(b, path, steps, memory_budget)
    seconds = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "n": int(n),
                "steps": steps,
                "seconds": seconds,
                "rss_before_call_mb": before,
                "call_peak_mb": _proc_status_mb("VmHWM") if reset else None,
                "input_mb": input_mb,
                # what the call must hold whole: the inputs and the maps in memory, nothing when streamed
                "held_mb": 2 * input_mb if api == "direct" else 0.0,
                "max_abs_delta": float(np.abs(delta).max()),
            }
        )
    )


def images(n: int, folder: Path) -> Path:
    """``n`` shapes images from the dataset's generator, saved to ``folder``; the path of the ``.npy``."""
    import numpy as np

    from models.datasets import generate_shapes

    path = folder / f"shapes_{n}.npy"
    np.save(path, generate_shapes(n, np.random.default_rng(SEED)).x)
    return path


def run_case(path: Path, steps: int, memory_budget: int | None, api: str) -> dict:
    """One case in a fresh Python process; its own result line plus its peak RSS in MiB."""
    cmd = [sys.executable, __file__, "--child", str(path), str(steps), "--api", api]
    if memory_budget is not None:
        cmd += ["--memory-budget", str(memory_budget)]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: a chatty child never blocks on a full pipe
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
        out = proc.stdout.read()
        # os.wait4 reports this child's own rusage (RUSAGE_CHILDREN is the maximum over all children so far).
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"case {cmd[2:]} failed with exit code {proc.returncode}:\n{err.read()[-4000:]}")
    r = json.loads(out.strip().splitlines()[-1])
    r["peak_rss_mb"] = usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux
    r["wall_s"] = time.perf_counter() - t0
    return r


def describe(name: str, r: dict) -> str:
    call = "n/a" if r["call_peak_mb"] is None else f"{r['call_peak_mb']:.0f} MiB"
    return (
        f"{name:<10} N={r['n']:<5} steps={r['steps']:<5} peak RSS {r['peak_rss_mb']:7.0f} MiB"
        f"  (before the call {r['rss_before_call_mb']:.0f} MiB, inputs {r['input_mb']:.1f} MiB; peak during the call {call})"
        f"  call {r['seconds']:.1f} s, process {r['wall_s']:.1f} s, max |δ| {r['max_abs_delta']:.2e}"
    )


def beyond_inherent(r: dict) -> float:
    """Peak RSS less what the call must hold whole (direct: inputs and maps; batch: nothing), in MiB."""
    return r["peak_rss_mb"] - r["held_mb"]


def growth(small: dict, big: dict, *, target: bool) -> str:
    """The raw peak RSS ratio of ``big`` to ``small`` (with the target's verdict if ``target``),
    the ratio of their peaks beyond inputs and maps, and the raw ratio a flat working set would give."""
    ratio = big["peak_rss_mb"] / small["peak_rss_mb"]
    verdict = f" (target <= {RATIO_TARGET}: {'meets' if ratio <= RATIO_TARGET else 'MISSES'})" if target else ""
    flat = (small["peak_rss_mb"] + big["held_mb"] - small["held_mb"]) / small["peak_rss_mb"]
    return (
        f"peak RSS ratio {big['n']:,} / {small['n']:,} images: {ratio:.2f}{verdict}; beyond what is held whole "
        f"{beyond_inherent(big):.0f} / {beyond_inherent(small):.0f} MiB = {beyond_inherent(big) / beyond_inherent(small):.2f}"
        f" (1.00 = flat); a flat working set would give a raw ratio of {flat:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases", default=",".join(DEFAULT_CASES), help=f"comma-separated, of {list(CASES)} (default {DEFAULT_CASES})"
    )
    parser.add_argument(
        "--memory-budget", type=int, default=None, help="bytes (default explain.chunking.MEMORY_BUDGET)"
    )
    parser.add_argument(
        "--api",
        choices=("direct", "batch"),
        default="direct",
        help="direct: integrated_gradients on the array in memory (default); batch: attribute_dataset from the .npy",
    )
    parser.add_argument("--child", nargs=2, metavar=("NPY", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], int(args.child[1]), args.memory_budget, args.api)
    names = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; expected some of {list(CASES)}")

    from explain import chunking

    budget = chunking.check_budget(args.memory_budget)
    call = "integrated_gradients" if args.api == "direct" else "attribute_dataset(method='integrated_gradients')"
    print(f"shapes_cnn, {call}, memory_budget {budget / 2**20:.0f} MiB, cpus {os.cpu_count()}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        # One set of generated images, the largest needed; every case takes its first N.
        n_max = max(CASES[c][0] for c in names)
        big = images(n_max, Path(tmp))
        for name in names:
            n, steps = CASES[name]
            path = big
            if n != n_max:
                import numpy as np

                path = Path(tmp) / f"first_{n}.npy"
                np.save(path, np.load(big, mmap_mode="r")[:n])
            results[name] = run_case(path, steps, args.memory_budget, args.api)
            print(describe(name, results[name]), flush=True)
    for big_name in ("ig50-1024", "ig50-4096"):
        if "ig50-256" in results and big_name in results:
            print(growth(results["ig50-256"], results[big_name], target=big_name == "ig50-4096"))
    if "ig5000-8" in results:
        peak = results["ig5000-8"]["peak_rss_mb"]
        verdict = "meets" if peak * 2**20 < BIG_TARGET_BYTES else "MISSES"
        print(f"IG 5,000 steps on 8 images: peak RSS {peak * 2**20 / 1e9:.2f} GB (target < 1.5 GB: {verdict})")
    return None


if __name__ == "__main__":
    main()

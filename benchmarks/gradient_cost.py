"""Gradient cost as a ratio to the forward pass, per shipped model: ``python benchmarks/gradient_cost.py``.

    .venv/bin/python benchmarks/gradient_cost.py [--models shapes_cnn] [--batch 32] [--malloc tuned]
    .venv/bin/python benchmarks/gradient_cost.py --models shapes_cnn --malloc compare [--rounds 3]
    .venv/bin/python benchmarks/gradient_cost.py --models shapes_cnn --first-call

For each model at batch 32 (override with --batch): compile time of the forward and of the
input gradient, then the median of --repeats warm calls of each (called in turn), and their
ratio, all measured in one run. Reverse mode should cost a small constant times the forward
pass (about 3× in FLOPs). Beside wall time: process CPU time (all threads) and minor page
faults per call, which a loaded machine disturbs far less.

``--malloc`` picks the allocator settings: ``tuned`` (what the entry points apply,
:func:`explain.runtime.tune_malloc`), ``system`` (glibc's defaults), ``tcmalloc`` (the script
restarts itself with it preloaded), or ``compare``: all three (tcmalloc where the machine has
it, :func:`explain.runtime.find_tcmalloc`), each in its own fresh process, alternating for
--rounds rounds, medians over the rounds.

``--first-call``: the first call in a fresh process (model loaded, nothing compiled) of the
gradient and of IG with 32 steps, each in its own process: with the persistent compilation
cache off, with an empty one (cold) and with the one that run filled (warm).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explain import runtime  # noqa: E402  (imports no JAX)

ALLOCATORS = ("system", "tuned", "tcmalloc")
FIRST_CALL_METHODS = {"gradient": ("vanilla_gradient", {}), "IG-32": ("integrated_gradients", {"steps": 32})}


def _child(args: list[str], env: dict[str, str] | None = None) -> dict:
    """Runs this script with ``args`` in a fresh process and returns the JSON object it prints last."""
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True, env=env or os.environ.copy()
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(name: str, batch: int, repeats: int) -> dict:
    """Compile times, then warm medians of the forward pass and the input gradient, called in turn."""
    import jax
    import numpy as np

    import models
    from benchmarks._timing import call_seconds, interleaved_costs
    from explain.gradients import prepare, target_and_grad

    # Compiled here once per model (the apply function is static). The forward pass is this module's own
    # function, not explain.gradients.forward_outputs: prepare() has already compiled that one for the same
    # shape (freezing the predicted class), and its compile time would read as ~0.
    forward_fn = jax.jit(lambda apply, params, x: apply(params, x), static_argnums=0)
    grad_fn = jax.jit(target_and_grad, static_argnums=0)  # the public chain-rule primitive

    bundle = models.load(name)
    p = prepare(bundle.model, np.asarray(bundle.dataset.test.x[:batch]))  # target: the predicted class, frozen
    model, x = p.model, jax.device_put(p.x)

    def fwd():
        return forward_fn(model.apply, model.params, x)

    def grad():
        return grad_fn(model.apply, model.params, x, p.target)

    fwd_compile = call_seconds(fwd)
    grad_compile = call_seconds(grad)
    interleaved_costs({"fwd": fwd, "grad": grad}, 5)  # warm-up: the allocator reaches its steady state
    c = interleaved_costs({"fwd": fwd, "grad": grad}, repeats)
    return {
        "model": name,
        "forward_ms": c["fwd"].wall_s * 1e3,
        "grad_ms": c["grad"].wall_s * 1e3,
        "ratio": c["grad"].wall_s / c["fwd"].wall_s,
        "forward_cpu_ms": c["fwd"].cpu_s * 1e3,
        "grad_cpu_ms": c["grad"].cpu_s * 1e3,
        "cpu_ratio": c["grad"].cpu_s / c["fwd"].cpu_s,
        "grad_faults": c["grad"].faults,
        "compile_fwd_s": fwd_compile,
        "compile_grad_s": grad_compile,
    }


def first_call(name: str, batch: int, method: str) -> dict:
    """Seconds of the first and the second call of one registry method, in this (fresh) process."""
    import numpy as np

    import models
    from benchmarks._timing import call_seconds
    from explain.saliency import registry

    method_name, options = FIRST_CALL_METHODS[method]
    bundle = models.load(name)
    x = np.asarray(bundle.dataset.test.x[:batch])

    def run():
        return registry.call(method_name, bundle.model, x, **options).values

    return {"model": name, "method": method, "first_s": call_seconds(run), "second_s": call_seconds(run)}


def _print_rows(rows: list[dict], label: str = "") -> None:
    for r in rows:
        print(
            f"{r['model']:<20} {label:<7} {r['forward_ms']:>9.2f} {r['grad_ms']:>9.2f} {r['ratio']:>8.2f}"
            f" {r['forward_cpu_ms']:>8.2f} {r['grad_cpu_ms']:>8.2f} {r['cpu_ratio']:>8.2f} {r['grad_faults']:>12.0f}"
            f" {r['compile_fwd_s']:>8.2f} {r['compile_grad_s']:>8.2f}"
        )


HEADER = (
    f"{'model':<20} {'malloc':<7} {'fwd ms':>9} {'grad ms':>9} {'grad/fwd':>8} {'fwd cpu':>8} {'grad cpu':>8}"
    f" {'cpu g/f':>8} {'grad faults':>12} {'cmp fwd':>8} {'cmp grad':>8}"
)


def compare(models_: list[str], batch: int, repeats: int, rounds: int) -> None:
    """Each allocator setting in its own fresh process, alternating; medians over the rounds."""
    print(f"batch {batch}, median of {repeats} warm calls per process, median of {rounds} processes per row")
    print("ms: wall and process-CPU milliseconds per call; faults: minor page faults per gradient call")
    print(HEADER)
    for name in models_:
        runs: dict[str, list[dict]] = {a: [] for a in ALLOCATORS if a != "tcmalloc" or runtime.find_tcmalloc()}
        for _ in range(rounds):
            for allocator in runs:
                args = ["--models", name, "--batch", str(batch), "--repeats", str(repeats), "--malloc", allocator]
                runs[allocator].append(_child([*args, "--json"], runtime.allocator_env(allocator)))
        for allocator, rs in runs.items():
            row = {k: statistics.median(r[k] for r in rs) for k in rs[0] if k != "model"}
            _print_rows([{"model": name, **row}], allocator)


def first_calls(models_: list[str], batch: int) -> None:
    """First-call seconds per method: cache off, cold (empty folder) and warm (the folder the cold run filled)."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    print(f"batch {batch}; seconds of the first call in a fresh process (the model loaded), then of the second")
    print(f"{'model':<20} {'method':<9} {'cache':<6} {'first s':>8} {'second s':>9}")
    for name in models_:
        for method in FIRST_CALL_METHODS:
            with tempfile.TemporaryDirectory(prefix="jax-cache-") as folder:
                for cache, value in (("off", ""), ("cold", folder), ("warm", folder)):
                    args = ["--models", name, "--batch", str(batch), "--first-call-child", method]
                    r = _child(args, {**env, runtime.CACHE_ENV: value})
                    print(f"{name:<20} {method:<9} {cache:<6} {r['first_s']:>8.2f} {r['second_s']:>9.3f}")


def main() -> None:
    import models

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--models", default=",".join(sorted(models.SPECS)))
    parser.add_argument("--malloc", choices=(*ALLOCATORS, "compare"), default="tuned")
    parser.add_argument("--rounds", type=int, default=3, help="processes per allocator setting with --malloc compare")
    parser.add_argument("--first-call", action="store_true", help="first-call seconds with the compilation cache")
    parser.add_argument("--first-call-child", choices=FIRST_CALL_METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = args.models.split(",")
    if args.first_call_child:  # a fresh process of --first-call: tuned malloc and the cache its parent chose
        runtime.configure()
        print(json.dumps(first_call(names[0], args.batch, args.first_call_child)))
        return
    if args.first_call:
        first_calls(names, args.batch)
        return
    if args.malloc == "compare":
        compare(names, args.batch, args.repeats, args.rounds)
        return
    applied = runtime.use_allocator(args.malloc, [__file__, *sys.argv[1:]])  # tcmalloc: restarts under it
    rows = [measure(name, args.batch, args.repeats) for name in names]
    if args.json:
        print(json.dumps(rows[0]))
        return
    import jax

    print(f"device: {jax.devices()[0].device_kind}, batch {args.batch}, median of {args.repeats}, malloc {applied}")
    print(HEADER)
    _print_rows(rows, args.malloc)


if __name__ == "__main__":
    main()

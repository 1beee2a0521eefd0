"""Load test of ``python -m explain serve``: throughput, latency, memory, batching on vs off, overload.

Run from the repository root (it starts and stops its own servers on free loopback ports):

    .venv/bin/python benchmarks/serve_load.py            # the full run (issue 13's acceptance figures)
    .venv/bin/python benchmarks/serve_load.py --quick    # a short run: fewer requests, shorter cells

Two servers of ``--model`` (default ``shapes_cnn``), both started with ``--warmup`` so compilation stays out
of the figures: one with dynamic batching (``--max-batch 32``), one without (``--max-batch 1``). An async
httpx client sends one instance per request (base64 ``.npy`` in and out, the Python client's encoding) at
concurrency 1, 8 and 32, for the gradient (``vanilla_gradient``) and IG with 32 steps; each cell stops after
``--cell-requests`` requests or ``--cell-seconds``, whichever comes first. Reported per cell: requests/s,
p50 and p99 latency, errors (anything but 200: must be 0), and from the server's ``/metrics`` the mean
requests per compiled call and the compilations during the cell (0: every bucket was compiled before).

Then, on the batching server:
- memory: the server's resident set size after the cells (every shape compiled) and after ``--requests``
  more gradient requests (target: flat within 10%), sampled after each quarter;
- a malformed request amid load: every 9th request of 9 workers holds NaN; those must get 422 and the
  valid ones no error;
- overload: ``--overload-factor`` × ``--max-queue`` concurrent IG requests at once: only 200s, 503s (with
  Retry-After) and 504s (the server's deadline, on a slow machine), at least one 503, no exception or client
  timeout, the process alive, and a normal answer afterwards.

Targets (issue 13): errors 0; memory flat within 10%; batching on/off throughput ratio at concurrency 32 of
at least 3× for the gradient. The exit status is 1 when a hard check (errors, 422s, overload) fails.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explain.client import encode_instances  # noqa: E402

STARTUP_S = 900  # warm-up compiles every default method at every bucket: minutes on 2 CPU cores
REQUEST_S = 120  # the client's timeout per request: a hang shows as an error, never as a stuck run
CONCURRENCY = (1, 8, 32)
JSON = {"content-type": "application/json"}
METHODS = {"vanilla_gradient": {}, "integrated_gradients": {"steps": 32}}


# ----------------------------------------------------------------------------- server process


def free_port() -> int:
    """A loopback port nobody listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident set size of process ``pid`` in MiB (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@dataclasses.dataclass
class Server:
    """A ``python -m explain serve`` subprocess on a free loopback port; its log in a temporary file."""

    name: str
    process: subprocess.Popen
    url: str
    log: Path
    max_batch: int

    @classmethod
    def start(cls, name: str, model: str, max_batch: int, *flags: str) -> Server:
        port = free_port()
        log = Path(tempfile.mkstemp(prefix=f"serve_{name}_", suffix=".log")[1])
        argv = [sys.executable, "-m", "explain", "serve", "--model", model, "--port", str(port), "--warmup"]
        argv += ["--max-batch", str(max_batch), *flags]
        print(f"starting {name}: {' '.join(argv[1:])}", flush=True)
        with log.open("wb") as out:
            process = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        return cls(name, process, f"http://127.0.0.1:{port}", log, max_batch)

    def wait_ready(self) -> float:
        """Seconds until ``/readyz`` answers 200; raises with the log's tail if the process dies or is late."""
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < STARTUP_S:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} not ready after {STARTUP_S} s:\n{self.tail()}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def rss(self) -> float:
        return rss_mib(self.process.pid)

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> int:
        """SIGTERM (graceful: in-flight requests finish), then SIGKILL after 30 s; the exit status."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


# ----------------------------------------------------------------------------- load


@dataclasses.dataclass
class Cell:
    """One load cell's outcome: latencies of the 200s (seconds), every status seen, exceptions, wall time."""

    latencies: list[float]
    statuses: Counter
    exceptions: Counter
    wall: float

    @property
    def done(self) -> int:
        return sum(self.statuses.values()) + sum(self.exceptions.values())

    @property
    def errors(self) -> int:
        return self.done - self.statuses[200]

    def rate(self) -> float:
        return self.statuses[200] / self.wall if self.wall > 0 else 0.0

    def ms(self, q: float) -> float:
        return 1e3 * float(np.percentile(self.latencies, q)) if self.latencies else float("nan")


def explain_body(x: np.ndarray, method: str, options: dict) -> bytes:
    """One request body, encoded once: the client's encoding of ``x`` and the method's options."""
    body = {"instances": encode_instances(x), "parameters": {"method": method, "output": "npy", **options}}
    return json.dumps(body).encode()


def nan_body(x: np.ndarray) -> bytes:
    """A malformed request: NaN inputs as ``.npy`` (the client refuses NaN itself; the server must answer 422)."""
    buf = io.BytesIO()
    np.save(buf, np.full_like(x, np.nan), allow_pickle=False)
    body = {
        "instances": {"npy_b64": base64.b64encode(buf.getvalue()).decode()},
        "parameters": {"method": "vanilla_gradient"},
    }
    return json.dumps(body).encode()


async def load(
    url: str,
    body: Callable[[int], bytes],
    *,
    concurrency: int,
    requests: int,
    seconds: float,
    all_at_once: bool = False,
) -> Cell:
    """``concurrency`` workers send ``body(i)`` for request ``i`` until ``requests`` were sent or ``seconds``
    passed (``all_at_once``: exactly ``concurrency`` requests, started together)."""
    cell = Cell([], Counter(), Counter(), 0.0)
    sent = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=REQUEST_S) as client:
        t0 = time.perf_counter()

        async def one(i: int) -> None:
            t = time.perf_counter()
            try:
                r = await client.post(url, content=body(i), headers=JSON)
            except httpx.HTTPError as e:
                cell.exceptions[type(e).__name__] += 1
                return
            cell.statuses[r.status_code] += 1
            if r.status_code == 200:
                cell.latencies.append(time.perf_counter() - t)
            elif r.status_code == 503 and "retry-after" not in r.headers:
                cell.exceptions["503 without Retry-After"] += 1

        async def worker() -> None:
            nonlocal sent
            while sent < requests and time.perf_counter() - t0 < seconds:
                sent += 1
                await one(sent - 1)

        if all_at_once:
            await asyncio.gather(*(one(i) for i in range(concurrency)))
        else:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        cell.wall = time.perf_counter() - t0
    return cell


def run(coro) -> Cell:
    return asyncio.run(coro)


# ----------------------------------------------------------------------------- report


_COUNTED = ("explain_batch_requests_sum", "explain_batch_requests_count", "explain_compiles_total")


def counters(url: str) -> Counter:
    """The server's batch and compile counters from ``/metrics``, summed over labels."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: Counter = Counter()
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=30).text):
        for sample in family.samples:
            if sample.name in _COUNTED:
                totals[sample.name] += sample.value
    return totals


def row(server: str, method: str, concurrency: int, cell: Cell, delta: Counter) -> str:
    calls = delta["explain_batch_requests_count"]
    per_call = delta["explain_batch_requests_sum"] / calls if calls else float("nan")
    return (
        f"{server:<12} {method:<33} {concurrency:>5} {cell.done:>8} {cell.rate():>9.1f} {cell.ms(50):>8.1f} "
        f"{cell.ms(99):>8.1f} {cell.errors:>7} {per_call:>9.1f} {int(delta['explain_compiles_total']):>9}"
    )


HEADER = (
    f"{'server':<12} {'method':<33} {'conc':>5} {'requests':>8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
    f"{'errors':>7} {'req/call':>9} {'compiles':>9}"
)


def model_input(url: str, model: str, seed: int = 0) -> np.ndarray:
    """One random instance ``(1, *input_shape)`` in the model's value range, from ``GET /v1/models/<model>``."""
    info = httpx.get(f"{url}/v1/models/{model}", timeout=30).json()
    lo, hi = info.get("value_range") or (0.0, 1.0)
    return np.random.default_rng(seed).uniform(lo, hi, size=(1, *info["input_shape"])).astype(np.float32)


def prewarm(endpoint: str, x: np.ndarray, method: str, options: dict, max_batch: int) -> None:
    """Compiles ``method`` with these options at every bucket (powers of two up to ``max_batch``) before timing:
    ``--warmup`` compiles the server's default options only. One request of ``b`` instances runs alone as a
    batch of ``b`` rows."""
    for b in (2**i for i in range(max_batch.bit_length())):
        body = explain_body(np.repeat(x, b, axis=0), method, options)
        r = httpx.post(endpoint, content=body, headers=JSON, timeout=STARTUP_S)
        if r.status_code != 200:
            raise RuntimeError(f"warm-up of {method} at {b} rows failed: {r.status_code} {r.text[:300]}")


def cells(server: Server, model: str, x: np.ndarray, args: argparse.Namespace, concurrency: tuple[int, ...]) -> dict:
    """Every (method, concurrency) cell on ``server``, printed as they finish."""
    results = {}
    endpoint = f"{server.url}/v1/models/{model}:explain"
    for method, options in METHODS.items():
        body = explain_body(x, method, options)
        prewarm(endpoint, x, method, options, server.max_batch)
        for c in concurrency:
            before = counters(server.url)
            cell = run(
                load(
                    endpoint, lambda i, b=body: b, concurrency=c, requests=args.cell_requests, seconds=args.cell_seconds
                )
            )
            delta = counters(server.url)
            delta.subtract(before)
            results[method, c] = cell
            label = f"{method} ({options['steps']} steps)" if options else method
            print(row(server.name, label, c, cell, delta), flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shapes_cnn")
    parser.add_argument(
        "--quick", action="store_true", help="a short run: 200 requests or 10 s per cell, 1,000 for memory"
    )
    parser.add_argument("--requests", type=int, default=None, help="requests for the memory line (default 10,000)")
    parser.add_argument("--cell-requests", type=int, default=None, help="requests per cell at most (default 2,000)")
    parser.add_argument("--cell-seconds", type=float, default=None, help="seconds per cell at most (default 60)")
    parser.add_argument("--max-queue", type=int, default=256, help="both servers' --max-queue")
    parser.add_argument("--overload-factor", type=int, default=4, help="overload sends this many × --max-queue at once")
    args = parser.parse_args()
    quick = {"requests": 1000, "cell_requests": 200, "cell_seconds": 10.0}
    full = {"requests": 10_000, "cell_requests": 2000, "cell_seconds": 60.0}
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    print(f"cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}, model {args.model}", flush=True)

    ok = True
    queue = ("--max-queue", str(args.max_queue))
    on = Server.start("batching", args.model, 32, *queue)
    off = None
    try:
        print(f"batching server ready in {on.wait_ready():.1f} s", flush=True)
        x = model_input(on.url, args.model)
        ready_rss = on.rss()
        print(HEADER)
        batched = cells(on, args.model, x, args, CONCURRENCY)

        # Memory: --requests more gradient requests at concurrency 32, from after the cells (which compile IG
        # with 32 steps at every bucket: new executables, not a leak).
        start_rss = on.rss()
        endpoint = f"{on.url}/v1/models/{args.model}:explain"
        grad = explain_body(x, "vanilla_gradient", {})
        trajectory, parts = [start_rss], []
        for _ in range(4):  # RSS after each quarter: a plateau or a steady climb
            parts.append(run(load(endpoint, lambda i: grad, concurrency=32, requests=args.requests // 4, seconds=300)))
            trajectory.append(on.rss())
        memory = Cell(
            [t for p in parts for t in p.latencies],
            sum((p.statuses for p in parts), Counter()),
            sum((p.exceptions for p in parts), Counter()),
            sum(p.wall for p in parts),
        )
        end_rss = trajectory[-1]

        # A malformed request amid load: every 9th request is NaN.
        bad = nan_body(x)
        mixed = run(load(endpoint, lambda i: bad if i % 9 == 8 else grad, concurrency=9, requests=270, seconds=120))

        # Overload: far more concurrent requests than the queue holds, all at once.
        ig = explain_body(x, "integrated_gradients", METHODS["integrated_gradients"])
        n_over = args.overload_factor * args.max_queue
        over = run(load(endpoint, lambda i: ig, concurrency=n_over, requests=n_over, seconds=600, all_at_once=True))
        after = run(load(endpoint, lambda i: grad, concurrency=1, requests=3, seconds=60))
        alive = on.alive()
        on_rc = on.stop()

        off = Server.start("no batching", args.model, 1, *queue)
        print(f"no-batching server ready in {off.wait_ready():.1f} s", flush=True)
        unbatched = cells(off, args.model, x, args, (max(CONCURRENCY),))
        off_rc = off.stop()

        print()
        c = max(CONCURRENCY)
        for method in METHODS:
            r_on, r_off = batched[method, c].rate(), unbatched[method, c].rate()
            ratio = r_on / r_off if r_off else float("nan")
            target = " (target >= 3x)" if method == "vanilla_gradient" else ""
            print(
                f"batching on/off at concurrency {c}, {method}: {r_on:.1f} / {r_off:.1f} req/s = {ratio:.2f}x{target}"
            )
        growth = (end_rss - start_rss) / start_rss
        print(
            f"memory: RSS {ready_rss:.0f} MiB when ready, {start_rss:.0f} MiB after the cells, {end_rss:.0f} MiB "
            f"after {memory.done} more requests "
            f"({growth:+.1%}; flat within 10%: {'yes' if abs(growth) <= 0.10 else 'NO'}); errors {memory.errors}; "
            f"by quarter {' -> '.join(f'{r:.0f}' for r in trajectory)} MiB"
        )
        bad_sent = sum(1 for i in range(mixed.done) if i % 9 == 8)
        print(f"malformed amid load: statuses {dict(mixed.statuses)} (expected {bad_sent} x 422, the rest 200)")
        print(
            f"overload: {n_over} concurrent IG requests, --max-queue {args.max_queue}: statuses {dict(over.statuses)}, "
            f"exceptions {dict(over.exceptions) or 'none'}, wall {over.wall:.1f} s; server alive {alive}; "
            f"afterwards {dict(after.statuses)}"
        )
        print(f"exit status on SIGTERM: batching {on_rc}, no batching {off_rc}")

        errors = sum(cl.errors for cl in (*batched.values(), *unbatched.values(), memory, after))
        overload_ok = set(over.statuses) <= {200, 503, 504} and not over.exceptions and over.statuses[503] > 0
        mixed_ok = mixed.statuses[422] == bad_sent and mixed.statuses[200] == mixed.done - bad_sent
        ok = errors == 0 and overload_ok and mixed_ok and alive and 0 == on_rc == off_rc
        print(
            f"hard checks: errors {errors}, overload {'ok' if overload_ok else 'FAILED'}, "
            f"malformed {'ok' if mixed_ok else 'FAILED'}: {'pass' if ok else 'FAIL'}"
        )
    finally:
        for s in (on, off):
            if s is not None and s.alive():
                s.stop()
            if s is not None and ok:
                s.log.unlink()
            elif s is not None:
                print(f"{s.name} server log: {s.log}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

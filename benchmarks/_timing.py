"""Timers shared by the benchmark scripts: one call waited for, the median of warm calls, and interleaved costs."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax


class Cost(NamedTuple):
    """Medians over the timed calls of one function: wall seconds, process CPU seconds (all threads), page faults.

    CPU time and minor page faults barely move when other processes share the cores, so on a
    loaded machine they show an allocator's effect that wall time buries in noise.
    """

    wall_s: float
    cpu_s: float
    faults: float


def call_seconds(fn: Callable[[], Any]) -> float:
    """Seconds for one ``fn()`` until its result is ready; a jitted function's first call includes its compile."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Median of ``repeats`` :func:`call_seconds` (warm the function up first)."""
    return statistics.median(call_seconds(fn) for _ in range(repeats))


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def call_cost(fn: Callable[[], Any]) -> Cost:
    """One ``fn()`` until its result is ready: wall seconds, process CPU seconds and minor page faults."""
    f0, c0, t0 = _minor_faults(), time.process_time(), time.perf_counter()
    jax.block_until_ready(fn())
    return Cost(time.perf_counter() - t0, time.process_time() - c0, _minor_faults() - f0)


def interleaved_costs(fns: Mapping[str, Callable[[], Any]], repeats: int) -> dict[str, Cost]:
    """Median :class:`Cost` of each warm function, called in turn ``repeats`` times so load changes hit all alike."""
    runs: dict[str, list[Cost]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            runs[name].append(call_cost(fn))
    return {name: Cost(*(statistics.median(column) for column in zip(*costs))) for name, costs in runs.items()}

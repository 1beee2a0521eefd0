"""Timers shared by the benchmark scripts: one call waited for, and the median of warm calls."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import jax


def call_seconds(fn: Callable[[], Any]) -> float:
    """Seconds for one ``fn()`` until its result is ready; a jitted function's first call includes its compile."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Median of ``repeats`` :func:`call_seconds` (warm the function up first)."""
    return statistics.median(call_seconds(fn) for _ in range(repeats))

"""Prometheus metrics of one server, in a registry of its own (two apps in one process never clash).

* ``explain_requests_total{model, verb, status}``: every request answered, by HTTP status.
* ``explain_request_seconds{model, verb, method}``: latency of the model verbs, queueing included.
* ``explain_batch_rows{model, verb, method}``: rows per compiled call (before padding): above 1 when
  concurrent requests were merged.
* ``explain_batch_requests{model, verb, method}``: requests per call.
* ``explain_queue_depth``: requests waiting to run.
* ``explain_compiles_total``: XLA compilations in this process since the server started (from
  ``jax.monitoring``'s compile events); flat under load once every bucket is compiled.
"""

from __future__ import annotations

import dataclasses
import threading

import jax
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

# jax.monitoring listeners cannot be removed: one process-wide listener feeds every live Metrics.
_LISTENERS: list[Counter] = []
_LOCK = threading.Lock()
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def _on_event(event: str, duration: float, **kwargs) -> None:
    if event == _COMPILE_EVENT:
        with _LOCK:
            for counter in _LISTENERS:
                counter.inc()


jax.monitoring.register_event_duration_secs_listener(_on_event)


@dataclasses.dataclass
class Metrics:
    """The server's metrics; :meth:`text` renders them for ``GET /metrics``."""

    registry: CollectorRegistry = dataclasses.field(default_factory=CollectorRegistry)

    def __post_init__(self):
        r = self.registry
        self.requests = Counter("explain_requests", "Requests answered.", ["model", "verb", "status"], registry=r)
        self.latency = Histogram(
            "explain_request_seconds", "Latency of model verbs, queueing included.", ["model", "verb", "method"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_rows = Histogram(
            "explain_batch_rows", "Rows per compiled call (before padding).", ["model", "verb", "method"],
            buckets=_ROW_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_requests = Histogram(
            "explain_batch_requests", "Requests per compiled call.", ["model", "verb", "method"],
            buckets=_ROW_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge("explain_queue_depth", "Requests waiting to run.", registry=r)
        self.compiles = Counter("explain_compiles", "XLA compilations since the server started.", registry=r)
        with _LOCK:
            _LISTENERS.append(self.compiles)

    def close(self) -> None:
        """Stops counting compilations (the app has shut down)."""
        with _LOCK:
            if self.compiles in _LISTENERS:
                _LISTENERS.remove(self.compiles)

    def text(self) -> bytes:
        return generate_latest(self.registry)

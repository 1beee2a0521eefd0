"""What a server is allowed to do: batching, queue, deadline, body and per-method caps, the bearer token.

Plain data, no JAX and no FastAPI: the command line builds one from its flags before anything heavy is imported.
"""

from __future__ import annotations

import dataclasses
import math

# The per-request caps and the ``serve`` flag that raises each: every refusal names both.
CAPS = {
    "max_instances": "--max-instances",
    "max_steps": "--max-steps",
    "max_samples": "--max-samples",
    "max_rows_per_instance": "--max-rows-per-instance",
    "max_restarts": "--max-restarts",
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Server limits; every field has the command line's default.

    Attributes:
      max_batch: most rows in one compiled call; batches are padded up to the next power of two up to it
        (the buckets), so a served model compiles once per bucket. ``1`` turns batching off.
      max_delay_ms: how long the first request of a batch waits for others with the same model, verb,
        method and static options.
      max_queue: requests waiting to run (over every model) before new ones get ``503`` with ``Retry-After``.
      timeout_s: per-request deadline, queueing included; past it the request gets ``504`` and leaves the queue.
      max_body_bytes: larger bodies get ``413`` before they are parsed.
      max_instances: instances per request.
      max_steps: cap on ``steps``, ``start_steps`` and ``max_steps`` of path methods, and on the iterations
        (``steps``) of PGD and APGD: one cap for both, since either is that many gradient passes per row.
      max_samples: cap on ``n_samples`` (SmoothGrad, Expected Gradients, ...).
      max_rows_per_instance: cap on the model rows one instance costs in one call (the registry's ``cost``,
        e.g. IG's steps times a noise tunnel's samples), so option combinations cannot get round the caps.
      max_restarts: cap on attack restarts.
      token: the bearer token every endpoint but ``/healthz`` requires, or ``None`` (loopback only).
      warmup: compile each model's :attr:`warmup_methods` (and predict) at every bucket before ready.
      warmup_methods: the methods compiled by the warm-up (those a model cannot run are skipped).
      retry_after_s: the ``Retry-After`` of a ``503``.
    """

    max_batch: int = 32
    max_delay_ms: float = 5.0
    max_queue: int = 256
    timeout_s: float = 30.0
    max_body_bytes: int = 16 * 2**20
    max_instances: int = 256
    max_steps: int = 1024
    max_samples: int = 256
    max_rows_per_instance: int = 8192
    max_restarts: int = 10
    token: str | None = None
    warmup: bool = False
    warmup_methods: tuple[str, ...] = ("vanilla_gradient", "integrated_gradients")
    retry_after_s: int = 1

    def __post_init__(self):
        for name in ("max_batch", "max_queue", "max_body_bytes", *CAPS):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"expected Settings.{name} to be an int >= 1, got {getattr(self, name)!r}")
        if not (0 <= self.max_delay_ms < math.inf and 0 < self.timeout_s < math.inf):
            raise ValueError(
                f"expected max_delay_ms >= 0 and timeout_s > 0 (finite), got {self.max_delay_ms}, {self.timeout_s}"
            )
        if self.token is not None and not self.token:
            raise ValueError("expected a non-empty bearer token, or None for no token")

    @property
    def buckets(self) -> tuple[int, ...]:
        """The padded batch sizes: powers of two below :attr:`max_batch`, then :attr:`max_batch` itself."""
        sizes = [2**i for i in range(max(1, self.max_batch).bit_length()) if 2**i < self.max_batch]
        return (*sizes, self.max_batch)

    def bucket(self, rows: int) -> int:
        """The padded size of ``rows`` rows: the smallest bucket holding them, else a multiple of :attr:`max_batch`
        (a request larger than a batch runs alone, and still compiles a bounded number of shapes)."""
        for size in self.buckets:
            if rows <= size:
                return size
        return -(-rows // self.max_batch) * self.max_batch

    def over_cap(self, cap: str, what: str, value: int) -> str | None:
        """The refusal of ``what = value`` when it exceeds the cap ``cap`` (a key of :data:`CAPS`), else ``None``."""
        limit = getattr(self, cap)
        if value <= limit:
            return None
        return f"expected {what} <= {limit} (the server's cap; {CAPS[cap]} raises it), got {value}"

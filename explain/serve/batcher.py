"""Dynamic batching: concurrent requests that can share one compiled call are gathered, run once, split back.

Each request is submitted with a *group* (model, verb, method and static options; ``None`` for a request
that must run alone) and its number of rows. One worker task takes the oldest waiting request, waits at
most ``max_delay_s`` after its arrival for others of its group (or until ``max_batch`` rows are waiting),
takes the group's waiting requests in arrival order up to ``max_batch`` rows, and runs them as one call
of ``run(payloads) -> results`` on a single worker thread, never on the event loop. While that call runs,
new requests queue up, so under load the batches grow by themselves and the delay costs nothing.

Backpressure and cancellation: at most ``max_queue`` requests wait (a full queue raises
:class:`~explain.serve.errors.QueueFull` at once instead of growing); a request whose deadline passes, or
whose caller is cancelled (a client that disconnected), leaves the queue at once and frees its slot; one
already running finishes on the worker and its result is dropped. :meth:`Batcher.drain` refuses new
requests and returns once every admitted one is done: graceful shutdown finishes in-flight work.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
from collections.abc import Callable, Hashable
from typing import Any

from explain.serve.errors import DeadlineExceeded, QueueFull

Run = Callable[[list[Any]], list[Any]]


@dataclasses.dataclass(eq=False)
class _Pending:
    group: Hashable | None
    rows: int
    payload: Any
    future: asyncio.Future
    arrived: float


class Batcher:
    """Gathers requests of the same group into one call of ``run`` (see the module docstring).

    Args:
      run: ``run(payloads) -> results``, one result per payload, in order; a result that is an
        exception is raised to that request alone. Called on the worker thread.
      max_batch: most rows per call (a request with more rows runs alone).
      max_delay_s: longest wait for companions after a request arrives.
      max_queue: most requests waiting.
      retry_after_s: the ``Retry-After`` that a full queue answers.
      on_batch: called on the event loop with the payloads and the rows of every call made.
      on_depth: called on the event loop with the number of waiting requests whenever it changes.
    """

    def __init__(
        self,
        run: Run,
        *,
        max_batch: int,
        max_delay_s: float,
        max_queue: int,
        retry_after_s: int = 1,
        on_batch: Callable[[list[Any], int], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
    ):
        self._run = run
        self._max_batch, self._max_delay_s, self._max_queue = max_batch, max_delay_s, max_queue
        self._retry_after_s = retry_after_s
        self._on_batch = on_batch or (lambda payloads, rows: None)
        self._on_depth = on_depth or (lambda depth: None)
        self._waiting: list[_Pending] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._admitted = 0  # submit() calls not yet returned
        self._idle = asyncio.Event()
        self._worker: asyncio.Task | None = None
        # One thread: compiled calls run one after another (each already uses every core or the accelerator).
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="explain-serve")

    @property
    def depth(self) -> int:
        """Requests waiting to run (not those running)."""
        return len(self._waiting)

    def start(self) -> None:
        """Starts the worker task on the running event loop."""
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._loop(), name="explain-serve-batcher")

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the worker thread, between batches (the warm-up compiles there)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def submit(self, group: Hashable | None, rows: int, payload: Any, *, timeout_s: float) -> Any:
        """The result of ``payload``, run with others of its ``group`` (``None``: alone).

        Raises:
          QueueFull: ``max_queue`` requests already wait, or the server is shutting down.
          DeadlineExceeded: no result within ``timeout_s`` (the request has left the queue).
          Exception: the one ``run`` returned for this payload.
        """
        if self._closing:
            raise QueueFull("the server is shutting down; retry on another replica", self._retry_after_s)
        if len(self._waiting) >= self._max_queue:
            raise QueueFull(
                f"the queue is full ({self._max_queue} requests waiting); retry after the Retry-After seconds",
                self._retry_after_s,
            )
        loop = asyncio.get_running_loop()
        pending = _Pending(group, rows, payload, loop.create_future(), loop.time())
        self._waiting.append(pending)
        self._admitted += 1
        self._idle.clear()
        self._on_depth(self.depth)
        self._wake.set()
        try:
            # shield: a timeout or a cancelled caller must not cancel a future the worker may still resolve.
            return await asyncio.wait_for(asyncio.shield(pending.future), timeout_s)
        except TimeoutError:
            raise DeadlineExceeded(timeout_s) from None
        finally:
            self._forget(pending)
            self._admitted -= 1
            if not self._admitted:
                self._idle.set()

    def _forget(self, pending: _Pending) -> None:
        """Frees the slot of a request that is done, timed out or cancelled."""
        if not pending.future.done():
            pending.future.cancel()
        if pending in self._waiting:
            self._waiting.remove(pending)
            self._on_depth(self.depth)

    async def drain(self) -> None:
        """Refuses new requests, lets every admitted one finish, then stops the worker and its thread."""
        self._closing = True
        self._wake.set()
        if self._worker is not None:
            await self._worker
        if self._admitted:  # results are set; let their callers return
            await self._idle.wait()
        self._executor.shutdown(wait=True)

    async def _sleep_until_woken(self, timeout: float | None) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    def _rows_waiting(self, group: Hashable) -> int:
        return sum(p.rows for p in self._waiting if p.group == group)

    async def _collect(self) -> list[_Pending]:
        """The next batch: the oldest request and, after at most ``max_delay_s``, the rest of its group."""
        loop = asyncio.get_running_loop()
        head = self._waiting[0]
        if head.group is not None and self._max_batch > 1:
            deadline = head.arrived + self._max_delay_s
            while self._rows_waiting(head.group) < self._max_batch and loop.time() < deadline:
                await self._sleep_until_woken(deadline - loop.time())
                if head.future.done():  # timed out or cancelled meanwhile: start again from the new oldest
                    return []
        batch, rows = [head], head.rows
        if head.group is not None:
            for p in self._waiting[1:]:
                if p.group == head.group and rows + p.rows <= self._max_batch:
                    batch.append(p)
                    rows += p.rows
        for p in batch:
            self._waiting.remove(p)
        self._on_depth(self.depth)
        return [p for p in batch if not p.future.done()]

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._waiting:
                if self._closing:
                    return
                await self._sleep_until_woken(None)
            batch = await self._collect()
            if not batch:
                continue
            payloads = [p.payload for p in batch]
            self._on_batch(payloads, sum(p.rows for p in batch))
            try:
                results = await loop.run_in_executor(self._executor, self._run, payloads)
            except Exception as e:  # a bug in run itself: every request of the batch gets it
                results = [e] * len(batch)
            for p, result in zip(batch, results, strict=True):
                if p.future.done():  # its caller has gone (deadline, disconnect)
                    continue
                if isinstance(result, BaseException):
                    p.future.set_exception(result)
                else:
                    p.future.set_result(result)

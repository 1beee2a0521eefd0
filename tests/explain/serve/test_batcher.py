"""The batcher on its own (no model): merging, groups, backpressure, deadlines, cancellation, draining."""

from __future__ import annotations

import asyncio
import threading

import pytest

from explain.serve.batcher import Batcher
from explain.serve.errors import DeadlineExceeded, QueueFull


class Recorder:
    """``run``: doubles each payload and records the batches; blocks while ``gate`` is clear."""

    def __init__(self):
        self.batches: list[list[int]] = []
        self.started = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, payloads):
        self.started.set()
        self.gate.wait(10)
        self.batches.append(list(payloads))
        return [ValueError(f"bad {p}") if p < 0 else 2 * p for p in payloads]


def make(run, **kw):
    return Batcher(run, **{"max_batch": 8, "max_delay_s": 0.05, "max_queue": 16, **kw})


def test_concurrent_requests_of_a_group_run_as_one_call_and_others_apart():
    async def main():
        run = Recorder()
        b = make(run)
        b.start()
        same = [b.submit("g", 1, i, timeout_s=5) for i in range(4)]
        other = b.submit("h", 1, 10, timeout_s=5)
        alone = [b.submit(None, 1, 20 + i, timeout_s=5) for i in range(2)]
        results = await asyncio.gather(*same, other, *alone)
        await b.drain()
        return run.batches, results

    batches, results = asyncio.run(main())
    assert results == [0, 2, 4, 6, 20, 40, 42]
    assert sorted(map(sorted, batches)) == [[0, 1, 2, 3], [10], [20], [21]]


def test_a_batch_stops_at_max_batch_rows():
    async def main():
        run = Recorder()
        b = make(run, max_batch=4)
        b.start()
        await asyncio.gather(*(b.submit("g", 2, i, timeout_s=5) for i in range(3)))
        await b.drain()
        return run.batches

    assert asyncio.run(main()) == [[0, 1], [2]]


def test_an_error_result_fails_only_its_request():
    async def main():
        b = make(Recorder())
        b.start()
        out = await asyncio.gather(b.submit("g", 1, -1, timeout_s=5), b.submit("g", 1, 3, timeout_s=5),
                                   return_exceptions=True)  # fmt: skip
        await b.drain()
        return out

    bad, good = asyncio.run(main())
    assert isinstance(bad, ValueError) and str(bad) == "bad -1" and good == 6


def test_a_full_queue_refuses_at_once_with_retry_after():
    async def main():
        run = Recorder()
        run.gate.clear()
        b = make(run, max_queue=1, max_batch=1, retry_after_s=3)
        b.start()
        first = asyncio.ensure_future(b.submit("g", 1, 1, timeout_s=5))
        while not run.started.is_set():  # the first one runs (and has left the queue)
            await asyncio.sleep(0.01)
        waiting = asyncio.ensure_future(b.submit("g", 1, 2, timeout_s=5))
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull) as info:
            await b.submit("g", 1, 3, timeout_s=5)
        run.gate.set()
        out = await asyncio.gather(first, waiting)
        await b.drain()
        return info.value, out

    error, out = asyncio.run(main())
    assert error.status == 503 and error.headers == {"Retry-After": "3"} and out == [2, 4]


def test_a_deadline_or_a_cancelled_caller_frees_the_slot():
    async def main():
        run = Recorder()
        run.gate.clear()
        b = make(run, max_queue=2, max_batch=1)
        b.start()
        running = asyncio.ensure_future(b.submit("g", 1, 1, timeout_s=5))
        while not run.started.is_set():
            await asyncio.sleep(0.01)
        with pytest.raises(DeadlineExceeded):
            await b.submit("g", 1, 2, timeout_s=0.05)
        depth_after_deadline = b.depth
        cancelled = asyncio.ensure_future(b.submit("g", 1, 3, timeout_s=5))
        await asyncio.sleep(0.01)
        depth_queued = b.depth
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        depth_after_cancel = b.depth
        run.gate.set()
        await running
        await b.drain()
        return depth_after_deadline, depth_queued, depth_after_cancel, run.batches

    after_deadline, queued, after_cancel, batches = asyncio.run(main())
    assert (after_deadline, queued, after_cancel) == (0, 1, 0)
    assert batches == [[1]]  # neither the timed-out nor the cancelled request ran


def test_drain_finishes_admitted_requests_then_refuses_new_ones():
    async def main():
        run = Recorder()
        b = make(run, max_delay_s=0.2)
        b.start()
        pending = [asyncio.ensure_future(b.submit("g", 1, i, timeout_s=5)) for i in range(3)]
        await asyncio.sleep(0)
        await b.drain()
        done = [p.result() for p in pending]
        with pytest.raises(QueueFull, match="shutting down"):
            await b.submit("g", 1, 9, timeout_s=5)
        return done

    assert asyncio.run(main()) == [0, 2, 4]

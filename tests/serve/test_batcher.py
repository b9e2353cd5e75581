"""Dynamic batching (serve/batcher.py) with a fake model: batch sizes, the wait, a full queue,
and every caller getting its own rows back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from serve.batcher import Batcher, Outputs, QueueFull


class FakeModel:
    """Doubles the photos and sums each one; records the size of every batch it is given."""

    def __init__(self, fail: bool = False):
        self.sizes: list[int] = []
        self.fail = fail

    def __call__(self, x: np.ndarray) -> Outputs:
        self.sizes.append(len(x))
        if self.fail:
            raise RuntimeError("model failed")
        return x * 2, x.sum(axis=(1, 2, 3))


def photos(k: int, value: float) -> np.ndarray:
    """``k`` tiny photos (k, 3, 2, 2), each filled with ``value`` + its index."""
    return np.stack([np.full((3, 2, 2), value + i, np.float32) for i in range(k)])


def with_batcher(model: FakeModel, body: Callable[[Batcher], Awaitable[Any]], **kw: Any) -> Any:
    """Run ``body(batcher)`` on a fresh event loop with a started batcher, then stop it."""
    async def main() -> Any:
        b = Batcher(model, **kw)
        b.start()
        try:
            return await body(b)
        finally:
            await b.stop()

    return asyncio.run(main())


def test_concurrent_requests_share_batches_up_to_the_max_size():
    model = FakeModel()
    requests = [photos(1, 10 * i) for i in range(6)]

    async def body(b: Batcher) -> list[Outputs]:
        return await asyncio.gather(*(b.infer(x) for x in requests))

    with_batcher(model, body, max_batch=4, max_wait_ms=100)
    assert model.sizes == [4, 2]


def test_a_request_is_never_split_across_batches():
    model = FakeModel()

    async def body(b: Batcher) -> list[Outputs]:
        return await asyncio.gather(*(b.infer(photos(2, 10 * i)) for i in range(3)))

    with_batcher(model, body, max_batch=5, max_wait_ms=50)
    assert model.sizes == [4, 2]


def test_results_are_routed_to_the_right_caller():
    model = FakeModel()
    requests = [photos(k, 100 * i) for i, k in enumerate((2, 1, 3, 1))]

    async def body(b: Batcher) -> list[Outputs]:
        return await asyncio.gather(*(b.infer(x) for x in requests))

    results = with_batcher(model, body, max_batch=16, max_wait_ms=50)
    assert model.sizes == [7]  # one shared batch
    for x, (doubled, sums) in zip(requests, results, strict=True):
        np.testing.assert_array_equal(doubled, x * 2)
        np.testing.assert_array_equal(sums, x.sum(axis=(1, 2, 3)))


def test_a_lone_request_is_flushed_after_the_max_wait():
    model = FakeModel()

    async def body(b: Batcher) -> float:
        t0 = time.perf_counter()
        await b.infer(photos(1, 0))
        return time.perf_counter() - t0

    elapsed = with_batcher(model, body, max_batch=16, max_wait_ms=80)
    assert model.sizes == [1]
    assert 0.07 <= elapsed < 5


def test_batching_off_runs_every_request_alone():
    model = FakeModel()

    async def body(b: Batcher) -> list[Outputs]:
        return await asyncio.gather(*(b.infer(photos(2, i)) for i in range(3)))

    with_batcher(model, body, max_batch=16, max_wait_ms=50, enabled=False)
    assert model.sizes == [2, 2, 2]


def test_a_full_queue_refuses_at_once_and_stop_fails_the_waiting():
    async def main() -> None:
        b = Batcher(FakeModel(), queue_size=3)  # not started: nothing leaves the queue
        waiting = asyncio.ensure_future(b.infer(photos(2, 0)))
        await asyncio.sleep(0)  # let it enqueue
        with pytest.raises(QueueFull):
            await b.infer(photos(2, 1))
        assert b.pending == 2
        await b.stop()
        with pytest.raises(RuntimeError, match="shutting down"):
            await waiting

    asyncio.run(main())


def test_a_model_error_reaches_every_caller_of_the_batch():
    model = FakeModel(fail=True)

    async def body(b: Batcher) -> list[Outputs | BaseException]:
        return await asyncio.gather(*(b.infer(photos(1, i)) for i in range(3)),
                                    return_exceptions=True)

    results = with_batcher(model, body, max_batch=8, max_wait_ms=50)
    assert model.sizes == [3]
    assert all(isinstance(r, RuntimeError) and str(r) == "model failed" for r in results)

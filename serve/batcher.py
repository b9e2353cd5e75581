"""Dynamic batching: concurrent requests share one ONNX Runtime call.

Requests put their photos in a bounded queue; one worker takes as many as fit in
``max_batch`` (waiting at most ``max_wait_ms`` for more once the first arrived), runs the model
off the event loop in a single inference thread, and hands each request its slice. A full
queue refuses new work at once (:class:`QueueFull`), so memory never grows without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

Outputs = tuple[np.ndarray, ...]


class QueueFull(Exception):
    """The queue holds ``queue_size`` photos already."""


class Batcher:
    def __init__(self, run: Callable[[np.ndarray], Outputs], *, max_batch: int = 16,
                 max_wait_ms: float = 4.0, queue_size: int = 64, enabled: bool = True,
                 on_batch: Callable[[int], None] | None = None):
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait_ms / 1000
        self.queue_size, self.enabled, self.on_batch = queue_size, enabled, on_batch
        self.items: deque[tuple[np.ndarray, asyncio.Future]] = deque()
        self.pending = 0
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="inference")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, fut in self.items:
            if not fut.done():
                fut.set_exception(RuntimeError("service shutting down"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def infer(self, x: np.ndarray) -> Outputs:
        """Outputs for the photos ``x`` (k, 3, S, S), computed in a shared batch."""
        if self.pending + len(x) > self.queue_size:
            raise QueueFull
        fut = asyncio.get_running_loop().create_future()
        self.items.append((x, fut))
        self.pending += len(x)
        self._wake.set()
        return await fut

    def _take(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        batch: list[tuple[np.ndarray, asyncio.Future]] = []
        n = 0
        while self.items and (not batch or (self.enabled and
                                            n + len(self.items[0][0]) <= self.max_batch)):
            x, fut = self.items.popleft()
            self.pending -= len(x)
            if not fut.cancelled():  # the client went away
                batch.append((x, fut))
                n += len(x)
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.items:
                self._wake.clear()
                await self._wake.wait()
            if self.enabled and self.pending < self.max_batch and self.max_wait > 0:
                deadline = time.perf_counter() + self.max_wait
                while self.pending < self.max_batch and time.perf_counter() < deadline:
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(),
                                               deadline - time.perf_counter())
                    except TimeoutError:
                        break
            batch = self._take()
            if not batch:
                continue
            x = np.concatenate([b[0] for b in batch]) if len(batch) > 1 else batch[0][0]
            if self.on_batch:
                self.on_batch(len(x))
            try:
                outputs = await loop.run_in_executor(self._executor, self.run, x)
            except Exception as e:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            start = 0
            for xi, fut in batch:
                if not fut.done():
                    fut.set_result(tuple(o[start:start + len(xi)] for o in outputs))
                start += len(xi)

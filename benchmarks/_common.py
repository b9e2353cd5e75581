"""What the benchmarks share beyond the tests' helpers (:mod:`tests.support`): median timers."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import numpy as np


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn`` in ms, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def medians_in_turn(fns: list[Callable[[], object]], repeat: int) -> list[float]:
    """Median ms of each of ``fns``, called one after the other ``repeat`` times (after one
    warm-up round), so that a drift of the machine's speed moves them all alike."""
    times: list[list[float]] = [[] for _ in fns]
    for i in range(repeat + 1):
        for fn, out in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            if i:
                out.append(time.perf_counter() - t0)
    return [float(np.median(t) * 1000) for t in times]


async def amedian_ms(fn: Callable[[], Awaitable[object]], repeat: int) -> float:
    """:func:`median_ms` of a coroutine function, awaited in the running event loop."""
    await fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


async def amedians_in_turn(first: Callable[[], Awaitable[object]],
                           second: Callable[[], Awaitable[object]], repeat: int
                           ) -> tuple[float, float]:
    """Median ms of ``first`` and of ``second``, awaited one after the other ``repeat`` times
    (after one warm-up pair), so that a drift of the machine's speed moves both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(repeat + 1):
        for fn, out in zip((first, second), times, strict=True):
            t0 = time.perf_counter()
            await fn()
            if i:
                out.append(time.perf_counter() - t0)
    return float(np.median(times[0]) * 1000), float(np.median(times[1]) * 1000)

"""Token-bucket rate limits: in this process's memory, or shared by every process and replica
through Redis (``redis_url``).

A bucket per key (an API key id, a client address) fills at ``per_minute`` tokens a minute up
to ``burst``; a request takes its tokens, all or none. :class:`RedisLimiter` runs the same
bucket as one Lua script in Redis (atomic; Redis's clock, so replicas' clocks do not matter;
each bucket expires once it would be full again). If Redis cannot be reached, the limiter falls
back to its own process's buckets and logs a warning, rather than refuse every request.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from serve.problems import RateLimited

if TYPE_CHECKING:
    from serve.settings import Settings

log = logging.getLogger("photograde.ratelimit")
#: after Redis fails, the seconds the process limits on its own before it tries Redis again
RETRY_REDIS_S = 5.0


class Limiter(ABC):
    """``per_minute`` tokens a minute per key, at most ``burst`` saved up (0: a minute's
    worth). ``per_minute`` 0 turns it off."""

    def __init__(self, per_minute: float, burst: int = 0):
        self.rate = per_minute / 60.0
        self.burst = float(burst or max(1, math.ceil(per_minute)))

    @abstractmethod
    def _take(self, key: str, n: int, take: bool) -> float:
        """The seconds until ``n`` tokens are available (0: now), taking them when
        ``take`` and there are enough."""

    def wait(self, key: str, n: int = 1) -> float:
        """The seconds until ``n`` tokens are available (0: now), taking none."""
        return 0.0 if self.rate <= 0 else self._take(key, n, False)

    def take(self, key: str, n: int = 1) -> float:
        """Take ``n`` tokens, all or none; returns 0 if taken, else the seconds until they are
        available (infinity for more than ``burst``: never)."""
        if self.rate <= 0:
            return 0.0
        if n > self.burst:
            return math.inf
        return self._take(key, n, True)

    def check(self, key: str, n: int = 1, cost: str = "") -> None:
        """Take ``n`` tokens for ``key`` (an API key id) or raise RateLimited; ``cost`` says
        what costs ``n`` tokens (a batch's devices)."""
        wait = self.take(key, n)
        why = f" ({cost})" if cost else ""
        if wait == math.inf:
            raise RateLimited(f"this request needs {n} tokens{why}; API key {key} can save up "
                              f"at most {self.burst:g} (rate_limit_burst)")
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise RateLimited(f"too many requests for API key {key}: limit "
                              f"{self.rate * 60:g} per minute{why}; retry in {retry} s",
                              headers={"Retry-After": str(retry)})


class RateLimiter(Limiter):
    """The buckets in this process's memory. Buckets that have filled up again are forgotten
    once there are more than ``max_keys``."""

    def __init__(self, per_minute: float, burst: int = 0, clock=time.monotonic,
                 max_keys: int = 100_000):
        super().__init__(per_minute, burst)
        self.clock, self.max_keys = clock, max_keys
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def _tokens(self, key: str, now: float) -> float:
        tokens, last = self.buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - last) * self.rate)

    def _take(self, key: str, n: int, take: bool) -> float:
        now = self.clock()
        with self.lock:
            tokens = self._tokens(key, now)
            if not take:
                return max(0.0, (n - tokens) / self.rate)
            taken = tokens >= n
            self.buckets[key] = (tokens - n if taken else tokens, now)
            if len(self.buckets) > self.max_keys:
                self._forget_full(now)
        return 0.0 if taken else (n - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        """Drop the buckets that have filled up again (as good as new); under the lock."""
        for key in [k for k in self.buckets if self._tokens(k, now) >= self.burst]:
            del self.buckets[key]


# KEYS[1]: the bucket (a hash: tokens, ts); ARGV: rate (tokens/s), burst, n, take (1/0), ttl (s).
# Returns the wait in seconds as a string (a Lua number would be truncated to an integer).
BUCKET_LUA = """
local rate, burst, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local v = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(v[1]) or burst, tonumber(v[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= n then
  if ARGV[4] == '1' then tokens = tokens - n end
else
  wait = (n - tokens) / rate
end
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
end
return tostring(wait)
"""


class RedisLimiter(Limiter):
    """The buckets in Redis under ``<namespace>:<key>``, shared by every process using the
    same Redis and namespace."""

    def __init__(self, per_minute: float, burst: int = 0, *, url: str | None = None,
                 client: Any = None, namespace: str = "photograde:rate"):
        super().__init__(per_minute, burst)
        if client is None:
            import redis
            client = redis.Redis.from_url(url or "redis://localhost:6379/0",
                                          socket_timeout=2, socket_connect_timeout=2)
        self.client, self.namespace = client, namespace
        self.script = client.register_script(BUCKET_LUA)
        # a full bucket is as good as none: expire it once it would have refilled
        self.ttl = max(1, math.ceil(self.burst / self.rate)) + 1 if self.rate > 0 else 1
        self.fallback = RateLimiter(per_minute, burst)
        self._warned = self._down_until = 0.0

    def _take(self, key: str, n: int, take: bool) -> float:
        import redis
        now = time.monotonic()
        if now < self._down_until:  # Redis failed a moment ago: no timeout per request
            return self.fallback._take(key, n, take)
        try:
            wait = self.script(keys=[f"{self.namespace}:{key}"],
                               args=[repr(self.rate), repr(self.burst), n, int(take), self.ttl])
        except redis.RedisError as e:
            self._down_until = now + RETRY_REDIS_S
            if now - self._warned > 60:  # once a minute at most
                self._warned = now
                log.warning("rate limit: Redis unreachable (%s); limiting per process, "
                            "trying Redis again every %g s", e, RETRY_REDIS_S)
            return self.fallback._take(key, n, take)
        return float(wait)


def open_limiter(settings: Settings, per_minute: float, burst: int, namespace: str) -> Limiter:
    """A limiter in Redis when ``redis_url`` is set, else in this process's memory."""
    if settings.redis_url:
        return RedisLimiter(per_minute, burst, url=settings.redis_url,
                            namespace=f"photograde:{namespace}")
    return RateLimiter(per_minute, burst)

"""Rate limits, shared by the widget, siteverify and the worker API.

A fixed window per ``(scope, key)``, counted where every web process sees it:

- on Redis (production), one pipelined ``INCR`` + ``EXPIRE`` per hit;
- on the embedded default's file cache (the ``ratelimit`` alias: expired counters only
  are dropped, never live ones), one locked file per counter (:meth:`FileCache.count`);
- on any other cache, ``add`` then ``incr``.

When Redis cannot be reached, each process counts in its own memory instead (the same
limits, per process) until Redis answers again, so a Redis outage never turns a widget
request into an error.

Client addresses: ``X-Forwarded-For`` is believed only from ``CROWDLOOP_TRUSTED_PROXIES``
(IPs or CIDRs), read right to left, so a client cannot choose its own address.
"""
import hashlib
import ipaddress
import threading
from collections.abc import Iterable
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from django.conf import settings
from django.core.cache import BaseCache, caches
from django.core.cache.backends.redis import RedisCache
from django.http import HttpRequest

from labeling import clock
from labeling.cache import REDIS_DOWN, redis_errors


class RateLimited(Exception):
    """A limit is reached; ``scope`` names it and ``retry_after`` is in seconds."""

    def __init__(self, scope: str, retry_after: int) -> None:
        super().__init__(f"rate limit {scope!r} reached; retry in {retry_after} s")
        self.scope = scope
        self.retry_after = retry_after


def _now() -> float:
    return clock.timestamp()


def _counters() -> BaseCache:
    """The cache that holds the counters: the ``ratelimit`` alias when configured."""
    return caches["ratelimit" if "ratelimit" in settings.CACHES else "default"]


class LocalCounters:
    """Per-process fixed-window counters, used while Redis is unreachable. Bounded:
    expired counters are dropped once more than ``max_keys`` are held."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._counts: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def count(self, key: str, timeout: float, now: float) -> int:
        with self._lock:
            count, expires = self._counts.get(key, (0, 0.0))
            if expires <= now:
                count, expires = 0, now + timeout
            self._counts[key] = (count + 1, expires)
            if len(self._counts) > self.max_keys:
                self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
            return count + 1

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()


LOCAL_COUNTERS = LocalCounters()


def _count_redis(cache: RedisCache, key: str, timeout: int) -> int:
    full_key = cache.make_and_validate_key(key)
    client = cache._cache.get_client(full_key, write=True)
    pipe = client.pipeline(transaction=False)
    pipe.incr(full_key)
    pipe.expire(full_key, timeout)
    return int(pipe.execute()[0])


def _count_add_incr(cache: BaseCache, key: str, timeout: int) -> int:
    cache.add(key, 0, timeout=timeout)
    try:
        return cache.incr(key)
    except ValueError:
        # The counter expired between add and incr: this hit opens a new one.
        if cache.add(key, 1, timeout=timeout):
            return 1
        return cache.incr(key)


def _count(key: str, timeout: int, now: float) -> int:
    cache = _counters()
    if isinstance(cache, RedisCache):
        if not REDIS_DOWN.is_down():
            try:
                return _count_redis(cache, key, timeout)
            except redis_errors() as exc:
                REDIS_DOWN.failed(exc, "rate limit")
        return LOCAL_COUNTERS.count(key, timeout, now)
    if hasattr(cache, "count"):
        return cache.count(key, timeout)
    return _count_add_incr(cache, key, timeout)


def ratelimit_hit(scope: str, key: object, limit: int, window_s: float, *, now: float | None = None) -> bool:
    """Count one hit for ``key`` under ``scope``; ``True`` while within ``limit`` hits
    per ``window_s`` seconds, ``False`` once over it (the hit is counted either way)."""
    now = _now() if now is None else now
    window_s = max(int(window_s), 1)
    bucket = int(now // window_s)
    digest = hashlib.sha256(str(key).encode("utf-8", "surrogatepass")).hexdigest()[:32]
    cache_key = f"crowdloop:rl:{scope}:{digest}:{bucket}"
    return _count(cache_key, window_s + 5, now) <= limit


def ratelimit_retry_after(window_s: float, *, now: float | None = None) -> int:
    """Seconds until the current window of ``window_s`` ends."""
    now = _now() if now is None else now
    window_s = max(int(window_s), 1)
    return max(int(window_s - now % window_s), 1)


def ratelimit_enforce(checks: Iterable[tuple[str, object]], *, now: float | None = None) -> None:
    """Hit every ``(scope, key)`` in ``checks`` against ``CROWDLOOP_RATE_LIMITS[scope]``
    (``(limit, window_s)``); raise :class:`RateLimited` for the first one over its limit.

    Every check is counted, so a client over one limit keeps filling the others.
    A ``None`` key is skipped (e.g. no site key given).
    """
    now = _now() if now is None else now
    over = None
    for scope, key in checks:
        if key is None:
            continue
        limit, window_s = settings.CROWDLOOP_RATE_LIMITS[scope]
        if not ratelimit_hit(scope, key, limit, window_s, now=now) and over is None:
            over = RateLimited(scope, ratelimit_retry_after(window_s, now=now))
    if over is not None:
        raise over


@lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple[IPv4Network | IPv6Network, ...]:
    networks = []
    for entry in proxies:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            continue
    return tuple(networks)


def _parse_ip(value: str | None) -> IPv4Address | IPv6Address | None:
    value = (value or "").strip()
    if value.startswith("[") and "]" in value:
        value = value[1 : value.index("]")]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _trusted(address: IPv4Address | IPv6Address | None, networks: tuple[IPv4Network | IPv6Network, ...]) -> bool:
    if address is None:
        return False
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in networks)


def client_ip(request: HttpRequest) -> str:
    """The client's IP address: ``REMOTE_ADDR``, or, when that is a trusted proxy, the
    right-most ``X-Forwarded-For`` entry that is not itself a trusted proxy."""
    remote = request.META.get("REMOTE_ADDR", "")
    networks = _networks(tuple(getattr(settings, "CROWDLOOP_TRUSTED_PROXIES", ())))
    address = _parse_ip(remote)
    if not networks or not _trusted(address, networks):
        return str(address) if address is not None else remote[:64]
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    hops = [part.strip() for part in forwarded.split(",")[-32:] if part.strip()]
    for hop in reversed(hops):
        hop_address = _parse_ip(hop)
        if hop_address is None:
            break
        if not _trusted(hop_address, networks):
            return str(hop_address)
        address = hop_address
    return str(address)

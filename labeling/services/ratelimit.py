"""Rate limits on Django's cache, shared by the widget, siteverify and the worker API.

A fixed window per ``(scope, key)``: the first hit of a window creates its counter with
``cache.add`` (atomic "set if absent"), every hit increments it with ``cache.incr``
(atomic on Redis, the production cache), so several web processes count together.
On the embedded default's file cache ``incr`` is a read-modify-write: the count is
best effort there, which is fine for one development server.

Client addresses: ``X-Forwarded-For`` is believed only from ``CROWDLOOP_TRUSTED_PROXIES``
(IPs or CIDRs), read right to left, so a client cannot choose its own address.
"""
import hashlib
import ipaddress
import time
from functools import lru_cache

from django.conf import settings
from django.core.cache import cache


class RateLimited(Exception):
    """A limit is reached; ``scope`` names it and ``retry_after`` is in seconds."""

    def __init__(self, scope, retry_after):
        super().__init__(f"rate limit {scope!r} reached; retry in {retry_after} s")
        self.scope = scope
        self.retry_after = retry_after


def _now():
    return time.time()


def ratelimit_hit(scope, key, limit, window_s, *, now=None):
    """Count one hit for ``key`` under ``scope``; ``True`` while within ``limit`` hits
    per ``window_s`` seconds, ``False`` once over it (the hit is counted either way)."""
    now = _now() if now is None else now
    window_s = max(int(window_s), 1)
    bucket = int(now // window_s)
    digest = hashlib.sha256(str(key).encode("utf-8", "surrogatepass")).hexdigest()[:32]
    cache_key = f"crowdloop:rl:{scope}:{digest}:{bucket}"
    timeout = window_s + 5
    cache.add(cache_key, 0, timeout=timeout)
    try:
        count = cache.incr(cache_key)
    except ValueError:
        # The counter expired between add and incr: this hit opens a new one.
        if not cache.add(cache_key, 1, timeout=timeout):
            count = cache.incr(cache_key)
        else:
            count = 1
    return count <= limit


def ratelimit_retry_after(window_s, *, now=None):
    """Seconds until the current window of ``window_s`` ends."""
    now = _now() if now is None else now
    window_s = max(int(window_s), 1)
    return max(int(window_s - now % window_s), 1)


def ratelimit_enforce(checks, *, now=None):
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
def _networks(proxies):
    networks = []
    for entry in proxies:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            continue
    return tuple(networks)


def _parse_ip(value):
    value = (value or "").strip()
    if value.startswith("[") and "]" in value:
        value = value[1 : value.index("]")]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _trusted(address, networks):
    if address is None:
        return False
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in networks)


def client_ip(request):
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

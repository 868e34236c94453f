"""How a simulated person reaches the server: real HTTP, or Django's test client.

Both give the person the same thing a browser gets: a status, headers, a body and the
cookies the server set. Nothing else: no database, no ids but those in the responses.
Absolute URLs handed out by the server (signed image URLs) are followed on the same
server, by path.
"""
import http.client
import json
import time
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict = field(default_factory=dict)  # lower-case names
    seconds: float = 0.0

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None


def _target(path, params=None):
    """``path`` (or an absolute URL on this server) with ``params`` as a query string."""
    parts = urlsplit(path)
    target = parts.path or "/"
    query = parts.query
    if params:
        query = (query + "&" if query else "") + urlencode(params)
    return target + ("?" + query if query else "")


class Transport:
    """A person's browser: one cookie jar, one client address, one User-Agent."""

    def __init__(self, *, user_agent, forwarded_for=None, origin=None):
        self.user_agent = user_agent
        self.forwarded_for = forwarded_for
        self.origin = origin
        self.timings = []  # (endpoint name, seconds, status)

    def get(self, path, params=None, *, name=None, headers=None):
        return self._timed(name, "GET", _target(path, params), None, headers or {})

    def post_json(self, path, data, *, name=None, headers=None):
        headers = {"Content-Type": "application/json", **(headers or {})}
        return self._timed(name, "POST", _target(path), json.dumps(data).encode(), headers)

    def post_form(self, path, data, *, name=None, headers=None):
        headers = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        return self._timed(name, "POST", _target(path), urlencode(data).encode(), headers)

    def cookie(self, name):
        raise NotImplementedError

    def close(self):
        pass

    def _timed(self, name, method, target, body, headers):
        headers = {"User-Agent": self.user_agent, **headers}
        if self.origin:
            headers.setdefault("Origin", self.origin)
        if self.forwarded_for:
            headers.setdefault("X-Forwarded-For", self.forwarded_for)
        start = time.perf_counter()
        reply = self._send(method, target, body, headers)
        reply.seconds = time.perf_counter() - start
        if name:
            self.timings.append((name, reply.seconds, reply.status))
        return reply

    def _send(self, method, target, body, headers):
        raise NotImplementedError


class HttpTransport(Transport):
    """HTTP/1.1 with keep-alive over ``http.client`` and a small cookie jar."""

    def __init__(self, base_url, *, timeout=30.0, **kwargs):
        super().__init__(**kwargs)
        parts = urlsplit(base_url)
        if parts.scheme != "http":
            raise ValueError(f"only http:// servers are supported, not {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.timeout = timeout
        self.cookies = {}
        self._connection = None

    def cookie(self, name):
        return self.cookies.get(name)

    def close(self):
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _send(self, method, target, body, headers):
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._connection.request(method, target, body=body, headers=headers)
                response = self._connection.getresponse()
                data = response.read()
            except (TimeoutError, http.client.HTTPException, ConnectionError, OSError):
                # A kept-alive connection the server closed: reconnect once.
                self.close()
                if attempt == 2:
                    raise
                continue
            for value in response.headers.get_all("Set-Cookie") or ():
                jar = SimpleCookie()
                jar.load(value)
                for key, morsel in jar.items():
                    if morsel["max-age"] == "0" or not morsel.value:
                        self.cookies.pop(key, None)
                    else:
                        self.cookies[key] = morsel.value
            if response.will_close:
                self.close()
            return Reply(response.status, data, {k.lower(): v for k, v in response.getheaders()})
        raise AssertionError("unreachable")


class ClientTransport(Transport):
    """In-process, through Django's test client: the full WSGI stack without a socket.

    The person's address is ``REMOTE_ADDR``, as a server behind no proxy would see it.
    """

    def __init__(self, *, remote_addr, **kwargs):
        super().__init__(**kwargs)
        from django.test import Client

        self.client = Client(REMOTE_ADDR=remote_addr)

    def cookie(self, name):
        morsel = self.client.cookies.get(name)
        return morsel.value if morsel is not None and morsel.value else None

    def _send(self, method, target, body, headers):
        meta = {}
        for key, value in headers.items():
            if key.lower() == "content-type":
                continue
            meta["HTTP_" + key.upper().replace("-", "_")] = value
        content_type = headers.get("Content-Type", "application/octet-stream")
        if method == "GET":
            response = self.client.get(target, **meta)
        else:
            response = self.client.generic(method, target, body or b"", content_type=content_type, **meta)
        # Consuming a streaming body closes the response the way the test client
        # arranges (its own close() would also close the database connection).
        data = b"".join(response.streaming_content) if response.streaming else response.content
        return Reply(response.status_code, data, {k.lower(): v for k, v in response.items()})

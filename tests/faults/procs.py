"""Processes the fault suite starts, owns and kills: its own redis-server, its own Celery
workers (optionally in a network namespace of their own, a second host), never the
machine's shared services. Every helper cleans up after itself, also on failure.
"""
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port(host="127.0.0.1"):
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout, interval=0.2, what="condition"):
    """Poll ``predicate`` until it returns a true value (returned) or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {timeout:.0f} s")
        time.sleep(interval)


def nothing_left_running(timeout=90):
    """Wait until no import, pipeline or training run is running (what the last one
    queued, a clustering round after a training run for instance, may still be working):
    nothing stays running for ever. Call from a test with database access."""
    from labeling.models import ImportJob, PipelineRun, RunStatus, TrainingRun

    def none():
        return not any(model.objects.filter(status=RunStatus.RUNNING).exists()
                       for model in (ImportJob, PipelineRun, TrainingRun))

    wait_for(none, timeout, interval=0.5, what="no run left running")


def port_open(host, port, timeout=0.5):
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def database_url(connection):
    """The URL of the database ``connection`` (a Django connection) points at, for a
    worker process to open the same database (the test database under pytest-django)."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "") + "@" if s["USER"] else ""
    return f"postgres://{auth}{s['HOST'] or 'localhost'}:{s['PORT'] or 5432}/{s['NAME']}"


class RedisServer:
    """A redis-server of our own: ``--save ""`` (no persistence), on a temporary dir and
    a free port; :meth:`stop` and :meth:`start` take it down and up again on the same
    port, as a broker outage would. Use as a context manager."""

    def __init__(self, port=None, bind="127.0.0.1", directory=None):
        self.bind = bind
        self.host = bind.split()[0]
        self.port = port or free_port(self.host)
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="crowdloop-redis-"))
        self.process = None

    def url(self, db=0, host=None):
        return f"redis://{host or self.host}:{self.port}/{db}"

    def start(self, timeout=10):
        if self.running:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", *self.bind.split(), "--save", "",
             "--appendonly", "no", "--dir", str(self.directory), "--logfile", str(self.directory / "redis.log"),
             "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for(lambda: port_open(self.host, self.port) or self.process.poll() is not None, timeout,
                 what=f"redis-server on port {self.port}")
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited: {self.log()[-2000:]}")
        return self

    def stop(self, kill=False):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.process.wait(timeout=10)
        self.process = None

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def log(self):
        path = self.directory / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self):
        self.stop(kill=True)
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


class CeleryWorker:
    """A Celery worker process of our own against ``database_url`` and ``redis_url``
    (broker, results and cache), with ``data_dir`` as its ``CROWDLOOP_DATA_DIR``.

    ``netns`` runs it inside that network namespace (``ip netns exec``), a second host;
    ``hostname`` gives it a host name of its own (a UTS namespace), as another machine has.
    ``env`` adds or overrides variables (short heartbeat timeouts, for instance). The
    worker runs in a session of its own, so :meth:`kill9` takes its pool children
    down with it, as a crashed host would. Its log is ``log_path``."""

    def __init__(self, *, database_url, redis_url, data_dir, queues=("default", "cpu", "gpu"), name=None,
                 concurrency=1, pool="prefork", netns=None, hostname=None, env=None, media_root=None,
                 loglevel="info"):
        self.database_url = database_url
        self.redis_url = redis_url
        self.data_dir = Path(data_dir)
        self.queues = tuple(queues)
        self.name = name or f"fault-{os.getpid()}-{time.monotonic_ns() % 10**6}"
        self.concurrency = concurrency
        self.pool = pool
        self.netns = netns
        self.hostname = hostname
        self.extra_env = dict(env or {})
        self.media_root = media_root
        self.loglevel = loglevel
        self.process = None
        self.log_path = self.data_dir / f"worker-{self.name}.log"
        self._log = None

    def environment(self):
        drop = {"REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "DATABASE_URL", "MEDIA_ROOT"}
        env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PYTEST")}
        env.update(
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            CROWDLOOP_DATA_DIR=str(self.data_dir),
            DJANGO_SETTINGS_MODULE="labeling.settings",
            PYTHONUNBUFFERED="1",
        )
        if self.media_root is not None:
            env["MEDIA_ROOT"] = str(self.media_root)
        env.update({k: str(v) for k, v in self.extra_env.items()})
        return env

    def command(self):
        cmd = [sys.executable, "-m", "celery", "-A", "labeling", "worker", "-Q", ",".join(self.queues),
               "-c", str(self.concurrency), "-P", self.pool, "-n", f"{self.name}@%h", "-l", self.loglevel,
               "--without-gossip", "--without-mingle"]
        if self.hostname:
            cmd = ["unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"', self.hostname, *cmd]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        return cmd

    def start(self):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "a")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            self.command(), cwd=ROOT, env=self.environment(), stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def wait_ready(self, timeout=60):
        """Block until the worker logs that it is ready (consuming); raise with its log
        if it exits or times out first."""
        def ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited ({self.process.returncode}):\n{self.log()[-4000:]}")
            return " ready." in self.log()

        try:
            wait_for(ready, timeout, what=f"worker {self.name} ready")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.log()[-4000:]}") from None
        return self

    @property
    def alive(self):
        return self.process is not None and self.process.poll() is None

    def kill9(self):
        """SIGKILL the worker and every process of its session: no shutdown, no ack,
        no failure hook, as when its machine dies."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self, timeout=30):
        """Warm shutdown (SIGTERM), then SIGKILL what is left."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.process is not None:
                os.killpg(self.process.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def netns_available():
    """``None`` when this process may create network namespaces (root, ``ip netns``
    works), else the reason it may not."""
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "creating a network namespace needs root"
    name = f"clprobe{os.getpid() % 100000}"
    probe = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"ip netns add failed: {probe.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


class SecondHost:
    """A network namespace joined to this one by a veth pair: the host side is
    ``host_ip``, the namespace side ``ns_ip`` (a /30 of its own). Services on this side
    are reached from inside at ``host_ip``; :meth:`forward` relays a port there to a
    local-only service (``socat``), since the shared PostgreSQL listens on 127.0.0.1
    only. Use as a context manager; everything is removed on exit."""

    def __init__(self, index=None):
        index = index if index is not None else os.getpid() % 200 + 20
        self.name = f"clhost{index}"
        self.host_if, self.ns_if = f"clv{index}a", f"clv{index}b"
        self.host_ip, self.ns_ip = f"10.231.{index}.1", f"10.231.{index}.2"
        self._forwarders = []

    def _ip(self, *args, ns=False):
        cmd = ["ip", "netns", "exec", self.name, "ip", *args] if ns else ["ip", *args]
        subprocess.run(cmd, check=True, capture_output=True, text=True)

    def create(self):
        self.destroy()
        self._ip("netns", "add", self.name)
        self._ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        self._ip("link", "set", self.ns_if, "netns", self.name)
        self._ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        self._ip("link", "set", self.host_if, "up")
        self._ip("addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if, ns=True)
        self._ip("link", "set", self.ns_if, "up", ns=True)
        self._ip("link", "set", "lo", "up", ns=True)
        return self

    def forward(self, port, target_host="127.0.0.1", target_port=None):
        """Relay ``host_ip:port`` to ``target_host:target_port`` (default: the same port)."""
        relay = subprocess.Popen(
            ["socat", f"TCP-LISTEN:{port},bind={self.host_ip},reuseaddr,fork",
             f"TCP:{target_host}:{target_port or port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        self._forwarders.append(relay)
        wait_for(lambda: port_open(self.host_ip, port), 10, what=f"forwarder on {self.host_ip}:{port}")
        return relay

    def reaches(self, host, port):
        """Whether a TCP connection from inside the namespace to ``host:port`` succeeds."""
        probe = subprocess.run(
            ["ip", "netns", "exec", self.name, sys.executable, "-c",
             f"import socket; socket.create_connection(({host!r}, {port}), timeout=2).close()"],
            capture_output=True,
        )
        return probe.returncode == 0

    def destroy(self):
        for relay in self._forwarders:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(relay.pid, signal.SIGKILL)
            relay.wait(timeout=10)
        self._forwarders = []
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def __enter__(self):
        return self.create()

    def __exit__(self, *exc):
        self.destroy()

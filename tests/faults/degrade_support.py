"""Processes the degrade fault tests start, own, stop and restart: a redis-server, a
PostgreSQL cluster, a gunicorn and a Celery worker of their own (never the machine's
shared services). Ports, polling and the test database's URL come from
:mod:`tests.faults.procs`."""
import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.faults.procs import database_url, free_port, port_open, wait_for  # noqa: F401 (re-exported)

ROOT = Path(__file__).resolve().parents[2]
PASSTHROUGH_DROP = {"REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "DATABASE_URL", "MEDIA_ROOT"}


def child_env(*, database_url, data_dir, redis_url=None, media_root=None, extra=None):
    env = {k: v for k, v in os.environ.items() if k not in PASSTHROUGH_DROP and not k.startswith("PYTEST")}
    env.update(
        DATABASE_URL=database_url,
        CROWDLOOP_DATA_DIR=str(data_dir),
        DJANGO_SETTINGS_MODULE="labeling.settings",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(ROOT),
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    if media_root is not None:
        env["MEDIA_ROOT"] = str(media_root)
    env.update({k: str(v) for k, v in (extra or {}).items()})
    return env


class _Process:
    """A child in a session of its own (so that its children die with it), logging to a file."""

    def __init__(self, log_path):
        self.log_path = Path(log_path)
        self.process = None
        self._log = None

    def _spawn(self, command, env, cwd=ROOT):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "a")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def alive(self):
        return self.process is not None and self.process.poll() is None

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout=15):
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class RedisServer(_Process):
    """A redis-server of our own (no persistence) on a free port; :meth:`stop` and
    :meth:`start` take it down and up again on the same port, as an outage would."""

    def __init__(self, directory):
        self.directory = Path(directory)
        super().__init__(self.directory / "redis.log")
        self.port = free_port()

    def url(self, db=0):
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout=10):
        self.directory.mkdir(parents=True, exist_ok=True)
        self._spawn(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--protected-mode", "no"],
            os.environ.copy(),
        )
        wait_for(lambda: port_open("127.0.0.1", self.port) or not self.alive, timeout, what="redis-server")
        if not self.alive:
            raise RuntimeError(f"redis-server exited: {self.log()[-2000:]}")
        return self


class Gunicorn(_Process):
    """The WSGI app served by gunicorn (2 processes x 4 threads) on a free port."""

    def __init__(self, env, log_path, workers=2, threads=4):
        super().__init__(log_path)
        self.env = env
        self.port = free_port()
        self.workers, self.threads = workers, threads

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=60):
        self._spawn(
            [sys.executable, "-m", "gunicorn", "labeling.wsgi", "-b", f"127.0.0.1:{self.port}", "-w", str(self.workers),
             "-k", "gthread", "--threads", str(self.threads), "--timeout", "60", "--graceful-timeout", "5", "--access-logfile", "-"],
            self.env,
        )
        wait_for(lambda: port_open("127.0.0.1", self.port) or not self.alive, timeout, what="gunicorn")
        if not self.alive:
            raise RuntimeError(f"gunicorn exited:\n{self.log()[-4000:]}")
        return self


class CeleryWorker(_Process):
    """A Celery worker of our own on every queue (the outbox flush runs in it)."""

    def __init__(self, env, log_path, queues=("default", "cpu", "gpu")):
        super().__init__(log_path)
        self.env = env
        self.queues = queues

    def start(self):
        self._spawn(
            [sys.executable, "-m", "celery", "-A", "labeling", "worker", "-Q", ",".join(self.queues), "-c", "1",
             "-P", "solo", "-n", f"degrade-{os.getpid()}@%h", "-l", "info", "--without-gossip", "--without-mingle"],
            self.env,
        )
        return self

    def wait_ready(self, timeout=90):
        def ready():
            if not self.alive:
                raise RuntimeError(f"worker exited:\n{self.log()[-4000:]}")
            return " ready." in self.log()

        wait_for(ready, timeout, what="celery worker ready")
        return self


def postgres_bin(name):
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def postgres_missing():
    """``None`` when a PostgreSQL cluster of our own can be made here, else why not."""
    if not postgres_bin("initdb") or not postgres_bin("pg_ctl"):
        return "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a 'postgres' user to run the cluster as"
    return None


class PostgresCluster:
    """A throwaway PostgreSQL cluster (initdb into a temp dir, trust auth, a free port,
    fsync off), run as the ``postgres`` user when this process is root."""

    def __init__(self):
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="crowdloop-pg-"))
        self.data = self.directory / "data"
        self.logfile = self.directory / "postgres.log"

    def _run(self, *args, check=True):
        command = [str(a) for a in args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, cwd="/tmp")

    def url(self, name="postgres"):
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def create(self):
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
        self._run(postgres_bin("initdb"), "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        return self.start()

    def start(self):
        self._run(
            postgres_bin("pg_ctl"), "-D", self.data, "-l", self.logfile, "-w", "-t", "60", "start", "-o",
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off",
        )
        return self

    def stop(self, mode="fast"):
        self._run(postgres_bin("pg_ctl"), "-D", self.data, "-m", mode, "-w", "-t", "60", "stop", check=False)

    def restart(self, down_s=0.0):
        """Stop (fast: every session is terminated, as a restart does), wait, start again."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def createdb(self, name):
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log(self):
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def destroy(self):
        self.stop(mode="immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self):
        return self.create()

    def __exit__(self, *exc):
        self.destroy()

"""Serving under load on the production stack: gunicorn + PostgreSQL + Redis.

Run from the repository root (about 2 minutes; needs PostgreSQL on 127.0.0.1:5432 with
trust auth for ``postgres`` and Redis on 127.0.0.1:6379)::

    python bench/serving_load.py [--threads 4,16] [--seconds 30] [--gunicorn "-w 3 -k gthread --threads 2"]

Creates a scratch PostgreSQL database and uses an empty Redis database number (both
removed at the end), builds the digits demo project there, and a bench site
(``pass_share=0`` and no minimum solve time: every answer passes and is stored, the costly
path), starts gunicorn on a loopback port with ``CROWDLOOP_ENV=production``, then a load
generator in this process (threads, ``http.client`` keep-alive connections, loopback
only) runs visitor cycles: ``GET /api/v1/challenge`` -> ``POST .../answer`` ->
``POST /api/siteverify``, for a fixed time after a warm-up, and stops by itself. No
image is fetched. One Celery worker on the default queue settles consensus (production
defers it to a debounced task); a sampler reads how long the oldest answer not yet in
consensus has waited, every half second, and the drain time after the load stops. The
same threads then hammer ``OPTIONS /api/v1/challenge`` (middleware only) for the floor
this server and generator reach on this machine.

The widget's rate limits are raised 1000x for the bench through a settings module
written to the scratch directory (``from labeling.settings import *``); their counting
in Redis still runs.
"""
import argparse
import datetime
import http.client
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from labeling.crowd.stats import percentile

MACHINE = "2-core x86_64, python-svc"
RESULTS = ROOT / "bench" / "results" / "serving_load.md"
PG = "postgres://postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379"
SECRET = "0x" + "5e" * 32
SITEKEY = "bench-load-0000-0000-000000000000"
SETTINGS = """from labeling.settings import *  # noqa: F401,F403
from labeling.settings import CROWDLOOP_RATE_LIMITS

CROWDLOOP_RATE_LIMITS = {scope: (hits * 1000, window) for scope, (hits, window) in CROWDLOOP_RATE_LIMITS.items()}
# A throughput bench: the 30 gold items would otherwise spend their exposure budgets
# within the first few hundred challenges (the widget then answers 503, as it should).
CROWDLOOP_CONTROL_SERVES_PER_WINDOW = 10**9
CROWDLOOP_CONTROL_MAX_SERVES = 10**9
"""
TARGET = {"share": 0.25, "p99_ms": 100}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_db_free():
    import redis

    for number in range(15, 1, -1):
        if redis.Redis.from_url(f"{REDIS}/{number}").dbsize() == 0:
            return number
    raise SystemExit("no empty Redis database number between 2 and 15")


def environment(scratch, database, redis_db):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CROWDLOOP_", "DATABASE_URL", "REDIS_URL"))}
    env.update(
        PYTHONPATH=f"{scratch}{os.pathsep}{ROOT}",
        DJANGO_SETTINGS_MODULE="crowdloop_load_settings",
        DATABASE_URL=f"{PG}/{database}",
        REDIS_URL=f"{REDIS}/{redis_db}",
        CROWDLOOP_DATA_DIR=str(scratch / "data"),
        CROWDLOOP_ENV="production",
        SECRET_KEY=secrets.token_urlsafe(48),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="0",
        LOG_LEVEL="WARNING",
    )
    return env


SETUP = f"""
import django
django.setup()
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
from labeling.services.demo import demo_project_create
from labeling.services.sites import site_create
project, _ = demo_project_create()
site_create(name="Load bench", projects=[project], allowed_hostnames=["localhost"], pass_share=0.0,
            min_solve_ms=0, sitekey="{SITEKEY}", secret="{SECRET}")
"""


class Visitor(threading.Thread):
    """Challenge -> answer -> siteverify, again and again, on one keep-alive connection."""

    def __init__(self, index, port, until, record_from, path_only=None):
        super().__init__(daemon=True)
        self.index, self.port, self.until, self.record_from = index, port, until, record_from
        self.path_only = path_only
        self.times = {"challenge": [], "answer": [], "siteverify": [], "options": []}
        self.answers = 0
        self.errors = []
        self.connection = None

    def request(self, method, path, body=None, headers=None):
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            start = time.perf_counter()
            try:
                self.connection.request(method, path, body=body, headers=headers or {})
                response = self.connection.getresponse()
                data = response.read()
            except (http.client.HTTPException, OSError):
                self.connection.close()
                self.connection = None
                if attempt == 2:
                    raise
                continue
            if response.will_close:
                self.connection.close()
                self.connection = None
            return response.status, data, time.perf_counter() - start
        raise AssertionError("unreachable")

    def run(self):
        n = 0
        while time.monotonic() < self.until:
            n += 1
            record = time.monotonic() >= self.record_from
            try:
                if self.path_only:
                    status, _, seconds = self.request("OPTIONS", self.path_only)
                    if record:
                        self.times["options"].append(seconds)
                    if status != 204:
                        self.errors.append(("options", status))
                    continue
                self.cycle(n, record)
            except Exception as exc:  # noqa: BLE001 - a load generator counts every failure
                if record:
                    self.errors.append(("exception", repr(exc)[:200]))

    def cycle(self, n, record):
        headers = {"Origin": "http://localhost", "User-Agent": f"load/{self.index}/{n}"}
        status, data, seconds = self.request("GET", f"/api/v1/challenge?sitekey={SITEKEY}", headers=headers)
        if status != 200:
            if record:
                self.errors.append(("challenge", status, data[:120]))
            return
        payload = json.loads(data)
        if record:
            self.times["challenge"].append(seconds)
        if payload["kind"] == "grid":
            body = {"selected": []}
        elif payload["kind"] == "verify":
            body = {"answers": {item["id"]: True for item in payload["items"]}}
        else:
            body = {"answers": {item["id"]: payload["labels"][0] for item in payload["items"]}}
        status, data, seconds = self.request(
            "POST", f"/api/v1/challenge/{payload['id']}/answer", json.dumps(body).encode(),
            {**headers, "Content-Type": "application/json"},
        )
        result = json.loads(data) if status == 200 else {}
        if not result.get("passed"):
            if record:
                self.errors.append(("answer", status, data[:120]))
            return
        if record:
            self.times["answer"].append(seconds)
            self.answers += 1
        form = urlencode({"secret": SECRET, "response": result["token"]}).encode()
        status, data, seconds = self.request(
            "POST", "/api/siteverify", form, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        if record:
            self.times["siteverify"].append(seconds)
            if status != 200 or not json.loads(data).get("success"):
                self.errors.append(("siteverify", status, data[:120]))


def load(port, threads, warmup, seconds, path_only=None):
    start = time.monotonic()
    record_from, until = start + warmup, start + warmup + seconds
    visitors = [Visitor(i, port, until, record_from, path_only) for i in range(threads)]
    for visitor in visitors:
        visitor.start()
    for visitor in visitors:
        visitor.join(timeout=warmup + seconds + 60)
    times = {key: [t for v in visitors for t in v.times[key]] for key in visitors[0].times}
    return {
        "times": times,
        "answers": sum(v.answers for v in visitors),
        "errors": [e for v in visitors for e in v.errors],
        "seconds": seconds,
    }


class LagSampler(threading.Thread):
    """How long the oldest answer not yet in consensus has waited, every half second
    while the load runs; then how long the queue takes to drain once it stops."""

    SQL = "SELECT EXTRACT(EPOCH FROM now() - min(consensus_stale_since)) FROM labeling_item"

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url, self.samples, self.stop = url, [], threading.Event()

    def _lag(self, cursor):
        cursor.execute(self.SQL + " WHERE consensus_stale_since IS NOT NULL")
        value = cursor.fetchone()[0]
        return float(value) if value is not None else 0.0

    def run(self):
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as connection, connection.cursor() as cursor:
            while not self.stop.is_set():
                self.samples.append(self._lag(cursor))
                time.sleep(0.5)

    def finish(self, timeout=60):
        import psycopg

        self.stop.set()
        self.join(timeout=5)
        start = time.monotonic()
        with psycopg.connect(self.url, autocommit=True) as connection, connection.cursor() as cursor:
            while self._lag(cursor) > 0 and time.monotonic() - start < timeout:
                time.sleep(0.2)
        return {"p50": percentile(self.samples, 50) or 0.0, "max": max(self.samples, default=0.0),
                "drain": time.monotonic() - start}


def wait_ready(port, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("OPTIONS", "/api/v1/challenge")
            if connection.getresponse().status == 204:
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("gunicorn did not answer")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="4,16", help="load generator threads, one run per count")
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--gunicorn", default="-w 3 -k gthread --threads 2", help="gunicorn worker options")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="crowdloop-load-"))
    (scratch / "crowdloop_load_settings.py").write_text(SETTINGS)
    database = f"crowdloop_load_{os.getpid()}"
    redis_db = redis_db_free()
    env = environment(scratch, database, redis_db)
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {database}"], check=True)
    server = None
    try:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", SETUP], env=env, cwd=ROOT, check=True)
        setup_seconds = time.perf_counter() - t0
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "labeling.wsgi", "-b", f"127.0.0.1:{port}", "--log-level", "warning",
             *args.gunicorn.split()],
            env=env, cwd=ROOT, start_new_session=True,
        )
        wait_ready(port)
        celery = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "labeling", "worker", "-Q", "default", "-c", "1", "--pool", "solo",
             "--loglevel", "WARNING"],
            env=env, cwd=ROOT, start_new_session=True,
        )
        runs = {}
        for threads in (int(t) for t in args.threads.split(",")):
            print(f"gunicorn {args.gunicorn} on port {port}; {threads} threads for {args.warmup:.0f} + "
                  f"{args.seconds:.0f} s", flush=True)
            sampler = LagSampler(env["DATABASE_URL"])
            sampler.start()
            runs[threads] = load(port, threads, args.warmup, args.seconds)
            runs[threads]["lag"] = sampler.finish()
            print(f"{runs[threads]['answers'] / args.seconds:.0f} answers/s, {len(runs[threads]['errors'])} errors",
                  flush=True)
        floor = load(port, max(runs), 2, min(args.seconds, 10), path_only="/api/v1/challenge")
        answers_total = _count_answers(env)
    finally:
        for process in (server, locals().get("celery")):
            if process is not None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)
        import redis

        redis.Redis.from_url(f"{REDIS}/{redis_db}").flushdb()
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {database}"], check=False
        )
        shutil.rmtree(scratch, ignore_errors=True)
    lines = report(args, runs, floor, setup_seconds, answers_total, time.perf_counter() - started)
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)


def _count_answers(env):
    code = "import django; django.setup(); from labeling.models import Answer; print(Answer.objects.count())"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def report(args, runs, floor, setup_seconds, answers_total, seconds):
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    floor_rate = len(floor["times"]["options"]) / floor["seconds"]
    lines = [
        "## Serving under load, production stack (gunicorn + PostgreSQL + Redis)",
        "",
        f"- Date: {now}",
        (f"- Machine: {MACHINE} (Python {platform.python_version()}; load average {os.getloadavg()[0]:.1f} at the "
        "end: server, database, Redis and load generator share the 2 cores with other work)"),
        (f"- Command: `python bench/serving_load.py --threads {args.threads} --seconds {args.seconds:.0f} "
        f"--gunicorn \"{args.gunicorn}\"` ({seconds:.0f} s in all, {setup_seconds:.0f} s of it building the database)"),
        (f"- Stack: gunicorn `{args.gunicorn}`, `CROWDLOOP_ENV=production`, PostgreSQL 15 and Redis 7 on 127.0.0.1; "
        "the digits demo project (1,797 items); a bench site with `pass_share=0` and no minimum solve time (every "
        "answer passes and is stored); rate limits raised 1000x and control exposure budgets lifted through a "
        "bench settings module (limits still counted in Redis)."),
        ("- Load: N threads in one Python process on loopback, keep-alive, each looping challenge -> answer -> "
        f"siteverify, each cycle a new visitor (its own User-Agent); {args.warmup:.0f} s warm-up, then "
        f"{args.seconds:.0f} s measured; stops by itself. No images fetched. One Celery worker (`-c 1`, default "
        "queue) settles consensus, deferred by `CROWDLOOP_CONSENSUS_DEFER_S` (1 s in production)."),
        "",
        ("| threads | cycles/s | share of ceiling | challenge p50 / p99 ms | answer p50 / p99 ms | "
         "siteverify p50 / p99 ms | consensus lag p50 / max s | drain s | errors |"),
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    best = None
    for threads, run in runs.items():
        rate = run["answers"] / run["seconds"]
        cells = [
            f"{1000 * percentile(run['times'][key], 50):.0f} / {1000 * percentile(run['times'][key], 99):.0f}"
            if run["times"][key] else "-"
            for key in ("challenge", "answer", "siteverify")
        ]
        cycles = len(run["times"]["answer"]) / run["seconds"]
        share = cycles / max(floor_rate / 3, 1e-9)  # the ceiling: floor requests/s over 3 requests per cycle
        lag = run.get("lag", {})
        lines.append(
            f"| {threads} | **{cycles:.1f}** | {share:.3f} | " + " | ".join(cells)
            + f" | {lag.get('p50', 0):.1f} / {lag.get('max', 0):.1f} | {lag.get('drain', 0):.1f} | {len(run['errors'])} |"
        )
        if best is None or rate > best[0]:
            best = (rate, threads, run)
    rate, threads, run = best
    best_share = rate / max(floor_rate / 3, 1e-9)
    answer_p99 = percentile(run["times"]["answer"], 99) or float("inf")
    options = floor["times"]["options"]
    errors = sum(len(r["errors"]) for r in runs.values())
    lines += [
        "",
        (f"- Floor, same server and generator ({max(runs)} threads): {floor_rate:.0f} requests/s of `OPTIONS "
        f"/api/v1/challenge` (p50 {1000 * percentile(options, 50):.1f} ms, p99 {1000 * percentile(options, 99):.1f} ms); "
        f"the best visitor cycle rate is {rate / floor_rate:.4f}x that ({floor_rate / max(3 * rate, 1e-9):.0f}x the "
        "cost of a no-op per request)."),
        f"- {answers_total:,} answer rows stored in all (one per tile: 4-9 per passed challenge).",
        (f"- Target: at least {TARGET['share']} of the ceiling (floor requests/s ÷ 3 requests per cycle), answer p99 "
         f"≤ {TARGET['p99_ms']} ms, 0 errors: "
         + ("met" if best_share >= TARGET["share"] and answer_p99 * 1000 <= TARGET["p99_ms"] and not errors
            else "**missed**")
         + f" (best {rate:.1f} cycles/s at {threads} threads = {best_share:.3f} of the ceiling, answer p99 "
         f"{1000 * answer_p99:.0f} ms, {errors} errors)."),
    ]
    first = [e for r in runs.values() for e in r["errors"]][:3]
    if first:
        lines.append(f"- First errors: {first}")
    return lines


if __name__ == "__main__":
    main()

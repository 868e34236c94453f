"""The loop closes by itself: a simulated crowd against the real demo stack.

Run from the repository root (about 10 minutes)::

    python bench/crowd.py [--budget 1000] [--minutes 5] [--drain-minutes 4] [--mix honest=0.7,...]

Starts ``manage.py demo`` (Django's server and a Celery worker with beat, on SQLite and
the file-system broker: the embedded default, ``DEBUG=0``) in a temporary
``CROWDLOOP_DATA_DIR`` on a free loopback port, then lets a simulated crowd
(``labeling.crowd``) label the digits over HTTP in real time: registered workers
through the worker API (12 by default, so that the default mix puts every kind among them) and 6 widget visitors at a time on the demo site, with the mix
of honest people (accuracy 0.6-0.95), spammers, same-answer bots, too-fast bots and a
colluding group. Each visitor sends its own address in ``X-Forwarded-For`` and the
server trusts loopback as its proxy (``CROWDLOOP_TRUSTED_PROXIES``), as behind a reverse
proxy in production, so the per-address rate limits apply per visitor.

Nobody clicks anything: consensus runs per answer, full truth inference every
``CROWDLOOP_AGGREGATE_EVERY`` (100 here) answers, a semi-supervised round every
``CROWDLOOP_PIPELINE_EVERY_LABELS`` (25) new human labels, training every
``CROWDLOOP_TRAIN_EVERY_LABELS`` (50), all chained by the Celery tasks. When the
crowd's budget is spent the queue is left to drain; then the database is read: what
was stored, who was caught, the consensus labels against the evaluation truth (with
plain majority vote over the same answers, the baseline of the same run), and the
learning curve of the training runs the loop started by itself.
"""
import argparse
import datetime
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA_DIR = Path(tempfile.mkdtemp(prefix="crowdloop-crowd-"))
RHYTHM = {"CROWDLOOP_AGGREGATE_EVERY": "100", "CROWDLOOP_PIPELINE_EVERY_LABELS": "25",
          "CROWDLOOP_TRAIN_EVERY_LABELS": "50"}
os.environ.update(
    DJANGO_SETTINGS_MODULE="labeling.settings", CROWDLOOP_DATA_DIR=str(DATA_DIR), DEBUG="0", LOG_LEVEL="WARNING",
    CROWDLOOP_TRUSTED_PROXIES="127.0.0.1,::1", **RHYTHM,
)

import django

django.setup()

MACHINE = "2-core x86_64, python-svc"
RESULTS = ROOT / "bench" / "results" / "crowd.md"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stack_start(port, log):
    """``manage.py demo`` on ``port``: prepares the data, then runs the web server and a
    Celery worker with beat until it gets SIGINT."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--port", str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stack_stop(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def loop_busy(project):
    from labeling.models import PipelineRun, RunStatus, TrainingRun

    queued = sum(1 for _ in (DATA_DIR / "broker" / "queue").glob("*")) if (DATA_DIR / "broker" / "queue").exists() else 0
    running = PipelineRun.objects.filter(project=project, status=RunStatus.RUNNING).count()
    training = TrainingRun.objects.filter(project=project, status__in=["queued", "running"]).count()
    return queued + running + training


def crowd_against(base, args):
    """Run the crowd against the stack at ``base``, let the queue drain, read the
    database. Returns the ledger, the evaluation and the timings."""
    from labeling.crowd.accounts import crowd_accounts_provision, crowd_people
    from labeling.crowd.clocks import RealClock
    from labeling.crowd.connectors import http_connector
    from labeling.crowd.evaluation import crowd_evaluate
    from labeling.crowd.simulation import CrowdSpec, SiteAccess, crowd_run, shares_parse
    from labeling.crowd.transport import HttpTransport
    from labeling.models import Project, Site
    from labeling.services.demo import DEMO_SITEKEY, DEMO_SLUG, demo_site_secret

    project = Project.objects.get(slug=DEMO_SLUG)
    site = Site.objects.get(sitekey=DEMO_SITEKEY)
    spec = CrowdSpec(budget=args.budget, workers=args.workers, visitor_seats=args.visitor_seats,
                     shares=shares_parse(args.mix), seed=args.seed)
    workers = crowd_people(spec)
    password = crowd_accounts_provision(project, workers)
    access = SiteAccess(DEMO_SITEKEY, demo_site_secret(), HttpTransport(base, user_agent="demo site server"))
    t0 = time.perf_counter()
    print(f"crowd of {spec.workers} workers + {spec.visitor_seats} visitor seats against {base}", flush=True)
    shown = [0]

    def on_step(ledger):
        if ledger.spent // 100 != shown[0]:
            shown[0] = ledger.spent // 100
            print(f"  {ledger.spent} answers after {time.perf_counter() - t0:.0f} s", flush=True)

    ledger = crowd_run(
        spec, slug=project.slug, site=access, connect=http_connector(base, forwarded_for=True), clock=RealClock(),
        workers=workers, password=password, on_step=on_step, max_wall_s=args.minutes * 60,
    )
    crowd_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    while loop_busy(project) and time.perf_counter() - t1 < args.drain_minutes * 60:
        time.sleep(5)
    timings = (crowd_seconds, time.perf_counter() - t1, loop_busy(project))
    return ledger, crowd_evaluate(project, ledger.people, site), timings


def main():
    from labeling.crowd.evaluation import format_report
    from labeling.crowd.simulation import DEFAULT_SHARES, server_wait

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=5.0, help="wall-time cap of the crowd")
    parser.add_argument("--drain-minutes", type=float, default=4.0, help="wall-time cap of the drain")
    parser.add_argument("--workers", type=int, default=12, help="12: every kind of the default mix among them")
    parser.add_argument("--visitor-seats", type=int, default=6)
    parser.add_argument("--mix", default=",".join(f"{k}={v}" for k, v in DEFAULT_SHARES.items()))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    started = time.perf_counter()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with open(DATA_DIR / "stack.log", "w") as log:
        stack = stack_start(port, log)
        try:
            if not server_wait(base, timeout_s=300):
                raise SystemExit(f"the demo did not come up; see {DATA_DIR / 'stack.log'}")
            ledger, evaluation, (crowd_seconds, drain_seconds, busy) = crowd_against(base, args)
        finally:
            stack_stop(stack)
    lines = report(args, ledger, evaluation, format_report(ledger, evaluation), crowd_seconds, drain_seconds, busy,
                   time.perf_counter() - started)
    shutil.rmtree(DATA_DIR, ignore_errors=True)
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)


def report(args, ledger, evaluation, body, crowd_seconds, drain_seconds, busy, seconds):
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    labels = evaluation["labels"]
    ratio = (labels["consensus_accuracy"] / labels["majority_accuracy"]) if labels["majority_accuracy"] else None
    curve = [run for run in evaluation["training"] if run["status"] == "succeeded"]
    lines = [
        "## The loop, closed by itself: a simulated crowd against the demo stack",
        "",
        f"- Date: {now}",
        (f"- Machine: {MACHINE} (Python {platform.python_version()}; load average {os.getloadavg()[0]:.1f} at the end: "
        "web server, Celery worker, crowd and other work share the 2 cores)"),
        (f"- Command: `python bench/crowd.py --budget {args.budget} --minutes {args.minutes:g} --drain-minutes "
        f"{args.drain_minutes:g}` ({seconds:.0f} s in all: crowd {crowd_seconds:.0f} s, queue drain "
        f"{drain_seconds:.0f} s{'' if not busy else f', stopped with {busy} task(s) still queued or running'})"),
        "- Stack: `manage.py demo` (runserver + `celery worker -Q default,cpu,gpu -c 2 -B`, SQLite, file-system "
        "broker, `DEBUG=0`), rhythm " + ", ".join(f"`{k}={v}`" for k, v in RHYTHM.items()) + "; the crowd in "
        "real time over loopback HTTP, each visitor with its own `X-Forwarded-For` (loopback trusted as proxy).",
        (f"- Crowd: {args.workers} registered workers, {args.visitor_seats} widget visitors at a time, mix "
        f"`{args.mix}`; the simulated people see only HTTP responses and the PNGs they download."),
        "",
        *body,
        "",
        "### Learning curve (training runs the loop started by itself)",
        "",
        "| run | human answers at start | human labels | pseudo-labels used | held-out accuracy | active |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for i, run in enumerate(curve, 1):
        accuracy = "-" if run["eval_accuracy"] is None else f"{100 * run['eval_accuracy']:.1f} %"
        lines.append(
            f"| {i} | {run['human_answers']} | {run['human_labels']} | {run['pseudo_n']} | {accuracy} | "
            f"{'yes' if run['active'] else ''} |"
        )
    if not curve:
        lines.append("| - | | | | no run finished | |")
    lines += [
        "",
        "- Consensus vs plain majority vote over the same answers (same run): "
        + (f"{ratio:.3f}x" if ratio is not None else "-"),
    ]
    return lines


if __name__ == "__main__":
    main()

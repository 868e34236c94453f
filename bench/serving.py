"""Serving speed on the embedded default: sequential latency of the front doors against
project size.

Run from the repository root (a few minutes; most of it building the 1M-item table)::

    python bench/serving.py [--sizes 1000,100000,1000000] [--requests 200] [--out FILE]

A demo-like project (labels 0-9, 30 gold digit images, 2 control items per challenge)
in a fresh on-disk SQLite database (``DEBUG=0``, file-system cache and Celery broker: the
embedded default) grows to each size by bulk-inserting synthetic unlabeled pool items
with random selection scores (``Item.priority``), as if the pipeline had scored them;
they reuse the gold images. Then, one request at a time, through Django's test client
(the whole WSGI stack without a socket):

- widget: ``GET /api/v1/challenge`` (each from a new visitor address) and
  ``POST /api/v1/challenge/<id>/answer``. The bench site has ``pass_share=0`` and no
  minimum solve time, so every answer passes and is stored: the costly path (answers,
  counters, consensus, token);
- worker API: ``GET /api/v1/projects/<slug>/next?n=1`` and ``POST .../answers`` with
  one answer, by 5 logged-in workers in turn;
- the floor: ``OPTIONS /api/v1/challenge`` (middleware only, no database).

Rate limits are raised 1000x for the bench (the counting still runs) and the quality
rules are off (the bench's workers answer blindly). The 1k size is the baseline the
other sizes are compared with.
"""
import argparse
import datetime
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA_DIR = Path(tempfile.mkdtemp(prefix="crowdloop-serving-"))
os.environ.update(
    DJANGO_SETTINGS_MODULE="labeling.settings", CROWDLOOP_DATA_DIR=str(DATA_DIR), DEBUG="0", LOG_LEVEL="WARNING"
)

import django

django.setup()

from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from labeling.crowd.stats import percentile

MACHINE = "2-core x86_64, python-svc"
RESULTS = ROOT / "bench" / "results" / "serving.md"
LABEL_STUDIO = {"next": "152-196 ms", "answer": "~340 ms"}
TARGET_MS = 5.0
INSERT_CHUNK = 50_000

settings.CROWDLOOP_RATE_LIMITS = {scope: (hits * 1000, window) for scope, (hits, window) in settings.CROWDLOOP_RATE_LIMITS.items()}
settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# A latency bench: the 30 gold items would otherwise spend their exposure budgets
# within the first few hundred challenges, and the site would have nothing to ask.
settings.CROWDLOOP_CONTROL_SERVES_PER_WINDOW = 10**9
settings.CROWDLOOP_CONTROL_MAX_SERVES = 10**9


def project_build():
    from sklearn.datasets import load_digits

    from labeling.bridge import digit_png
    from labeling.models import Item, ItemStatus, KnownLabel, Split
    from labeling.services.imports import ImportEntry, LabelRole, items_import
    from labeling.services.projects import project_create
    from labeling.services.sites import site_create
    from labeling.services.workers import quality_rules_update, worker_sign_up

    call_command("migrate", interactive=False, verbosity=0)
    digits = load_digits()
    project = project_create(name="Serving", slug="serving", labels=[str(k) for k in range(10)], image_size=8,
                             open_to_all_workers=True)
    rows = [next(i for i in range(len(digits.target)) if digits.target[i] == k and i >= 3 * j) for k in range(10)
            for j in range(3)]
    entries = [ImportEntry(name=f"load_digits[{row}]", data=digit_png(digits.images[row]),
                           label=str(int(digits.target[row])), split=Split.POOL) for row in sorted(set(rows))]
    items_import(project, entries, label_role=LabelRole.GOLD)
    assert KnownLabel.objects.filter(item__project=project).count() == len(entries)
    Item.objects.filter(project=project).update(status=ItemStatus.LABELED)
    site, _ = site_create(name="Bench site", projects=[project], allowed_hostnames=["localhost"], pass_share=0.0,
                          min_solve_ms=0)
    # The bench's workers answer blindly: rules that would pause them are off.
    quality_rules_update(project, min_control_accuracy=0.0, min_answer_ms=0, max_skips_in_row=0)
    users = [worker_sign_up(username=f"bench-worker-{i}", password=uuid.uuid4().hex) for i in range(5)]
    images = list(Item.objects.filter(project=project).values_list("image", flat=True))
    return project, site, users, images


def items_add(project, images, start, stop, rng):
    """Bulk-insert synthetic unlabeled pool items ``start``..``stop - 1``."""
    now = timezone.now().isoformat()
    sql = (
        "INSERT INTO labeling_item (project_id, text, original, image, thumbnail, width, height, checksum, "
        "source_name, status, split, answer_count, priority, priority_reason, created_at) "
        "VALUES (%s, '', '', %s, '', 32, 32, %s, %s, 'unlabeled', 'pool', 0, %s, '', %s)"
    )
    for chunk in range(start, stop, INSERT_CHUNK):
        rows = [
            (project.pk, images[i % len(images)], f"{i:064d}", f"synthetic[{i}]", rng.random(), now)
            for i in range(chunk, min(chunk + INSERT_CHUNK, stop))
        ]
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(sql, rows)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def timed(call):
    start = time.perf_counter()
    response = call()
    return response, time.perf_counter() - start


def measure(project, site, users, n_requests, max_seconds):
    """Sequential latencies (seconds) per endpoint."""
    times = {"challenge": [], "answer": [], "next": [], "submit": [], "floor": []}
    visitors = iter(range(10**9))
    workers = []
    for user in users:
        client = Client()
        client.force_login(user)
        workers.append(client)

    def challenge_pair(record):
        n = next(visitors)
        client = Client(REMOTE_ADDR=f"198.18.{n // 250 % 250}.{n % 250 + 1}", HTTP_ORIGIN="http://localhost",
                        HTTP_USER_AGENT=f"bench/{n}")
        response, seconds = timed(lambda: client.get("/api/v1/challenge", {"sitekey": site.sitekey}))
        assert response.status_code == 200, response.content[:300]
        payload = response.json()
        if payload["kind"] == "grid":
            body = {"selected": []}
        elif payload["kind"] == "verify":
            body = {"answers": {item["id"]: True for item in payload["items"]}}
        else:
            body = {"answers": {item["id"]: payload["labels"][0] for item in payload["items"]}}
        answered, answer_seconds = timed(lambda: client.post(
            f"/api/v1/challenge/{payload['id']}/answer", json.dumps(body), content_type="application/json"))
        assert answered.status_code == 200 and answered.json()["passed"], answered.content[:300]
        if record:
            times["challenge"].append(seconds)
            times["answer"].append(answer_seconds)

    def worker_pair(i, record):
        client = workers[i % len(workers)]
        response, seconds = timed(lambda: client.get(f"/api/v1/projects/{project.slug}/next", {"n": 1}))
        assert response.status_code == 200, response.content[:300]
        items = response.json()["items"]
        assert items, "no task"
        body = [{"id": items[0]["id"], "label": "0", "key": uuid.uuid4().hex, "time_ms": 2000}]
        answered, answer_seconds = timed(lambda: client.post(
            f"/api/v1/projects/{project.slug}/answers", json.dumps(body), content_type="application/json"))
        assert answered.status_code == 200, answered.content[:300]
        if record:
            times["next"].append(seconds)
            times["submit"].append(answer_seconds)

    floor = Client()
    for i in range(10):  # warm-up
        challenge_pair(False)
        worker_pair(i, False)
    deadline = time.monotonic() + max_seconds
    for i in range(n_requests):
        if time.monotonic() > deadline:
            break
        challenge_pair(True)
        worker_pair(i, True)
        times["floor"].append(timed(lambda: floor.options("/api/v1/challenge"))[1])
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per endpoint and size")
    parser.add_argument("--max-seconds", type=float, default=90, help="time cap of the timed requests per size")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    rng = random.Random(0)
    started = time.perf_counter()
    results, builds = {}, {}
    try:
        project, site, users, images = project_build()
        have = 0
        for size in sizes:
            t0 = time.perf_counter()
            items_add(project, images, have, size, rng)
            builds[size] = time.perf_counter() - t0
            have = size
            print(f"{size} items: built in {builds[size]:.0f} s", flush=True)
            results[size] = measure(project, site, users, args.requests, args.max_seconds)
            print({k: f"{1000 * percentile(v, 50):.1f} ms" for k, v in results[size].items()}, flush=True)
        db_bytes = Path(settings.DATABASES["default"]["NAME"]).stat().st_size
    finally:
        connection.close()
        shutil.rmtree(DATA_DIR, ignore_errors=True)
    text = "\n".join(report(results, builds, sizes, time.perf_counter() - started, db_bytes, args)) + "\n"
    print(text)
    Path(args.out).write_text(text)


def report(results, builds, sizes, seconds, db_bytes, args):
    names = {
        "challenge": "widget: next challenge", "answer": "widget: answer (passes, stored)",
        "next": "worker API: next (n=1)", "submit": "worker API: one answer", "floor": "floor: OPTIONS (no database)",
    }
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Serving speed, embedded default (SQLite)",
        "",
        f"- Date: {now}",
        (f"- Machine: {MACHINE} (Python {platform.python_version()}, SQLite {__import__('sqlite3').sqlite_version}; "
        f"load average {os.getloadavg()[0]:.1f} at the end: the cores are shared)"),
        f"- Command: `python bench/serving.py --sizes {args.sizes} --requests {args.requests}` ({seconds:.0f} s in all; "
        "bulk insert: " + ", ".join(f"{size:,} items {builds[size]:.0f} s" for size in sizes)
        + f"; database file {db_bytes / 2**20:.0f} MiB at the largest size)",
        ("- Sequential requests through Django's test client (WSGI stack, middleware, views, ORM, no socket); "
        "`DEBUG=0`; rate limits raised 1000x for the bench (still counted in the file-system cache); quality "
        "rules off (the bench's workers answer blindly); control exposure budgets lifted (the same 30 gold items "
        "serve every challenge)."),
        "",
        "| endpoint | " + " | ".join(f"{size:,} items p50 / p99 ms" for size in sizes) + " | p50 vs 1k |",
        "|---|" + "---:|" * (len(sizes) + 1),
    ]
    base = sizes[0]
    for key, name in names.items():
        cells = []
        for size in sizes:
            values = results[size][key]
            cells.append(f"{1000 * percentile(values, 50):.1f} / {1000 * percentile(values, 99):.1f} (n={len(values)})")
        ratio = ", ".join(
            f"{percentile(results[size][key], 50) / percentile(results[base][key], 50):.2f}x" for size in sizes[1:]
        )
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio} |")
    lines += ["", "### Targets", ""]
    for key in ("challenge", "answer", "next", "submit"):
        worst = max(percentile(results[size][key], 50) for size in sizes) * 1000
        verdict = "met" if worst <= TARGET_MS else "**missed**"
        lines.append(f"- {names[key]}: p50 ≤ {TARGET_MS:.0f} ms at every size: worst p50 {worst:.1f} ms — {verdict}")
    lines.append(
        f"- For scale: Label Studio 1.23.2 on this kind of machine: `next` {LABEL_STUDIO['next']} p50, an annotation "
        f"{LABEL_STUDIO['answer']} (quoted, not measured here)."
    )
    return lines


if __name__ == "__main__":
    main()

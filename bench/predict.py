"""Prediction speed through the owners' API, with the model cached per process against
loading it from storage on every call (what ``model_predict`` did before).

Run from the repository root (about a minute)::

    python bench/predict.py [--batch 1000] [--repeats 5] [--singles 300] [--uncached 30] [--out FILE]

A fresh on-disk SQLite database (``DEBUG=0``) gets the demo's digits: 1,797 scikit-learn
``load_digits`` images as 32x32 PNGs, 3 gold per class, and a real training run of the
default config (a CNN of width 32 on 8x8 inputs, 3 epochs: its weights do not change the
speed) that becomes the active model. Then, one request at a time through Django's test
client (the whole WSGI stack, no socket), authenticated by an owner token:

- batch: ``POST /api/v1/projects/digits/predict/batch`` with ``--batch`` PNGs as
  repeated multipart ``files``, as one ``zip``, and as stored ``items`` ids; images/s
  counts the whole call, the client building the request included;
- single: ``POST /api/v1/projects/digits/predict`` with one PNG, the model cached;
- per-call loading: the same single request with the process's cache emptied before
  each call, so every call loads the model from storage; once on one CPU thread per call
  (``CROWDLOOP_PREDICT_THREADS=1``, isolating the cache), once on torch's default threads
  (as ``model_predict`` was before this change, which also normalised each upload twice);
- the floor: ``GET /api/v1/projects/digits/`` with the same token (authentication, one
  project query, JSON), what any owner request costs before it predicts anything.
"""
import argparse
import datetime
import io
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA_DIR = Path(tempfile.mkdtemp(prefix="crowdloop-predict-"))
os.environ.update(
    DJANGO_SETTINGS_MODULE="labeling.settings", CROWDLOOP_DATA_DIR=str(DATA_DIR), DEBUG="0", LOG_LEVEL="WARNING"
)

import django

django.setup()

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.client import MULTIPART_CONTENT, encode_multipart

from labeling.crowd.stats import percentile

MACHINE = "2-core x86_64, python-svc"
RESULTS = ROOT / "bench" / "results" / "predict.md"
TARGET_BATCH_PER_S = 500
TARGET_SINGLE_P50_MS = 20.0
BOUNDARY = "BenchBoundary"


def setup():
    """The digits project with a trained active model, and an owner token."""
    from django.contrib.auth import get_user_model

    from labeling.models import Item, Project, RunStatus, TrainingRun
    from labeling.services.demo import demo_project_create
    from labeling.services.owner_tokens import owner_token_create
    from labeling.services.training import default_config, training_run_execute

    call_command("migrate", interactive=False, verbosity=0)
    owner = get_user_model().objects.create_user("bench-owner")
    project, _ = demo_project_create(owner=owner)
    config = {**default_config(project), "model": "cnn", "epochs": 3, "patience": 3}
    run = training_run_execute(TrainingRun.objects.create(project=project, config=config, n_epochs=3).pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    project = Project.objects.get(pk=project.pk)
    assert project.active_run_id == run.pk
    _, token = owner_token_create(user=owner, name="bench")
    items = list(Item.objects.filter(project=project).order_by("id").only("id", "image"))
    pngs = []
    for item in items:
        with item.image.open("rb") as handle:
            pngs.append(handle.read())
    return project, token, [item.pk for item in items], pngs


def timed(call):
    start = time.perf_counter()
    response = call()
    seconds = time.perf_counter() - start
    assert response.status_code == 200, response.content[:300]
    return response, seconds


def zip_bytes(pngs):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i, data in enumerate(pngs):
            archive.writestr(f"digit-{i}.png", data)
    return buffer.getvalue()


def measure(project, token, ids, pngs, args):
    from labeling.services.predictions import predictions_cache_clear

    client = Client(HTTP_AUTHORIZATION=f"Token {token}")
    single_url = f"/api/v1/projects/{project.slug}/predict"
    batch_url = f"/api/v1/projects/{project.slug}/predict/batch"
    batch = [pngs[i % len(pngs)] for i in range(args.batch)]
    batch_ids = [ids[i % len(ids)] for i in range(args.batch)]
    archive = zip_bytes(batch)

    def files_call():
        files = [SimpleUploadedFile(f"digit-{i}.png", data, content_type="image/png") for i, data in enumerate(batch)]
        body = encode_multipart(BOUNDARY, {"files": files})
        return client.post(batch_url, body, content_type=f"multipart/form-data; boundary={BOUNDARY}")

    def zip_call():
        upload = SimpleUploadedFile("batch.zip", archive, content_type="application/zip")
        return client.post(batch_url, {"zip": upload}, content_type=MULTIPART_CONTENT)

    def items_call():
        return client.post(batch_url, {"items": batch_ids}, content_type="application/json")

    def single_call(i):
        upload = SimpleUploadedFile("digit.png", pngs[i % len(pngs)], content_type="image/png")
        return client.post(single_url, {"file": upload}, content_type=MULTIPART_CONTENT)

    times = {}
    for name, call in (("files", files_call), ("zip", zip_call), ("items", items_call)):
        response, _ = timed(call)  # warm-up (and the model's first load)
        rows = response.json()["results"]
        assert len(rows) == args.batch and all("label" in row for row in rows), rows[:3]
        times[name] = [timed(call)[1] for _ in range(args.repeats)]
    for i in range(20):
        timed(lambda i=i: single_call(i))
    times["single"] = [timed(lambda i=i: single_call(i))[1] for i in range(args.singles)]
    for key, threads in (("uncached", 1), ("before", None)):
        settings.CROWDLOOP_PREDICT_THREADS = threads
        times[key] = []
        for i in range(args.uncached):
            predictions_cache_clear()
            times[key].append(timed(lambda i=i: single_call(i))[1])
    settings.CROWDLOOP_PREDICT_THREADS = 1
    times["floor"] = [timed(lambda: client.get(f"/api/v1/projects/{project.slug}/"))[1] for _ in range(args.singles)]
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000, help="images per batch request")
    parser.add_argument("--repeats", type=int, default=5, help="timed batch requests per kind")
    parser.add_argument("--singles", type=int, default=300, help="timed single requests, model cached")
    parser.add_argument("--uncached", type=int, default=30, help="timed single requests, model loaded per call")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    started = time.perf_counter()
    try:
        project, token, ids, pngs = setup()
        prepared = time.perf_counter() - started
        times = measure(project, token, ids, pngs, args)
    finally:
        connection.close()
        shutil.rmtree(DATA_DIR, ignore_errors=True)
    text = "\n".join(report(times, args, prepared, time.perf_counter() - started)) + "\n"
    print(text)
    Path(args.out).write_text(text)


def report(times, args, prepared, seconds):
    import torch

    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    uncached_p50 = percentile(times["uncached"], 50)
    single_p50 = percentile(times["single"], 50)
    lines = [
        "## Predictions (owners' API)",
        "",
        f"- Date: {now}",
        (f"- Machine: {MACHINE} (Python {platform.python_version()}, torch {torch.__version__}, "
         f"{torch.get_num_threads()} threads by default; load average {os.getloadavg()[0]:.1f} at the end: the cores "
         "are shared)"),
        (f"- Command: `python bench/predict.py --batch {args.batch} --repeats {args.repeats} --singles {args.singles} "
         f"--uncached {args.uncached}` ({seconds:.0f} s in all, {prepared:.0f} s of it preparing the project and "
         "training its model)"),
        ("- Sequential requests through Django's test client (WSGI stack, token authentication, no socket), "
         "`DEBUG=0`; the digits (32x32 PNGs, ~0.3 kB) through the default CNN; times include building the request."),
        "",
        "| request | images per call | p50 ms | images/s (p50) | vs loading per call | vs before |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    per_call_rate = 1 / uncached_p50
    before_p50 = percentile(times["before"], 50)
    for key, name in (
        ("files", "batch: multipart `files`"), ("zip", "batch: one `zip`"), ("items", "batch: stored `items` ids"),
    ):
        p50 = statistics.median(times[key])
        rate = args.batch / p50
        lines.append(
            f"| {name} | {args.batch} | {1000 * p50:.0f} | {rate:,.0f} | {rate / per_call_rate:.0f}x "
            f"| {rate * before_p50:.0f}x |"
        )
    lines += [
        (f"| single, model cached (p95 {1000 * percentile(times['single'], 95):.1f} ms) | 1 | {1000 * single_p50:.1f} "
         f"| {1 / single_p50:,.0f} | {uncached_p50 / single_p50:.1f}x | {before_p50 / single_p50:.1f}x |"),
        (f"| single, model loaded per call, 1 thread | 1 | {1000 * uncached_p50:.0f} | {per_call_rate:,.1f} | 1x "
         f"| {before_p50 / uncached_p50:.1f}x |"),
        (f"| single, model loaded per call, torch's default threads (before) | 1 | {1000 * before_p50:.0f} "
         f"| {1 / before_p50:,.1f} | {uncached_p50 / before_p50:.2f}x | 1x |"),
        (f"| floor: `GET` the project, same token (no prediction) | - | {1000 * percentile(times['floor'], 50):.1f} "
         "| - | - | - |"),
    ]
    best = max(args.batch / statistics.median(times[key]) for key in ("files", "zip", "items"))
    worst = min(args.batch / statistics.median(times[key]) for key in ("files", "zip", "items"))
    lines += [
        "",
        "### Targets",
        "",
        (f"- batch ≥ {TARGET_BATCH_PER_S} images/s: {worst:,.0f}-{best:,.0f} images/s — "
         f"{'met' if worst >= TARGET_BATCH_PER_S else '**missed**'}"),
        (f"- single p50 ≤ {TARGET_SINGLE_P50_MS:.0f} ms: {1000 * single_p50:.1f} ms — "
         f"{'met' if 1000 * single_p50 <= TARGET_SINGLE_P50_MS else '**missed**'}"),
    ]
    return lines


if __name__ == "__main__":
    main()

"""Import speed through ``labeling.services.imports.items_import``: texts and images.

Run from the repository root (about a minute)::

    python bench/import_speed.py [--texts 100000] [--images 3000] [--database-url postgres://...]

A fresh database (on-disk SQLite under a temporary ``CROWDLOOP_DATA_DIR`` by default,
the embedded default; or a scratch PostgreSQL database created and dropped with
``--database-url``) and a temporary ``MEDIA_ROOT``. Each workload is imported once into
a new project, in the service's default batches (``CROWDLOOP_IMPORT_BATCH_SIZE``), and
timed end to end: hashing, duplicate check, image decoding and normalisation, files
written (original, normalised copy, thumbnail), rows written per batch transaction.

- texts: short distinct sentences (``ImportEntry(text=...)``), unlabeled;
- small images: 32x32 grayscale PNGs, the demo's digit renderings with per-copy noise so
  each is distinct content;
- photos: 256x256 RGB JPEGs (smooth noise), a tenth of the small-image count;

all unlabeled (items to be labeled; a labeled import adds one gold row per item).

Baselines measured in the same run: for texts, ``Item.objects.bulk_create`` of the same
rows alone (no hashing, no duplicate check, no report); for images, the per-image CPU
floor of the service's own decoding and normalisation (``image_normalise``, no database,
no files).
"""
import argparse
import datetime
import io
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA_DIR = Path(tempfile.mkdtemp(prefix="crowdloop-import-"))
MACHINE = "2-core x86_64, python-svc"
RESULTS = ROOT / "bench" / "results" / "import_speed.md"
TARGETS = {"texts": 50_000, "small images": 2_000}
WORDS = ["quick", "brown", "lazy", "dog", "cat", "bird", "fish", "tree", "river", "stone", "cloud", "rain", "sun", "moon", "star", "night", "day", "light", "dark", "red", "green", "blue", "happy", "sad", "calm", "loud", "soft", "hard"]


def setup(database_url):
    os.environ.update(
        DJANGO_SETTINGS_MODULE="labeling.settings", CROWDLOOP_DATA_DIR=str(DATA_DIR), DEBUG="0", LOG_LEVEL="WARNING",
        MEDIA_ROOT=str(DATA_DIR / "media"),
    )
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def texts(n):
    import random

    rng = random.Random(0)
    return [(f"{i} " + " ".join(rng.choice(WORDS) for _ in range(8)), str(i % 3)) for i in range(n)]


def small_pngs(n):
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits().images
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        values = np.clip(digits[i % len(digits)] + rng.normal(0, 0.6, (8, 8)), 0, 16)
        pixels = (255 - values * (255 / 16)).round().astype(np.uint8)
        image = Image.fromarray(pixels, mode="L").resize((32, 32), Image.Resampling.NEAREST)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        out.append((buffer.getvalue(), str(i % 10)))
    return out


def photo_jpegs(n):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        coarse = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        image = Image.fromarray(coarse, mode="RGB").resize((256, 256), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85)
        out.append((buffer.getvalue(), str(i % 10)))
    return out


def run_import(name, data_kind, rows, *, image):
    from labeling.models import Item
    from labeling.services.imports import ImportEntry, items_import
    from labeling.services.projects import project_create

    project = project_create(name=name, labels=[str(k) for k in range(10)], data_kind=data_kind)
    if image:
        entries = [ImportEntry(name=f"{i}.img", data=data) for i, (data, _) in enumerate(rows)]
    else:
        entries = [ImportEntry(name=f"row {i}", text=text) for i, (text, _) in enumerate(rows)]
    start = time.perf_counter()
    report = items_import(project, entries)
    seconds = time.perf_counter() - start
    assert report.created == len(rows) and not report.problems, report.as_dict(3)
    assert Item.objects.filter(project=project).count() == len(rows)
    return seconds


def text_floor(rows):
    from django.db import transaction

    from labeling.models import Item
    from labeling.services.projects import project_create

    project = project_create(name="floor", labels=["0", "1", "2"], data_kind="text")
    items = [Item(project=project, text=text, checksum=f"{i:064d}", source_name=f"row {i}") for i, (text, _) in
             enumerate(rows)]
    start = time.perf_counter()
    for chunk in range(0, len(items), 1000):
        with transaction.atomic():
            Item.objects.bulk_create(items[chunk:chunk + 1000])
    return time.perf_counter() - start


def image_floor(rows):
    from django.conf import settings

    from labeling.services.media import image_normalise

    start = time.perf_counter()
    for data, _ in rows:
        image_normalise(data, max_side=settings.CROWDLOOP_MAX_IMAGE_SIDE, thumbnail_side=settings.CROWDLOOP_THUMBNAIL_SIDE,
                        max_pixels=settings.CROWDLOOP_MAX_IMAGE_PIXELS)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=100_000)
    parser.add_argument("--images", type=int, default=3_000)
    parser.add_argument("--database-url", default="", help="a PostgreSQL server (a scratch database is made there)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    scratch = None
    if args.database_url:
        parts = urlsplit(args.database_url)
        scratch = f"crowdloop_import_{os.getpid()}"
        _psql(parts, f"CREATE DATABASE {scratch}")
        database_url = parts._replace(path=f"/{scratch}").geturl()
    else:
        database_url = ""
    started = time.perf_counter()
    try:
        setup(database_url)
        from django.db import connection

        workloads = [
            ("texts", "text", texts(args.texts), False),
            ("small images", "image", small_pngs(args.images), True),
            ("photos", "image", photo_jpegs(max(args.images // 10, 1)), True),
        ]
        results = []
        for name, kind, rows, image in workloads:
            seconds = run_import(name, kind, rows, image=image)
            floor = image_floor(rows) if image else text_floor(rows)
            results.append((name, len(rows), seconds, floor))
            print(f"{name}: {len(rows) / seconds:,.0f} items/s (floor {len(rows) / floor:,.0f}/s)", flush=True)
        vendor = f"{connection.vendor} {connection.Database.sqlite_version if connection.vendor == 'sqlite' else ''}"
        connection.close()
    finally:
        shutil.rmtree(DATA_DIR, ignore_errors=True)
        if scratch:
            _psql(urlsplit(args.database_url), f"DROP DATABASE IF EXISTS {scratch}")
    lines = report(results, args, vendor.strip(), time.perf_counter() - started)
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)


def _psql(parts, sql):
    subprocess.run(["psql", "-h", parts.hostname, "-p", str(parts.port or 5432), "-U", parts.username or "postgres",
                    "-d", "postgres", "-qc", sql], check=True)


def report(results, args, vendor, seconds):
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = f"python bench/import_speed.py --texts {args.texts} --images {args.images}"
    if args.database_url:
        command += f" --database-url {args.database_url}"
    lines = [
        f"## Import speed ({vendor})",
        "",
        f"- Date: {now}",
        (f"- Machine: {MACHINE} (Python {platform.python_version()}; load average {os.getloadavg()[0]:.1f} at the "
        "end: the cores are shared)"),
        f"- Command: `{command}` ({seconds:.0f} s in all, generating the inputs included)",
        ("- `items_import` end to end, default batches of 1,000 (one transaction each); files to a local "
        "`MEDIA_ROOT`. Floor: texts, `bulk_create` of the same rows alone; images, `image_normalise` alone."),
        "",
        "| workload | items | seconds | items/s | floor items/s | ratio to floor | target |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, n, secs, floor in results:
        rate = n / secs
        target = TARGETS.get(name)
        verdict = "-" if target is None else (f"≥ {target:,}/s: " + ("met" if rate >= target else "**missed**"))
        lines.append(
            f"| {name} | {n:,} | {secs:.1f} | **{rate:,.0f}** | {n / floor:,.0f} | {floor / secs:.2f}x | {verdict} |"
        )
    return lines


if __name__ == "__main__":
    main()

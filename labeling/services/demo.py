"""The demo project: scikit-learn's bundled handwritten digits, rendered as PNGs.

Rows 0-1399 of ``load_digits`` are the pool, rows 1400-1796 the held-out test set (the
split published few-label baselines use). Every item's true label is stored as
evaluation truth, apart from gold; a few pool items per class become gold.
"""
import io
import secrets

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils.crypto import salted_hmac
from PIL import Image

from labeling.models import (
    EvaluationTruth,
    Item,
    ItemStatus,
    KnownLabel,
    KnownLabelSource,
    Project,
    QualityRules,
    Site,
    SiteMode,
    Split,
)
from labeling.services.imports import ImportEntry, LabelRole, items_import
from labeling.services.projects import project_create, project_stats_refresh
from labeling.services.sites import secret_hash, site_create
from labeling.services.workers import worker_for_user, worker_sign_up

DEMO_SLUG = "digits"
POOL_SIZE = 1400
GOLD_PER_CLASS = 3
UPSCALE = 4


def digit_png(values):
    """An 8x8 array of 0..16 ink values as a dark-on-white grayscale PNG, upscaled."""
    pixels = (255 - np.asarray(values, dtype=np.float64) * (255.0 / 16.0)).round().astype(np.uint8)
    image = Image.fromarray(pixels, mode="L").resize((8 * UPSCALE, 8 * UPSCALE), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def demo_project_create(*, owner=None, progress=None, gold_per_class=GOLD_PER_CLASS, seed=0):
    """Create (or complete) the digits demo project; safe to run twice."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    project = Project.objects.filter(slug=DEMO_SLUG).first()
    if project is None:
        project = project_create(
            name="Handwritten digits",
            slug=DEMO_SLUG,
            labels=[str(k) for k in range(10)],
            data_kind="image",
            owner=owner,
            description="1,797 real handwritten digits from scikit-learn's load_digits.",
            image_size=8,
        )
    entries = [
        ImportEntry(
            name=f"load_digits[{row}]",
            data=digit_png(digits.images[row]),
            label=str(int(digits.target[row])),
            split=Split.POOL if row < POOL_SIZE else Split.HOLDOUT,
        )
        for row in range(len(digits.target))
    ]
    report = items_import(project, entries, label_role=LabelRole.EVALUATION, progress=progress)
    _gold_choose(project, gold_per_class, seed)
    project_stats_refresh(project)
    return project, report


def _gold_choose(project, per_class, seed):
    """Make ``per_class`` random pool items of each class gold (if none are yet)."""
    if KnownLabel.objects.filter(item__project=project).exists():
        return
    truths = list(
        EvaluationTruth.objects.filter(item__project=project, item__split=Split.POOL)
        .order_by("item_id")
        .values_list("item_id", "label_id")
    )
    rng = np.random.default_rng(seed)
    chosen = []
    for label_id in sorted({label for _, label in truths}):
        ids = [item for item, label in truths if label == label_id]
        chosen += [(int(i), label_id) for i in rng.choice(ids, size=min(per_class, len(ids)), replace=False)]
    with transaction.atomic():
        KnownLabel.objects.bulk_create(
            [KnownLabel(item_id=item, label_id=label, source=KnownLabelSource.GOLD) for item, label in chosen]
        )
        Item.objects.filter(pk__in=[item for item, _ in chosen]).update(status=ItemStatus.LABELED)


# --- The widget: a demo site and the public test keys -------------------------------------------

DEMO_SITEKEY = "00000000-demo-4000-8000-000000000000"
TEST_PASS_SITEKEY = "10000000-ffff-ffff-ffff-000000000001"
TEST_PASS_SECRET = "0x0000000000000000000000000000000000000001"
TEST_FAIL_SITEKEY = "20000000-ffff-ffff-ffff-000000000002"
TEST_FAIL_SECRET = "0x0000000000000000000000000000000000000002"


def demo_site_secret():
    """The demo site's secret, derived from ``SECRET_KEY`` so that the demo sign-up
    page (the "site owner's server") can verify without storing it anywhere."""
    return "0x" + salted_hmac("crowdloop.services.demo.site-secret", DEMO_SITEKEY, algorithm="sha256").hexdigest()


def demo_site_create(project, *, hostnames=None, **difficulty):
    """The site behind ``/demo/signup/``: the digits project, on local hostnames and
    those of ``ALLOWED_HOSTS`` (not Django's test client's ``testserver``). Safe to run
    twice; the secret is derived, not stored."""
    if hostnames is None:
        hostnames = ["localhost", "127.0.0.1", "::1"] + [
            host
            for host in settings.ALLOWED_HOSTS
            if "*" not in host and not host.startswith(".") and host != "testserver"
        ]
    site = Site.objects.filter(sitekey=DEMO_SITEKEY).first()
    if site is None:
        site, _ = site_create(
            name="Demo sign-up page", projects=[project], allowed_hostnames=hostnames,
            sitekey=DEMO_SITEKEY, secret=demo_site_secret(), **difficulty,
        )
    elif site.secret_hash != secret_hash(demo_site_secret()):
        Site.objects.filter(pk=site.pk).update(secret_hash=secret_hash(demo_site_secret()))
    return site


def widget_test_keys_create():
    """The public test keys: one pair that always passes, one that always fails. They
    have no project, so they never produce labels."""
    sites = []
    for name, mode, sitekey, secret in (
        ("Test key: always passes", SiteMode.TEST_PASS, TEST_PASS_SITEKEY, TEST_PASS_SECRET),
        ("Test key: always fails", SiteMode.TEST_FAIL, TEST_FAIL_SITEKEY, TEST_FAIL_SECRET),
    ):
        site = Site.objects.filter(sitekey=sitekey).first()
        if site is None:
            site, _ = site_create(name=name, mode=mode, sitekey=sitekey, secret=secret)
        sites.append(site)
    return sites


# --- Crowd workers: the project open to all, and a demo worker account ------------------------

DEMO_WORKER = "worker"
DEMO_MIN_ANSWER_MS = 300  # an 8x8 digit takes a practised worker well under the default 800 ms


def demo_crowd_open(project):
    """Open the demo project to every registered worker, with rules suited to digits."""
    Project.objects.filter(pk=project.pk).update(open_to_all_workers=True)
    QualityRules.objects.get_or_create(project=project, defaults={"min_answer_ms": DEMO_MIN_ANSWER_MS})


def demo_worker_create():
    """Create the demo worker account; returns its new password, or ``None`` if it exists."""
    user = get_user_model().objects.filter(username=DEMO_WORKER).first()
    if user is not None:
        worker_for_user(user)
        return None
    password = secrets.token_urlsafe(12)
    worker_sign_up(username=DEMO_WORKER, password=password)
    return password

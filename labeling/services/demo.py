"""The demo project: scikit-learn's bundled handwritten digits, rendered as PNGs.

Rows 0-1399 of ``load_digits`` are the pool, rows 1400-1796 the held-out test set (the
split published few-label baselines use). Every item's true label is stored as
evaluation truth, apart from gold; a few pool items per class become gold.
"""
import errno
import json
import os
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils.crypto import salted_hmac

from labeling import bridge
from labeling.models import (
    EvaluationTruth,
    Item,
    ItemStatus,
    KnownLabel,
    KnownLabelSource,
    Project,
    QualityRules,
    Site,
    Split,
)
from labeling.services import hot
from labeling.services.imports import ImportEntry, ImportReport, LabelRole, items_import
from labeling.services.projects import project_create, project_stats_refresh
from labeling.services.sites import (
    FAIL_TEST_SECRET,
    FAIL_TEST_SITEKEY,
    HCAPTCHA_TEST_SECRET,
    HCAPTCHA_TEST_SITEKEY,
    secret_hash,
    site_create,
    widget_test_keys_ensure,
)
from labeling.services.workers import worker_for_user, worker_sign_up

DEMO_SLUG = "digits"
POOL_SIZE = 1400
GOLD_PER_CLASS = 3


def demo_project_create(
    *, owner: Any = None, progress: Callable[[int], None] | None = None, gold_per_class: int = GOLD_PER_CLASS,
    seed: int = 0,
) -> tuple[Project, ImportReport]:
    """Create (or complete) the digits demo project; safe to run twice."""
    digits = bridge.digits_pngs()
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
            name=f"load_digits[{row}]", data=png, label=label, split=Split.POOL if row < POOL_SIZE else Split.HOLDOUT
        )
        for row, (png, label) in enumerate(digits)
    ]
    report = items_import(project, entries, label_role=LabelRole.EVALUATION, progress=progress)
    _gold_choose(project, gold_per_class, seed)
    project_stats_refresh(project)
    from labeling.services.loop import import_finished

    import_finished(project)
    return project, report


def _gold_choose(project: Project, per_class: int, seed: int) -> None:
    """Make ``per_class`` random pool items of each class gold (if none are yet)."""
    if KnownLabel.objects.filter(item__project=project).exists():
        return
    truths = list(
        EvaluationTruth.objects.filter(item__project=project, item__split=Split.POOL)
        .order_by("item_id")
        .values_list("item_id", "label_id")
    )
    chosen = bridge.per_class_sample(truths, per_class, seed)
    with transaction.atomic():
        KnownLabel.objects.bulk_create(
            [KnownLabel(item_id=item, label_id=label, source=KnownLabelSource.GOLD) for item, label in chosen]
        )
        Item.objects.filter(pk__in=[item for item, _ in chosen]).update(status=ItemStatus.LABELED)


# --- The widget: a demo site and the public test keys -------------------------------------------

DEMO_SITEKEY = "00000000-demo-4000-8000-000000000000"
TEST_PASS_SITEKEY = HCAPTCHA_TEST_SITEKEY
TEST_PASS_SECRET = HCAPTCHA_TEST_SECRET
TEST_FAIL_SITEKEY = FAIL_TEST_SITEKEY
TEST_FAIL_SECRET = FAIL_TEST_SECRET


def demo_site_secret() -> str:
    """The demo site's secret, derived from ``SECRET_KEY`` so that the demo sign-up
    page (the "site owner's server") can verify without storing it anywhere."""
    return "0x" + salted_hmac("crowdloop.services.demo.site-secret", DEMO_SITEKEY, algorithm="sha256").hexdigest()


def demo_site_create(project: Project, *, hostnames: list[str] | None = None, **difficulty: Any) -> Site:
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


def widget_test_keys_create() -> list[Site]:
    """The published test keys (hCaptcha's and reCAPTCHA's test pairs pass, one pair
    fails); see :func:`labeling.services.sites.widget_test_keys_ensure`."""
    return widget_test_keys_ensure()


# --- Crowd workers: the project open to all, and a demo worker account ------------------------

DEMO_WORKER = "worker"
DEMO_MIN_ANSWER_MS = 300  # an 8x8 digit takes a practised worker well under the default 800 ms


def demo_crowd_open(project: Project) -> None:
    """Open the demo project to every registered worker, with rules suited to digits."""
    Project.objects.filter(pk=project.pk).update(open_to_all_workers=True)
    hot.project_forget(project)
    QualityRules.objects.get_or_create(project=project, defaults={"min_answer_ms": DEMO_MIN_ANSWER_MS})


def demo_worker_create() -> str | None:
    """Create the demo worker account; returns its new password, or ``None`` if it exists."""
    user = get_user_model().objects.filter(username=DEMO_WORKER).first()
    if user is not None:
        worker_for_user(user)
        return None
    password = secrets.token_urlsafe(12)
    worker_sign_up(username=DEMO_WORKER, password=password)
    _password_remember(DEMO_WORKER, password)
    return password


# --- The demo accounts' passwords -------------------------------------------------------------

DEMO_ADMIN = "admin"
DEMO_ACCOUNTS = (DEMO_ADMIN, DEMO_WORKER)


def demo_admin_create() -> tuple[Any, str | None]:
    """Create the demo superuser; returns ``(user, new password)``, the password ``None``
    if the account exists."""
    User = get_user_model()
    admin = User.objects.filter(username=DEMO_ADMIN).first()
    if admin is not None:
        return admin, None
    password = secrets.token_urlsafe(12)
    admin = User.objects.create_superuser(DEMO_ADMIN, "admin@localhost", password)
    _password_remember(DEMO_ADMIN, password)
    return admin, password


def demo_passwords_path() -> Path:
    """Where the demo keeps the passwords it generated, readable by their owner only, so
    that a newcomer who lost the first run's output can print them again. A demo on the
    local machine only: the file holds nothing but the two demo accounts' passwords."""
    return settings.DATA_DIR / "demo-passwords.json"


def _passwords_read() -> dict[str, Any]:
    try:
        data = json.loads(demo_passwords_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _password_remember(username: str, password: str) -> None:
    data = {**_passwords_read(), username: password}
    path = demo_passwords_path()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(data, handle)


def demo_passwords() -> dict[str, str | None]:
    """``{username: password}`` of the demo accounts that exist; the password is ``None``
    when the remembered one is missing or no longer right (changed by hand)."""
    remembered = _passwords_read()
    users = get_user_model().objects.filter(username__in=DEMO_ACCOUNTS)
    found = {user.username: user for user in users}
    result: dict[str, str | None] = {}
    for username in DEMO_ACCOUNTS:
        user = found.get(username)
        if user is None:
            continue
        password = remembered.get(username)
        result[username] = password if isinstance(password, str) and user.check_password(password) else None
    return result


def demo_passwords_reset() -> dict[str, str]:
    """Give each existing demo account a new random password; returns them by user name."""
    result = {}
    for user in get_user_model().objects.filter(username__in=DEMO_ACCOUNTS).order_by("username"):
        password = secrets.token_urlsafe(12)
        user.set_password(password)
        user.save(update_fields=["password"])
        _password_remember(user.username, password)
        result[user.username] = password
    return result


# --- The web server's port --------------------------------------------------------------------


class PortBusy(Exception):
    """The demo's web server could not listen where it was asked to; the message says why."""


def port_check(host: str, port: int) -> None:
    """Raise :class:`PortBusy` unless a server could listen on ``host:port`` now, the
    way Django's runserver binds (``SO_REUSEADDR``, so a port in ``TIME_WAIT`` is fine)."""
    if not 0 < port < 65536:
        raise PortBusy(f"port {port} is not a TCP port (1-65535)")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise PortBusy(f"cannot listen on {host!r}: {exc.strerror}") from exc
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
            probe.listen(1)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortBusy(
                    f"port {port} on {host} is already in use (another demo or server?). Stop it, "
                    f"or choose another port: ./crowdloop demo --port {port + 1 if port < 65535 else 8000}"
                ) from exc
            raise PortBusy(f"cannot listen on {host}:{port}: {exc.strerror}") from exc

"""The dashboard in a real headless Chromium: every page under the enforced policy,
live training progress, a ban, an export, and untrusted names that stay text.

Screenshots of each page land in ``test-artifacts/dashboard/``.
"""

import csv
import io
import os
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from labeling.models import (
    Item,
    RunStatus,
    TrainingRun,
    Worker,
    WorkerDecision,
    WorkerStatus,
)
from labeling.services.imports import ImportEntry, items_import
from labeling.services.projects import project_create, project_stats_refresh
from labeling.services.worker_status import worker_status_in
from tests.conftest import service_missing
from tests.labeling.axe_support import axe_violations
from tests.labeling.factories import bar_png
from tests.labeling.test_dashboard import XSS, fresh_cache, loop_project  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
PASSWORD = "pw-owner-123"


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        service_missing(f"needs Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the test
    # makes between browser steps are still plain synchronous code.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Watched:
    """A page plus everything that went wrong on it: script errors, policy violations,
    failed requests and dialogs (which are dismissed)."""

    def __init__(self, context):
        self.page = context.new_page()
        self.page.set_default_timeout(20_000)
        self.problems, self.dialogs = [], []
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.page.on(
            "console",
            lambda message: self.problems.append(message.text) if "Content Security Policy" in message.text else None,
        )
        self.page.on(
            "response",
            lambda response: (
                self.problems.append(f"{response.status} {response.url}")
                if response.status >= 400 and "/media/" not in response.url and not response.url.endswith("favicon.ico")
                else None
            ),
        )
        self.page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))


@pytest.fixture
def watched(browser, settings, celery_eager):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    try:
        yield Watched(context)
    finally:
        context.close()


@pytest.fixture
def owner(db):
    return get_user_model().objects.create_user("owner", password=PASSWORD)


def log_in(watched, live_server, user, expect_url="/dashboard/"):
    page = watched.page
    page.goto(f"{live_server.url}/accounts/login/?next={expect_url or '/'}")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.click("main button[type=submit]")
    if expect_url:
        page.wait_for_url(f"{live_server.url}{expect_url}")


def shoot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def open_page(watched, live_server, path, name=None):
    watched.page.goto(live_server.url + path)
    watched.page.wait_for_load_state("load")
    if name:
        shoot(watched.page, name)
    return watched.page


def test_the_owner_walks_every_page_and_watches_a_run_progress_live(live_server, watched, owner):
    from playwright.sync_api import expect

    project = loop_project(owner)
    log_in(watched, live_server, owner)
    page = open_page(watched, live_server, reverse("dashboard:projects"), "projects")
    expect(page.get_by_role("link", name=project.name)).to_be_visible()
    page.get_by_role("link", name=project.name).click()
    expect(page.get_by_role("heading", name="Where the labels come from")).to_be_visible()
    shoot(page, "overview")
    worker = Worker.objects.filter(skills__project=project).first()
    item = project.items.filter(answers__isnull=False).first()
    for name, path in [
        ("workers", reverse("dashboard:workers", args=[project.slug])),
        ("worker", reverse("dashboard:worker", args=[project.slug, worker.pk])),
        ("items", reverse("dashboard:items", args=[project.slug])),
        ("item", reverse("dashboard:item", args=[project.slug, item.pk])),
        ("clusters", reverse("dashboard:clusters", args=[project.slug])),
        ("sites", reverse("dashboard:sites", args=[project.slug])),
    ]:
        page = open_page(watched, live_server, path, name)
        expect(page.locator(".tabs [aria-current=page]")).to_have_count(1)
    page = open_page(watched, live_server, reverse("dashboard:clusters", args=[project.slug]))
    page.locator("svg.map a.point").first.click()
    expect(page.get_by_role("heading", name="Posterior")).to_be_visible()

    run = TrainingRun.objects.create(project=project, status=RunStatus.QUEUED, n_epochs=3)
    page = open_page(watched, live_server, reverse("dashboard:training", args=[project.slug]) + f"?run={run.pk}")
    page.evaluate("window.notReloaded = true")
    panel = page.locator(f'[data-panel-for="{run.pk}"]')
    expect(panel.locator("[data-field=status]")).to_have_text("Queued")
    history = []
    for epoch in (1, 2):
        history.append(
            {"epoch": epoch, "train_loss": 1.5 / epoch, "val_loss": 1.6 / epoch, "val_accuracy": 0.4 + 0.2 * epoch}
        )
        TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, epoch=epoch, history=history)
        expect(page.locator(f'[data-panel-for="{run.pk}"] [data-field=epoch]')).to_have_text(f"{epoch} / 3")
        expect(page.locator(f'#runs-table [data-run="{run.pk}"][data-field=status]')).to_have_text("Running")
    expect(page.locator(f'[data-panel-for="{run.pk}"] .chart-box.wide svg[aria-label="Loss per epoch"] polyline')).to_have_count(2)
    shoot(page, "training-running")
    history.append({"epoch": 3, "train_loss": 0.4, "val_loss": 0.5, "val_accuracy": 0.85})
    TrainingRun.objects.filter(pk=run.pk).update(
        status=RunStatus.SUCCEEDED,
        epoch=3,
        history=history,
        metrics={
            "accuracy": 0.85,
            "eval_accuracy": 0.8,
            "human_answers": 41,
            "per_class": [0.9, 0.8, 0.85],
            "confusion": [[9, 1, 0], [1, 8, 1], [0, 1, 9]],
        },
    )
    panel = page.locator(f'[data-panel-for="{run.pk}"]')
    expect(panel.locator("[data-field=status]")).to_have_text("Succeeded")
    expect(panel.locator('svg[aria-label="Confusion matrix on the validation set"]')).to_be_visible()
    assert page.evaluate("window.notReloaded") is True
    shoot(page, "training")
    page.emulate_media(color_scheme="dark")
    shoot(page, "training-dark")
    page = open_page(watched, live_server, reverse("dashboard:overview", args=[project.slug]), "overview-dark")
    assert watched.problems == [] and watched.dialogs == []


def test_a_real_training_run_started_from_the_page_reaches_succeeded(live_server, watched, owner, celery_eager):
    from playwright.sync_api import expect

    # As on a real worker, a task that fails after the run (the pipeline round it
    # queues) must not fail the web request that queued the run.
    celery_eager.conf.task_eager_propagates = False
    project = project_create(name="Bars", labels=["h", "v"], owner=owner, image_size=8)
    # Enough labels per class for the CNN to compete with the cheap candidates, and for
    # at least 5 of them to hash into its validation share whatever ids the database gives.
    items_import(project, [ImportEntry(name=f"{k}{i}", data=bar_png(k, i), label=k) for k in "hv" for i in range(40)])
    items_import(project, [ImportEntry(name=f"u{k}{i}", data=bar_png(k, i)) for k in "hv" for i in (40, 41)])
    project_stats_refresh(project)
    log_in(watched, live_server, owner)
    page = open_page(watched, live_server, reverse("dashboard:training", args=[project.slug]))
    page.fill("#id_epochs", "2")
    # Celery runs eagerly here, so this one request also trains; a real worker would not.
    with page.expect_navigation(timeout=180_000):
        page.get_by_role("button", name="Start training").click(timeout=180_000)
    run = TrainingRun.objects.get(project=project)
    panel = page.locator(f'[data-panel-for="{run.pk}"]')
    expect(panel.locator("[data-field=status]")).to_have_text("Succeeded", timeout=60_000)
    expect(panel.locator("[data-field=epoch]")).to_have_text("2 / 2")
    expect(page.locator('svg[aria-label^="Learning curve"] circle')).not_to_have_count(0)
    shoot(page, "training-real")
    assert watched.problems == []


def test_the_owner_bans_a_worker_and_exports_a_csv(live_server, watched, owner):
    from playwright.sync_api import expect

    project = loop_project(owner)
    worker = Worker.objects.filter(user__isnull=False, answers__item__project=project).distinct().first()
    log_in(watched, live_server, owner)
    page = open_page(watched, live_server, reverse("dashboard:workers", args=[project.slug]))
    page.get_by_role("link", name=worker.user.username).click()
    page.select_option("#id_status", "banned")
    page.fill("#id_reason", "answers at random")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("h1 .status")).to_have_text("Banned")
    expect(page.get_by_role("cell", name="answers at random")).to_be_visible()
    shoot(page, "worker-banned")
    assert worker_status_in(worker, project) == WorkerStatus.BANNED
    assert WorkerDecision.objects.get(worker=worker, automatic=False, project=project).decided_by == owner

    page = open_page(watched, live_server, reverse("dashboard:overview", args=[project.slug]))
    page.select_option("#export-format", "csv")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download export").click()
    target = ARTIFACTS / "export.csv"
    download.value.save_as(target)
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"))))
    assert download.value.suggested_filename == f"{project.slug}-labels.csv"
    assert {row["label_source"] for row in rows} >= {"gold"}
    assert watched.problems == []


def test_an_untrusted_label_name_renders_as_text_on_every_page_and_no_dialog_fires(live_server, watched, owner):
    from playwright.sync_api import expect

    project = loop_project(owner, labels=(XSS, "dog", "bird"), name=f"Evil {XSS}")
    item = project.items.filter(answers__isnull=False).first()
    Item.objects.filter(pk=item.pk).update(text=f"text {XSS}", source_name=f"{XSS}.png")
    worker = Worker.objects.filter(user__isnull=False).first()
    get_user_model().objects.filter(pk=worker.user_id).update(username=f"w{XSS}")
    log_in(watched, live_server, owner)
    paths = (
        [reverse("dashboard:projects")]
        + [
            reverse(f"dashboard:{name}", args=[project.slug])
            for name in ("overview", "workers", "items", "clusters", "training", "sites")
        ]
        + [
            reverse("dashboard:item", args=[project.slug, item.pk]),
            reverse("dashboard:worker", args=[project.slug, worker.pk]),
        ]
    )
    for path in paths:
        page = open_page(watched, live_server, path)
        assert XSS in page.evaluate("document.body.textContent"), path
        expect(page.locator('img[src="x"]')).to_have_count(0)
    page = open_page(watched, live_server, reverse("dashboard:items", args=[project.slug]), "items-untrusted")
    expect(page.locator("#items-table .chip", has_text=XSS).first).to_be_visible()
    assert watched.dialogs == [] and watched.problems == []


# --- Every page, every role, a phone and a desktop ------------------------------------------------

VIEWPORTS = [(360, 740), (1280, 900)]
MIN_CHART_TEXT_PX = 11
LAYOUT_PROBLEMS = """() => {
  const problems = [];
  const width = window.innerWidth;
  if (document.documentElement.scrollWidth > width) {
    problems.push(`scrolls sideways: ${document.documentElement.scrollWidth} px wide at ${width}`);
  }
  for (const text of document.querySelectorAll("svg text")) {
    const box = text.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;  // not shown at this width
    const svg = text.ownerSVGElement;
    const view = svg.viewBox && svg.viewBox.baseVal;
    const scale = view && view.width ? svg.getBoundingClientRect().width / view.width : 1;
    const size = parseFloat(getComputedStyle(text).fontSize) * scale;
    if (size < MIN) problems.push(`chart text "${text.textContent}" at ${size.toFixed(1)} px`);
  }
  return problems.slice(0, 5);
}""".replace("MIN", str(MIN_CHART_TEXT_PX))


class Guarded(Watched):
    """A watched page that also counts console errors."""

    def __init__(self, context):
        super().__init__(context)
        self.page.on("console", lambda m: self.problems.append(f"console: {m.text}") if m.type == "error" else None)


def role_paths(project, worker_user, owner_user):
    worker = Worker.objects.filter(skills__project=project).first()
    item = project.items.filter(answers__isnull=False).first()
    slug = project.slug
    return {
        "anonymous": [
            ("landing", "/"),
            ("login", reverse("login")),
            ("signup", reverse("worker-signup")),
            ("docs", reverse("docs")),
            ("accessibility-pass", reverse("accessibility-pass")),
            ("demo-signup", reverse("demo-signup")),
            ("admin-login", reverse("admin:login")),
        ],
        "worker": [
            ("home", reverse("worker-home")),
            ("label", reverse("worker-label", args=[slug])),
        ],
        "owner": [
            ("projects", "/"),
            ("project", reverse("project-detail", args=[slug])),
            ("dashboard", reverse("dashboard:projects")),
            ("overview", reverse("dashboard:overview", args=[slug])),
            ("workers", reverse("dashboard:workers", args=[slug])),
            ("worker", reverse("dashboard:worker", args=[slug, worker.pk])),
            ("items", reverse("dashboard:items", args=[slug])),
            ("item", reverse("dashboard:item", args=[slug, item.pk])),
            ("clusters", reverse("dashboard:clusters", args=[slug])),
            ("training", reverse("dashboard:training", args=[slug])),
            ("sites", reverse("dashboard:sites", args=[slug])),
            ("audit", reverse("dashboard:audit", args=[slug])),
            ("tokens", reverse("owner-tokens")),
            ("label-home", reverse("worker-home")),
        ],
    }


def test_every_page_fits_a_phone_and_a_desktop_for_every_role(live_server, browser, settings, celery_eager, owner):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    from labeling.models import Project
    from labeling.services.demo import demo_site_create
    from labeling.services.workers import worker_sign_up

    project = loop_project(owner)
    Project.objects.filter(pk=project.pk).update(open_to_all_workers=True)
    demo_site_create(project, hostnames=["localhost", "127.0.0.1"])
    worker_user = worker_sign_up(username="ann", password=PASSWORD, email="")
    folder = ARTIFACTS / "responsive"
    folder.mkdir(parents=True, exist_ok=True)
    problems = []
    for role, paths in role_paths(project, worker_user, owner).items():
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            guarded = Guarded(context)
            if role != "anonymous":
                log_in(guarded, live_server, owner if role == "owner" else worker_user, expect_url=None)
            page = guarded.page
            for width, height in VIEWPORTS:
                page.set_viewport_size({"width": width, "height": height})
                for name, path in paths:
                    guarded.problems.clear()
                    page.goto(live_server.url + path)
                    page.wait_for_load_state("load")
                    found = page.evaluate(LAYOUT_PROBLEMS) + list(guarded.problems)
                    # axe-core's WCAG 2 A/AA rules; colour contrast depends on the width
                    # only through layout, so both widths are checked.
                    found += [f"axe {violation}" for violation in axe_violations(page)]
                    if width == VIEWPORTS[-1][0]:
                        # The dark colour scheme's contrast too, once per page.
                        page.emulate_media(color_scheme="dark")
                        found += [f"axe (dark) {violation}" for violation in axe_violations(page)]
                        page.emulate_media(color_scheme="light")
                    problems += [f"{role} {name} at {width} px: {problem}" for problem in found]
                    page.screenshot(path=str(folder / f"{role}-{name}-{width}.png"), full_page=True)
        finally:
            context.close()
    assert problems == [], "\n".join(problems)

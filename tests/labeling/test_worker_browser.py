"""A real browser on the labeling page: log in, label by keyboard only, answers stored."""
import os
from pathlib import Path

import pytest
from django.core.files.base import ContentFile

from labeling.models import Answer, QualityRules
from tests.conftest import service_missing
from tests.labeling.crowd import crowd_project, local_cache, registered_worker  # noqa: F401
from tests.labeling.factories import png_bytes

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
DIGITS = tuple(str(k) for k in range(10))


@pytest.fixture
def chromium_path():
    if not os.path.exists(CHROMIUM):
        service_missing(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    return CHROMIUM


def label_by_keyboard(executable, url, username, password, n_answers):
    """Log in at ``url`` and answer ``n_answers`` items with number keys (taking one
    back with "u" on the way). The reply to the first batch of answers is lost on the
    way back (the server stored it; the page sees a network error and sends it again).
    Returns what the page shows and any console errors.

    Playwright's sync API runs an event loop in this thread, where Django refuses
    database calls: the test reads the database before and after, not during.
    """
    from playwright.sync_api import expect, sync_playwright

    problems = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1024, "height": 768})
            page.on(
                "console",
                lambda message: message.type == "error"
                and not message.location.get("url", "").endswith("/favicon.ico")
                and problems.append(message.text),
            )
            page.on("pageerror", lambda error: problems.append(str(error)))
            lost = []

            def lose_the_first_reply(route):
                if lost:
                    route.continue_()
                    return
                lost.append(route.fetch().status)  # the server gets and stores it...
                route.abort("connectionreset")  # ...the browser never hears back

            page.route("**/answers", lose_the_first_reply)
            page.goto(url)
            assert "/accounts/login/" in page.url
            page.locator("#id_username").fill(username)
            page.locator("#id_password").fill(password)
            page.keyboard.press("Enter")
            page.wait_for_url(url)
            shown = 0

            def wait_for_next_item():
                nonlocal shown
                shown += 1
                expect(page.locator("#stage-caption")).to_have_text(f"Item {shown}")
                page.wait_for_function("() => document.getElementById('item-image').complete")

            for n in range(n_answers):
                wait_for_next_item()
                page.keyboard.press(DIGITS[(n * 7) % 10])
                if n == 4:
                    # Take the fifth answer back and give it again.
                    wait_for_next_item()
                    page.keyboard.press("u")
                    wait_for_next_item()
                    page.keyboard.press("3")
            expect(page.locator("#total")).to_have_text(str(n_answers), timeout=15000)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "worker-labeling.png"), full_page=True)
            page.set_viewport_size({"width": 390, "height": 844})
            page.screenshot(path=str(ARTIFACTS / "worker-labeling-phone.png"), full_page=True)
            count = page.locator("#count").text_content()

            # Then one "select every X" grid: tiles 1 and 3 selected, Enter submits.
            page.set_viewport_size({"width": 1024, "height": 768})
            page.locator('[data-view="grid"]').click()
            tiles = page.locator("#grid-tiles .tile")
            expect(tiles.first).to_be_visible()
            n_tiles = tiles.count()
            page.keyboard.press("1")
            page.keyboard.press("3")
            expect(tiles.nth(0)).to_have_attribute("aria-pressed", "true")
            page.screenshot(path=str(ARTIFACTS / "worker-grid.png"), full_page=True)
            page.keyboard.press("Enter")
            expect(page.locator("#total")).to_have_text(str(n_answers + n_tiles), timeout=15000)
            return {"count": count, "tiles": n_tiles, "lost": lost, "problems": problems}
        finally:
            browser.close()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("local_cache")
def test_a_worker_logs_in_and_labels_twenty_items_by_keyboard_only(chromium_path, live_server):
    project, _ = crowd_project(labels=DIGITS, name="Browser digits", n_unknown=40, n_gold=6)
    project.data_kind = "image"
    project.save()
    for item in project.items.all():
        item.image.save(f"{item.pk}.png", ContentFile(png_bytes(seed=item.pk, size=(16, 16))))
    # Playwright presses keys far faster than a person: no speed rule here.
    QualityRules.objects.create(project=project, min_answer_ms=0)
    worker = registered_worker("keyboard", password="correct horse battery")

    seen = label_by_keyboard(
        chromium_path, f"{live_server.url}/work/{project.slug}/", "keyboard", "correct horse battery", 20
    )

    assert seen["count"] == "20" and seen["lost"] == [200]
    assert seen["problems"] == ["Failed to load resource: net::ERR_CONNECTION_RESET"]  # the lost reply, only
    answers = Answer.objects.filter(worker=worker, source="worker")
    chosen = answers.filter(verdict__isnull=True)
    assert chosen.count() == 20
    assert chosen.values("item").distinct().count() == 20
    assert all(answer.time_taken_ms is not None and len(answer.task_ref) == 32 for answer in answers)
    tiles = answers.filter(verdict__isnull=False)
    assert tiles.count() == seen["tiles"] > 2 and tiles.filter(verdict=True).count() == 2
    assert answers.values("item").distinct().count() == answers.count()

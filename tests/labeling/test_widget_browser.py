"""A real headless Chromium signs up on the demo page, solving the widget by keyboard.

The browser sees only what a visitor sees; the test looks the right answers up in the
database by the opaque tile order, as only the server could.
"""
import os
from pathlib import Path

import pytest
from django.db import connections

from labeling.models import Answer, Challenge, ChallengeKind, ChallengeStatus
from labeling.services import challenge_plans
from labeling.services.demo import demo_site_create, demo_site_secret
from tests.conftest import service_missing
from tests.labeling.axe_support import axe_violations
from tests.labeling.widget_support import fresh_cache, project_make, solution  # noqa: F401

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]


@pytest.fixture
def browser_page(monkeypatch):
    if not os.path.exists(CHROMIUM):
        service_missing(f"needs Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls the test
    # makes between browser steps are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 720, "height": 900})
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()
            # Inside Playwright's loop the ORM keeps its own connection: close it here.
            connections.close_all()


def _solve_by_keyboard(page, challenge):
    """Answer the challenge on screen with keys only: Space toggles grid tiles in tab
    order, a label's key answers a choice."""
    body = solution(challenge, unknown=False)
    tiles = list(challenge.tiles.order_by("position"))
    if challenge.kind == ChallengeKind.GRID:
        selected = set(body["selected"])
        for tile in tiles:
            if tile.public_id in selected:
                page.keyboard.press("Space")
            page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "cl-verify"
        page.keyboard.press("Enter")
    else:
        for tile in tiles:
            page.keyboard.press(body["answers"][tile.public_id])


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", [ChallengeKind.GRID, ChallengeKind.CHOICE])
def test_a_visitor_signs_up_on_the_demo_page_by_keyboard_and_the_server_verifies(
    live_server, browser_page, monkeypatch, settings, kind
):
    page = browser_page
    monkeypatch.setattr(challenge_plans, "_kinds_in_order", lambda rng, **_: [kind])
    settings.CROWDLOOP_CONTROL_RESERVE = 0  # a grid from this small pool (below the reserve, only choices)
    # A grid needs up to 8 control items of its target label (positives, drawn at random).
    project = project_make(labels=[str(k) for k in range(10)], gold_per_class=10, unknown=20)
    site = demo_site_create(project, hostnames=["localhost", "127.0.0.1"], min_solve_ms=0)
    problems = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "console",
        lambda message: problems.append(message.text) if "Content Security Policy" in message.text else None,
    )
    page.on(
        "response",
        lambda response: problems.append(f"{response.status} {response.url}")
        if response.status >= 400 and not response.url.endswith("/favicon.ico") else None,
    )

    page.goto(f"{live_server.url}/demo/signup/")
    page.keyboard.press("Tab")
    page.keyboard.type("Ada")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "cl-start"
    page.keyboard.press("Enter")
    page.locator(".cl-body:not([hidden])").wait_for()
    challenge = Challenge.objects.filter(site=site).latest("issued_at")
    assert challenge.kind == kind
    page.locator(".cl-prompt").wait_for()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"widget-{challenge.kind}-challenge.png"), full_page=True)
    # axe-core's WCAG 2 A/AA rules on the page with the challenge open, in both colour schemes.
    assert axe_violations(page) == []
    page.emulate_media(color_scheme="dark")
    assert axe_violations(page) == []
    page.emulate_media(color_scheme="light")
    link = page.get_by_role("link", name="Cannot see the images? Use an accessibility pass")
    assert f"challenge={challenge.pk}" in link.get_attribute("href")
    _solve_by_keyboard(page, challenge)

    page.locator(".cl-widget.cl-done").wait_for()
    token = page.locator('input[name="crowdloop-response"]').input_value()
    assert token and page.locator('input[name="h-captcha-response"]').input_value() == token
    assert page.locator('input[name="g-recaptcha-response"]').input_value() == token
    page.screenshot(path=str(ARTIFACTS / "widget-verified.png"), full_page=True)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "demo-submit"
    page.keyboard.press("Enter")

    page.get_by_text("Welcome, Ada!").wait_for()
    page.screenshot(path=str(ARTIFACTS / "widget-demo-signup.png"), full_page=True)
    challenge.refresh_from_db()
    assert challenge.status == ChallengeStatus.PASSED and challenge.token_used_at is not None
    assert challenge.hostname in ("localhost", "127.0.0.1")
    assert Answer.objects.filter(task_ref=str(challenge.pk), is_control=False, source="widget").exists()
    assert not problems, problems


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_visitor_with_an_accessibility_pass_passes_from_its_window_and_siteverify_says_so(
    live_server, browser_page
):
    from labeling.services.accessibility import (
        COOKIE_NAME,
        accessibility_cookie_value,
        accessibility_pass_request,
        accessibility_pass_verify,
    )
    from labeling.services.tokens import challenge_verify

    page = browser_page
    project = project_make(labels=[str(k) for k in range(10)], gold_per_class=2, unknown=20)
    site = demo_site_create(project, hostnames=["localhost", "127.0.0.1"], min_solve_ms=0)
    # The visitor earned the pass earlier by e-mail (the e-mail step is tested in
    # test_accessibility_pass.py); this browser holds its cookie.
    tokens = []
    accessibility_pass_request(email="ada@example.org", client_ip="127.0.0.1", verify_url=tokens.append)
    earned = accessibility_pass_verify(tokens[0])
    page.context.add_cookies(
        [{"name": COOKIE_NAME, "value": accessibility_cookie_value(earned), "url": f"{live_server.url}/accessibility/"}]
    )
    problems = []
    page.on("pageerror", lambda error: problems.append(str(error)))

    page.goto(f"{live_server.url}/demo/signup/")
    page.fill("#name", "Ada")
    page.locator(".cl-start").click()
    page.locator(".cl-prompt").wait_for()
    challenge = Challenge.objects.filter(site=site).latest("issued_at")
    with page.expect_popup() as opened:
        page.get_by_role("link", name="Cannot see the images? Use an accessibility pass").click()
    popup = opened.value
    popup.wait_for_load_state("load")
    assert axe_violations(popup) == []
    popup.screenshot(path=str(ARTIFACTS / "accessibility-pass.png"), full_page=True)
    popup.get_by_role("button", name="Use my pass on localhost").click()

    page.locator(".cl-widget.cl-done").wait_for()
    assert page.locator(".cl-status").inner_text() == "You are verified with your accessibility pass."
    token = page.locator('input[name="crowdloop-response"]').input_value()
    challenge.refresh_from_db()
    assert challenge.accessibility_pass_id == earned.pk and not Answer.objects.filter(task_ref=str(challenge.pk))
    result = challenge_verify(secret=demo_site_secret(), response=token)
    assert result["success"] and result["accessibility_pass"] is True
    assert not problems, problems

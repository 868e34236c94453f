"""The README's screenshots, made afresh: the dashboard overview on a desktop, the training
page on a phone and the widget with a challenge open.

    .venv/bin/python bench/screenshots.py            # writes docs/screenshot-*.png

It prepares the demo in a throwaway data directory (SQLite, the filesystem broker), lets
a simulated crowd label in-process, trains a model, serves the result with Django's
development server and photographs it in headless Chromium (``/usr/bin/chromium``).
The PNGs are reduced to 256 colours to stay small. Takes a few minutes on two cores.
"""
import argparse
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _prepare(budget, epochs):
    """Demo data, a crowd's answers and a trained model; returns the owner's and the
    worker's passwords (new random ones)."""
    import django
    from django.core.management import call_command

    django.setup()
    from django.contrib.auth import get_user_model

    from labeling.models import Project
    from labeling.services.demo import DEMO_SLUG
    from labeling.services.projects import project_stats_refresh

    call_command("demo", no_serve=True, verbosity=0)
    call_command("simulate_crowd", in_process=True, budget=budget, visitor_seats=2, verbosity=0)
    project = Project.objects.get(slug=DEMO_SLUG)
    call_command("train", project.slug, config=f'{{"epochs": {int(epochs)}, "model": "cnn"}}', now=True, verbosity=0)
    # The counters a Celery beat keeps fresh on a running installation.
    project_stats_refresh(project)
    passwords = {}
    for username in ("admin", "worker"):
        user = get_user_model().objects.get(username=username)
        passwords[username] = secrets.token_urlsafe(12)
        user.set_password(passwords[username])
        user.save(update_fields=["password"])
    return project.slug, passwords


def _wait(url, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"the server did not answer at {url}")


def _small_png(path):
    """256 colours, optimised: a screenshot of flat UI loses nothing visible."""
    from PIL import Image

    with Image.open(path) as image:
        reduced = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    reduced.save(path, optimize=True)


def _log_in(page, base, username, password):
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    with page.expect_navigation():
        page.click("main button[type=submit]")


def _photograph(base, slug, passwords, out):
    from playwright.sync_api import sync_playwright

    shots = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            desktop = browser.new_context(viewport={"width": 1280, "height": 900})
            page = desktop.new_page()
            _log_in(page, base, "admin", passwords["admin"])
            page.goto(f"{base}/dashboard/{slug}/")
            page.wait_for_load_state("networkidle")
            shots.append(out / "screenshot-dashboard.png")
            page.screenshot(path=str(shots[-1]))

            phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1, is_mobile=True)
            page = phone.new_page()
            _log_in(page, base, "admin", passwords["admin"])
            page.goto(f"{base}/dashboard/{slug}/training/")
            page.wait_for_load_state("networkidle")
            shots.append(out / "screenshot-training-phone.png")
            page.screenshot(path=str(shots[-1]), full_page=True)

            visitor = browser.new_context(viewport={"width": 720, "height": 900})
            page = visitor.new_page()
            page.goto(f"{base}/demo/signup/")
            page.fill("#name", "Ada")
            page.locator(".cl-start").click()
            page.locator(".cl-prompt").wait_for()
            page.wait_for_load_state("networkidle")
            shots.append(out / "screenshot-widget.png")
            page.screenshot(path=str(shots[-1]), full_page=True)
        finally:
            browser.close()
    for shot in shots:
        _small_png(shot)
    return shots


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs"), help="folder for the PNGs")
    parser.add_argument("--budget", type=int, default=600, help="answers the simulated crowd gives")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs of the model shown")
    args = parser.parse_args(argv)
    if not os.path.exists(CHROMIUM):
        sys.exit(f"needs Chromium at {CHROMIUM} (apt-get install chromium fonts-dejavu-core)")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="crowdloop-shots-") as data_dir:
        env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
        env.update(
            CROWDLOOP_DATA_DIR=data_dir, DJANGO_SETTINGS_MODULE="labeling.settings", DEBUG="1",
            # The crowd's rounds fit the cheap models only; the one CNN run is ours, short.
            CROWDLOOP_CNN_MIN_LABELS_PER_CLASS="1000000", CROWDLOOP_AUDIT_AFTER_TRAINING="0",
        )
        os.environ.clear()
        os.environ.update(env)
        sys.path.insert(0, str(ROOT))
        slug, passwords = _prepare(args.budget, args.epochs)
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "runserver", "--noreload", f"127.0.0.1:{port}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait(f"{base}/")
            for shot in _photograph(base, slug, passwords, out):
                print(f"{shot.relative_to(ROOT) if shot.is_relative_to(ROOT) else shot}: {shot.stat().st_size // 1024} KiB")
        finally:
            server.terminate()
            server.wait(timeout=15)


if __name__ == "__main__":
    main()

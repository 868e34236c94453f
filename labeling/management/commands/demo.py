import secrets
import signal
import subprocess
import sys
import threading
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from tqdm import tqdm

from labeling.crowd.simulation import crowd_background_start
from labeling.services.demo import (
    demo_crowd_open,
    demo_project_create,
    demo_site_create,
    demo_worker_create,
    widget_test_keys_create,
)


class Command(BaseCommand):
    help = (
        "Prepare the demo (database, admin account, the handwritten digits project) and run "
        "the web server and a Celery worker. --no-serve only prepares the data."
    )

    def add_arguments(self, parser):
        parser.add_argument("--no-serve", action="store_true", help="prepare the data and exit")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--crowd", action="store_true",
            help="also run a simulated crowd (workers and widget visitors) against the server, over HTTP",
        )
        parser.add_argument("--crowd-budget", type=int, default=3000, help="answers the simulated crowd gives")

    def handle(self, *args, no_serve=False, host="127.0.0.1", port=8000, crowd=False, crowd_budget=3000, **options):
        call_command("migrate", interactive=False, verbosity=0)
        owner = self._admin()
        with tqdm(total=1797, unit="item", desc="digits project") as bar:
            project, report = demo_project_create(owner=owner, progress=bar.update)
        self.stdout.write(
            f"Project '{project.name}' ({project.slug}): {project.items.count()} items "
            f"({report.created} new), {project.items.filter(known_label__isnull=False).count()} gold"
        )
        site = demo_site_create(project)
        widget_test_keys_create()
        self.stdout.write(f"Widget demo site '{site.name}': site key {site.sitekey}; test keys are in the README.")
        demo_crowd_open(project)
        worker_password = demo_worker_create()
        if worker_password:
            self.stdout.write(self.style.SUCCESS(f"Worker account: worker / {worker_password}"))
        else:
            self.stdout.write("Worker account 'worker' exists (change its password with `manage.py changepassword worker`).")
        if no_serve:
            return
        self._serve(host, port, crowd=(project, crowd_budget) if crowd else None)

    def _admin(self):
        User = get_user_model()
        admin = User.objects.filter(username="admin").first()
        if admin is not None:
            self.stdout.write("Admin account 'admin' exists (change its password with `manage.py changepassword admin`).")
            return admin
        password = secrets.token_urlsafe(12)
        admin = User.objects.create_superuser("admin", "admin@localhost", password)
        self.stdout.write(self.style.SUCCESS(f"Admin account: admin / {password}"))
        return admin

    def _serve(self, host, port, crowd=None):
        signal.signal(signal.SIGTERM, _interrupt)
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        celery = [sys.executable, "-m", "celery", "-A", "labeling"]
        children = [
            subprocess.Popen(
                celery + ["worker", "-Q", "default,cpu,gpu", "-c", "2", "-l", "info", "-n", "demo@%h", "-B",
                          "--schedule", str(settings.DATA_DIR / "celerybeat-schedule")]
            ),
            subprocess.Popen(manage + ["runserver", "--noreload", f"{host}:{port}"]),
        ]
        base = f"http://{host}:{port}"
        self.stdout.write(
            f"\nCrowdloop is running:\n  projects  {base}/\n  admin     {base}/admin/\n"
            f"  label     {base}/work/   (crowd workers: log in as 'worker' or sign up)\n"
            f"  API       {base}/api/v1/projects/\n  sign-up   {base}/demo/signup/   (a site protected by the widget)\n"
            f"Press Ctrl-C to stop.\n"
        )
        stop = threading.Event()
        if crowd is not None:
            project, budget = crowd
            crowd_background_start(
                project, base, budget=budget, stop=stop,
                on_done=lambda ledger: self.stdout.write(f"Simulated crowd done: {ledger.spent} answers given."),
            )
            self.stdout.write(f"A simulated crowd is labeling ({budget} answers); watch {base}/dashboard/\n")
        try:
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            for child in children:
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()


def _interrupt(signum, frame):
    """A SIGTERM (a process manager, `kill`) stops the demo and its children as Ctrl-C does."""
    raise KeyboardInterrupt

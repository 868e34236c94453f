import signal
import subprocess
import sys
import threading
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from labeling.crowd.simulation import crowd_background_start
from labeling.services.demo import (
    PortBusy,
    demo_admin_create,
    demo_crowd_open,
    demo_project_create,
    demo_site_create,
    demo_worker_create,
    port_check,
    widget_test_keys_create,
)

PASSWORDS_HINT = "its password: `./crowdloop demo --passwords`; new ones: `manage.py demo_passwords --reset`"


class Command(BaseCommand):
    help = (
        "Prepare the demo (database, admin account, the handwritten digits project) and run "
        "the web server and a Celery worker. --no-serve only prepares the data."
    )

    def add_arguments(self, parser):
        parser.add_argument("--no-serve", action="store_true", help="prepare the data and exit")
        parser.add_argument("--host", default="127.0.0.1", help="address the web server listens on (0.0.0.0: all)")
        parser.add_argument("--port", type=int, default=8000, help="the web server's port; checked before anything starts")
        parser.add_argument(
            "--passwords", action="store_true", help="print the demo accounts' passwords and exit (see demo_passwords)"
        )
        parser.add_argument(
            "--crowd", action="store_true",
            help="also run a simulated crowd (workers and widget visitors) against the server, over HTTP",
        )
        parser.add_argument("--crowd-budget", type=int, default=3000, help="answers the simulated crowd gives")

    def handle(self, *args, no_serve=False, host="127.0.0.1", port=8000, crowd=False, crowd_budget=3000,
               passwords=False, **options):
        if not no_serve and not passwords:
            self._port_check(host, port)
        call_command("migrate", interactive=False, verbosity=0)
        if passwords:
            call_command("demo_passwords", stdout=self.stdout, stderr=self.stderr)
            return
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
            self.stdout.write(f"Worker account 'worker' exists ({PASSWORDS_HINT}).")
        if no_serve:
            return
        self._serve(host, port, crowd=(project, crowd_budget) if crowd else None)

    def _admin(self):
        admin, password = demo_admin_create()
        if password is None:
            self.stdout.write(f"Admin account 'admin' exists ({PASSWORDS_HINT}).")
        else:
            self.stdout.write(self.style.SUCCESS(f"Admin account: admin / {password}"))
        return admin

    def _port_check(self, host, port):
        """Refuse a port the web server could not listen on, before anything starts."""
        try:
            port_check(host, port)
        except PortBusy as exc:
            raise CommandError(f"The demo cannot start: {exc}") from exc

    def _serve(self, host, port, crowd=None):
        self._port_check(host, port)  # again: the data took a while, someone may have taken it since
        signal.signal(signal.SIGTERM, _interrupt)
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        celery = [sys.executable, "-m", "celery", "-A", "labeling"]
        children = [
            subprocess.Popen(
                celery + ["worker", "-Q", "default,cpu,gpu", "-c", "2", "-l", "info", "-n", "demo@%h", "-B",
                          "--schedule", str(settings.DATA_DIR / "celerybeat-schedule")]
            ),
            subprocess.Popen(manage + ["runserver", "--noreload", address]),
        ]
        base = f"http://{address}"
        self.stdout.write(
            f"\nCrowdloop is running:\n  projects  {base}/\n  admin     {base}/admin/\n"
            f"  label     {base}/work/   (crowd workers: log in as 'worker' or sign up)\n"
            f"  API       {base}/api/v1/projects/   (docs: {base}/api/docs/)\n  sign-up   {base}/demo/signup/   (a site protected by the widget)\n"
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

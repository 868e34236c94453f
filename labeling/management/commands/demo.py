import secrets
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from tqdm import tqdm

from labeling.services.demo import demo_project_create


class Command(BaseCommand):
    help = (
        "Prepare the demo (database, admin account, the handwritten digits project) and run "
        "the web server and a Celery worker. --no-serve only prepares the data."
    )

    def add_arguments(self, parser):
        parser.add_argument("--no-serve", action="store_true", help="prepare the data and exit")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, no_serve=False, host="127.0.0.1", port=8000, **options):
        call_command("migrate", interactive=False, verbosity=0)
        owner = self._admin()
        with tqdm(total=1797, unit="item", desc="digits project") as bar:
            project, report = demo_project_create(owner=owner, progress=bar.update)
        self.stdout.write(
            f"Project '{project.name}' ({project.slug}): {project.items.count()} items "
            f"({report.created} new), {project.items.filter(known_label__isnull=False).count()} gold"
        )
        if no_serve:
            return
        self._serve(host, port)

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

    def _serve(self, host, port):
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        celery = [sys.executable, "-m", "celery", "-A", "labeling"]
        children = [
            subprocess.Popen(celery + ["worker", "-Q", "default,cpu,gpu", "-c", "2", "-l", "info", "-n", "demo@%h"]),
            subprocess.Popen(manage + ["runserver", "--noreload", f"{host}:{port}"]),
        ]
        base = f"http://{host}:{port}"
        self.stdout.write(
            f"\nCrowdloop is running:\n  projects  {base}/\n  admin     {base}/admin/\n"
            f"  API       {base}/api/v1/projects/\nPress Ctrl-C to stop.\n"
        )
        try:
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            for child in children:
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()

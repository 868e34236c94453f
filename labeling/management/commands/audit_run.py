import json

from django.core.management.base import BaseCommand, CommandError

from labeling.models import Project
from labeling.services.audit import audit_queue, project_audit


class Command(BaseCommand):
    help = "Audit a project's labels: suspects go back to the crowd (or to the owner, for gold)."

    def add_arguments(self, parser):
        parser.add_argument("project", help="project slug")
        parser.add_argument("--queue", action="store_true", help="queue the round on the cpu queue instead")

    def handle(self, *args, project, queue=False, **options):
        try:
            target = Project.objects.get(slug=project)
        except Project.DoesNotExist:
            raise CommandError(f"no project with slug {project!r}") from None
        if queue:
            audit_queue(target)
            self.stdout.write("queued an audit round on the cpu queue")
            return
        run = project_audit(target)
        if run is None:
            raise CommandError("an audit round of this project is already running")
        self.stdout.write(f"audit round {run.pk}: {run.status} {run.error}".rstrip())
        self.stdout.write(json.dumps(run.result))

import json

from django.core.management.base import BaseCommand, CommandError

from labeling.models import Project
from labeling.services.training import TrainingRefused, training_run_create, training_run_execute


class Command(BaseCommand):
    help = "Queue a training run for a project (a `-Q gpu` worker runs it), or run it here with --now."

    def add_arguments(self, parser):
        parser.add_argument("project", help="project slug")
        parser.add_argument("--config", default="{}", help='JSON overrides, e.g. \'{"epochs": 10}\'')
        parser.add_argument("--now", action="store_true", help="run in this process instead of queueing")

    def handle(self, *args, project, config="{}", now=False, **options):
        try:
            target = Project.objects.get(slug=project)
        except Project.DoesNotExist:
            raise CommandError(f"no project with slug {project!r}") from None
        try:
            overrides = json.loads(config)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--config is not JSON: {exc}") from exc
        try:
            run = training_run_create(target, config=overrides)
        except TrainingRefused as exc:
            raise CommandError(str(exc)) from exc
        if not now:
            self.stdout.write(f"queued training run {run.pk} on the gpu queue")
            return
        run = training_run_execute(run.pk)
        self.stdout.write(f"training run {run.pk}: {run.status} {run.error}".rstrip())
        if run.metrics:
            self.stdout.write(json.dumps({k: run.metrics.get(k) for k in ("accuracy", "eval_accuracy", "train_n", "val_n")}))

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from labeling.models import Project, Split
from labeling.services.imports import ImportRefused, path_import


class Command(BaseCommand):
    help = (
        "Import items into a project from a folder of images, a folder with one sub-folder per "
        "class (labels become gold), a .zip of either, or a .csv/.jsonl of texts (optional label column)."
    )

    def add_arguments(self, parser):
        parser.add_argument("project", help="project slug")
        parser.add_argument("path")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")
        parser.add_argument(
            "--holdout", action="store_true",
            help="a labeled held-out split: never served, models are measured on it (every item needs a label)",
        )

    def handle(self, *args, project, path, no_progress=False, holdout=False, **options):
        try:
            target = Project.objects.get(slug=project)
        except Project.DoesNotExist:
            raise CommandError(f"no project with slug {project!r}") from None
        bar = tqdm(unit="item", disable=no_progress, desc=f"importing into {project}")
        try:
            report = path_import(
                target, path, progress=bar.update, on_total=lambda n: setattr(bar, "total", n),
                split=Split.HOLDOUT if holdout else Split.POOL,
            )
        except ImportRefused as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bar.close()
        for problem in report.problems:
            self.stderr.write(f"skipped {problem}")
        self.stdout.write(
            f"{report.created} items created, {report.duplicates} already present"
            f" ({report.gold_marked} of them made gold), {len(report.problems)} skipped"
        )

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from labeling.models import Project
from labeling.services.exports import FORMATS, ExportOptions, export_stream


class Command(BaseCommand):
    help = "Export a project's labels as CSV, JSONL, an ImageFolder zip or Label Studio JSON."

    def add_arguments(self, parser):
        parser.add_argument("project", help="project slug")
        parser.add_argument("--format", choices=sorted(FORMATS), default="csv")
        parser.add_argument("--output", "-o", help="file to write (default: standard output)")
        parser.add_argument("--all", action="store_true", help="include items without a label")
        parser.add_argument("--pseudo-min", type=float, default=None, help="include pseudo-labels at least this confident")
        parser.add_argument("--include-holdout", action="store_true", help="include the held-out split")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, project, format, output=None, all=False, pseudo_min=None, include_holdout=False, no_progress=False, **kw):
        try:
            target = Project.objects.get(slug=project)
        except Project.DoesNotExist:
            raise CommandError(f"no project with slug {project!r}") from None
        if pseudo_min is not None and not 0 <= pseudo_min <= 1:
            raise CommandError("--pseudo-min must be between 0 and 1")
        options = ExportOptions(only_labeled=not all, pseudo_min_confidence=pseudo_min, include_holdout=include_holdout)
        bar = tqdm(unit="row", disable=no_progress or output is None, desc=f"exporting {project}", file=sys.stderr)
        handle = open(output, "wb") if output else sys.stdout.buffer
        try:
            for chunk in export_stream(target, format, options, progress=bar.update):
                handle.write(chunk)
        finally:
            bar.close()
            if output:
                handle.close()
        if output:
            self.stderr.write(f"wrote {bar.n} rows to {output}")

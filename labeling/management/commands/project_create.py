from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from labeling.api_serializers import ProjectIn
from labeling.models import DataKind


class Command(BaseCommand):
    help = "Create a project with its labels (no admin needed); prints its slug."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--labels", required=True, help="comma-separated label names, in order: cat,dog")
        parser.add_argument("--kind", choices=DataKind.values, default=DataKind.IMAGE)
        parser.add_argument("--slug", help="default: the slugified name")
        parser.add_argument("--description", default="")
        parser.add_argument(
            "--open-to-all-workers", action="store_true", help="any registered worker may label (default: admitted only)"
        )
        parser.add_argument("--owner", help="user name of the owner (default: none; staff manage it)")

    def handle(self, *args, name, labels, kind, slug, description, open_to_all_workers, owner, **options):
        user = None
        if owner:
            user = get_user_model().objects.filter(username=owner).first()
            if user is None:
                raise CommandError(f"no user named {owner!r}")
        data = {
            "name": name, "labels": [label.strip() for label in labels.split(",")], "kind": kind,
            "description": description, "open_to_all_workers": open_to_all_workers,
        }
        if slug:
            data["slug"] = slug
        serializer = ProjectIn(data=data)
        if not serializer.is_valid():
            raise CommandError(_errors(serializer.errors))
        try:
            project = serializer.save(owner=user)
        except ValidationError as exc:
            raise CommandError(_errors(exc.message_dict) if hasattr(exc, "error_dict") else " ".join(exc.messages)) from exc
        self.stdout.write(
            f"Created project '{project.name}' ({project.slug}, {project.get_data_kind_display().lower()}) with labels "
            f"{', '.join(project.label_classes.values_list('name', flat=True))}"
            + (f", owned by {user.username}" if user else "")
            + f". Import items: manage.py import_items {project.slug} <path>"
        )


def _errors(errors):
    """DRF's field errors as one line: ``labels: label names must be unique; ...``."""
    parts = []
    for field, messages in errors.items():
        if isinstance(messages, dict):
            messages = [f"#{index}: {' '.join(map(str, inner))}" for index, inner in messages.items()]
        parts.append(f"{field}: {' '.join(map(str, messages))}")
    return "; ".join(parts)

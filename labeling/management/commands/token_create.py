from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from labeling.models import Project
from labeling.services.owner_tokens import owner_token_create


class Command(BaseCommand):
    help = "Make a personal API token for a project owner and print it (it is shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="user name of the owner")
        parser.add_argument(
            "--project", action="append", default=[], metavar="SLUG",
            help="scope the token to this project (repeatable); without it the token reaches all the user's projects",
        )
        parser.add_argument("--name", default="", help="what the token is for")

    def handle(self, *args, user, project, name, **options):
        owner = get_user_model().objects.filter(username=user).first()
        if owner is None:
            raise CommandError(f"no user named {user!r}")
        projects = None
        if project:
            projects = list(Project.objects.filter(slug__in=project))
            missing = sorted(set(project) - {p.slug for p in projects})
            if missing:
                raise CommandError(f"no project with slug {', '.join(map(repr, missing))}")
        try:
            token, raw = owner_token_create(user=owner, name=name, projects=projects)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        scope = ", ".join(sorted(p.slug for p in projects)) if projects else "all of the user's projects"
        self.stderr.write(f"Token {token.pk} for {owner.username} ({scope}); it is not stored and will not be shown again:")
        self.stdout.write(raw)

from django.core.management.base import BaseCommand, CommandError

from labeling.models import OwnerToken
from labeling.services.owner_tokens import owner_token_revoke


class Command(BaseCommand):
    help = "Revoke a personal API token by its id (`token_create` prints it; the token page lists them)."

    def add_arguments(self, parser):
        parser.add_argument("id", type=int, help="the token's id")

    def handle(self, *args, id, **options):
        token = OwnerToken.objects.filter(pk=id).select_related("user").first()
        if token is None:
            raise CommandError(f"no token with id {id}")
        if owner_token_revoke(token):
            self.stdout.write(f"Token {token.pk} of {token.user.username} ({token}) is revoked.")
        else:
            self.stdout.write(f"Token {token.pk} was already revoked at {token.revoked_at:%Y-%m-%d %H:%M:%S}.")

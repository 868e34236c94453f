"""Authentication: owners' API tokens for DRF (``Authorization: Token <token>``) and
the session backend that reads a user with their worker."""
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from labeling.services.owner_tokens import owner_token_authenticate


class OwnerTokenAuthentication(BaseAuthentication):
    """Authenticates a request by an owner token; ``request.auth`` is the token row.

    The user comes back carrying the token as ``user.api_token``, which
    :func:`labeling.selectors.projects_managed_by` honours: a scoped token reaches
    only its projects, on every endpoint that reads projects through the selectors.
    A request without the header is left to the other authentication classes; a
    malformed, forged or revoked token is refused with 401.
    """

    keyword = "Token"

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Malformed Authorization header: use 'Token <token>'.")
        try:
            raw = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("Invalid token.") from None
        token = owner_token_authenticate(raw)
        if token is None:
            raise AuthenticationFailed("Invalid or revoked token.")
        user = token.user
        user.api_token = token
        return user, token

    def authenticate_header(self, request):
        return self.keyword


class UserWithWorkerBackend(ModelBackend):
    """Django's model backend, whose per-request read of the session's user brings the
    user's worker row along: one query instead of two on every worker request
    (``user.worker`` is then already loaded)."""

    def get_user(self, user_id):
        User = get_user_model()
        try:
            user = User._default_manager.select_related("worker").get(pk=user_id)
        except User.DoesNotExist:
            return None
        return user if self.user_can_authenticate(user) else None

"""The owners' API for their personal API tokens: list, create (shown once), revoke.

A token scoped to projects manages no token: it could otherwise mint itself a wider one.
"""
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling import selectors
from labeling.services.owner_tokens import owner_token_create, owner_token_revoke

TAG_TOKENS = "tokens"


class TokenIn(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    projects = serializers.ListField(
        child=serializers.SlugField(), required=False, min_length=1,
        help_text="slugs of projects you manage; leave out for a token that reaches all of them",
    )


class TokenOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="the token's first characters")
    scoped = serializers.BooleanField()
    projects = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)

    def get_projects(self, token) -> list[str]:
        return [project.slug for project in token.projects.all()]


class TokenCreatedOut(TokenOut):
    token = serializers.CharField(help_text="shown once: only its SHA-256 is stored")


def _refuse_scoped(request):
    if getattr(getattr(request.user, "api_token", None), "scoped", False):
        raise PermissionDenied("a token scoped to projects cannot manage tokens")


class TokenListApi(APIView):
    """``GET`` your tokens, newest first; ``POST`` makes one and shows it, once."""

    @extend_schema(tags=[TAG_TOKENS], responses=TokenOut(many=True))
    def get(self, request):
        _refuse_scoped(request)
        return Response(TokenOut(selectors.owner_tokens_of(request.user), many=True).data)

    @extend_schema(tags=[TAG_TOKENS], request=TokenIn, responses={201: TokenCreatedOut})
    def post(self, request):
        _refuse_scoped(request)
        body = TokenIn(data=request.data)
        body.is_valid(raise_exception=True)
        slugs = body.validated_data.get("projects")
        projects = None
        if slugs is not None:
            projects = list(selectors.projects_managed_by(request.user).filter(slug__in=slugs))
            missing = sorted(set(slugs) - {project.slug for project in projects})
            if missing:
                raise ValidationError({"projects": f"no project of yours: {', '.join(missing)}"})
        token, raw = owner_token_create(user=request.user, name=body.validated_data["name"], projects=projects)
        return Response({**TokenOut(token).data, "token": raw}, status=status.HTTP_201_CREATED)


class TokenRevokeApi(APIView):
    """Revoke one of your tokens at once (revoking twice keeps the first time)."""

    @extend_schema(tags=[TAG_TOKENS], request=None, responses=TokenOut)
    def post(self, request, token_id):
        _refuse_scoped(request)
        token = selectors.owner_tokens_of(request.user).filter(pk=token_id).first()
        if token is None:
            raise NotFound("No such token")
        owner_token_revoke(token)
        return Response(TokenOut(token).data)

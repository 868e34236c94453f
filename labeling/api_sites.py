"""The owners' API for widget sites, and for a project's items (with their consensus)
and workers."""
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling import selectors
from labeling.models import ItemStatus, Split
from labeling.services.sites import site_create, site_secret_rotate

TAG_SITES, TAG_DATA = "sites", "data"


class SiteIn(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    projects = serializers.ListField(
        child=serializers.SlugField(), min_length=1, help_text="slugs of projects you manage"
    )
    allowed_hostnames = serializers.ListField(child=serializers.CharField(max_length=253), min_length=1)
    control_items = serializers.IntegerField(required=False, min_value=1, max_value=8)
    pass_share = serializers.FloatField(required=False, min_value=0.5, max_value=1.0)
    min_solve_ms = serializers.IntegerField(required=False, min_value=0, max_value=60_000)


class SiteOut(serializers.Serializer):
    sitekey = serializers.CharField()
    name = serializers.CharField()
    projects = serializers.SerializerMethodField()
    allowed_hostnames = serializers.ListField(child=serializers.CharField())
    mode = serializers.CharField()
    control_items = serializers.IntegerField()
    pass_share = serializers.FloatField()
    min_solve_ms = serializers.IntegerField()
    challenges_issued = serializers.IntegerField()
    challenges_passed = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    secret_rotated_at = serializers.DateTimeField(allow_null=True)

    def get_projects(self, site) -> list[str]:
        return [project.slug for project in site.projects.all()]


class SiteCreatedOut(SiteOut):
    secret = serializers.CharField(help_text="shown once: only its hash is stored")


class SecretOut(serializers.Serializer):
    secret = serializers.CharField(help_text="the new secret, shown once; the old one stops working at once")


class SiteListApi(APIView):
    """``GET`` your widget sites; ``POST`` creates one for projects you manage, with its
    secret shown once."""

    @extend_schema(tags=[TAG_SITES], responses=SiteOut(many=True))
    def get(self, request):
        return Response(SiteOut(selectors.sites_managed_by(request.user), many=True).data)

    @extend_schema(tags=[TAG_SITES], request=SiteIn, responses={201: SiteCreatedOut})
    def post(self, request):
        if getattr(getattr(request.user, "api_token", None), "scoped", False):
            raise PermissionDenied("a token scoped to projects cannot manage sites")
        body = SiteIn(data=request.data)
        body.is_valid(raise_exception=True)
        fields = dict(body.validated_data)
        slugs = fields.pop("projects")
        projects = list(selectors.projects_managed_by(request.user).filter(slug__in=slugs))
        missing = sorted(set(slugs) - {project.slug for project in projects})
        if missing:
            raise ValidationError({"projects": f"no project of yours: {', '.join(missing)}"})
        site, secret = site_create(owner=request.user, projects=projects, **fields)
        response = Response({**SiteOut(site).data, "secret": secret}, status=status.HTTP_201_CREATED)
        response["Location"] = reverse("api-site-detail", args=[site.sitekey])
        return response


class SiteDetailApi(APIView):
    @extend_schema(tags=[TAG_SITES], responses=SiteOut)
    def get(self, request, sitekey):
        return Response(SiteOut(selectors.site_get_managed(request.user, sitekey)).data)


class SiteRotateApi(APIView):
    """A new secret for the site; the old one stops working at once."""

    @extend_schema(tags=[TAG_SITES], request=None, responses=SecretOut)
    def post(self, request, sitekey):
        return Response({"secret": site_secret_rotate(selectors.site_get_managed(request.user, sitekey))})


class ItemOut(serializers.Serializer):
    id = serializers.IntegerField()
    source_name = serializers.CharField()
    text = serializers.CharField()
    status = serializers.CharField()
    split = serializers.CharField()
    answer_count = serializers.IntegerField()
    gold = serializers.CharField(source="known_label.label.name", default=None, allow_null=True)
    consensus = serializers.CharField(source="consensus.label.name", default=None, allow_null=True)
    consensus_confidence = serializers.FloatField(source="consensus.confidence", default=None, allow_null=True)
    pseudo_label = serializers.CharField(source="pseudo_label.label.name", default=None, allow_null=True)
    pseudo_confidence = serializers.FloatField(source="pseudo_label.confidence", default=None, allow_null=True)


class ItemPageOut(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = ItemOut(many=True)


class ItemPages(LimitOffsetPagination):
    default_limit = 100
    max_limit = 1000


class ItemListApi(APIView):
    """The project's items, by id, with their gold label, crowd consensus and
    pseudo-label; ``limit``/``offset`` pages."""

    pagination_class = ItemPages

    @extend_schema(
        tags=[TAG_DATA],
        parameters=[
            OpenApiParameter("status", str, enum=ItemStatus.values),
            OpenApiParameter("split", str, enum=Split.values),
            OpenApiParameter("limit", int), OpenApiParameter("offset", int),
        ],
        responses=ItemPageOut,
    )
    def get(self, request, slug):
        project = selectors.project_get_managed(request.user, slug)
        params = request.query_params
        if params.get("status") not in (None, "", *ItemStatus.values):
            raise ValidationError({"status": f"one of {', '.join(ItemStatus.values)}"})
        if params.get("split") not in (None, "", *Split.values):
            raise ValidationError({"split": f"one of {', '.join(Split.values)}"})
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(
            selectors.project_items(project, status=params.get("status"), split=params.get("split")), request, view=self
        )
        return paginator.get_paginated_response(ItemOut(page, many=True).data)


class WorkerOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.SerializerMethodField()
    kind = serializers.CharField()
    status = serializers.CharField(
        source="status_here", help_text="in this project: the stricter of the project's and the platform's"
    )
    answer_total = serializers.IntegerField(help_text="on the whole platform")
    control_total = serializers.IntegerField()
    control_correct = serializers.IntegerField()
    control_accuracy = serializers.FloatField(allow_null=True)
    skill = serializers.FloatField(
        source="project_skill", allow_null=True, help_text="estimated by truth inference here"
    )
    last_seen_at = serializers.DateTimeField(allow_null=True)

    def get_name(self, worker) -> str:
        return worker.user.username if worker.user_id else f"visitor #{worker.pk}"


class WorkerPageOut(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = WorkerOut(many=True)


class WorkerListApi(APIView):
    """Who answered in (or was admitted to) the project, with control record, estimated
    skill and status here; ``limit``/``offset`` pages."""

    pagination_class = ItemPages

    @extend_schema(
        tags=[TAG_DATA], parameters=[OpenApiParameter("limit", int), OpenApiParameter("offset", int)],
        responses=WorkerPageOut,
    )
    def get(self, request, slug):
        from labeling.dashboard.selectors import project_workers

        project = selectors.project_get_managed(request.user, slug)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(project_workers(project).order_by("id"), request, view=self)
        return paginator.get_paginated_response(WorkerOut(page, many=True).data)

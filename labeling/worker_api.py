"""The worker API (``/api/v1/``): what the labeling UI uses, and nothing more.

Session authentication with CSRF (the browser), rate limits per worker on Django's
cache, and the widget's never-reveal rules: clients see lease public ids, images through
the lease, texts inline and the project's label names; never an item id, a gold flag,
a file name or another worker's answer.
"""
import re

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_GET
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import (
    NotFound,
    PermissionDenied,
    Throttled,
    ValidationError,
)
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.models import DataKind, Worker, WorkerKind, WorkerStatus
from labeling.services import hot
from labeling.services import workers as svc
from labeling.services.media import image_serve
from labeling.services.ratelimit import RateLimited, ratelimit_enforce

KEY_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
LEASE_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
HOTKEYS = "1234567890"


def label_hotkeys(names):
    """The key of each label: its own name when every label is a distinct digit (the
    digit "3" is key 3), else 1-9 then 0 by position; labels past the tenth have none."""
    if all(len(name) == 1 and name in HOTKEYS for name in names):
        return list(names)
    return [HOTKEYS[i] if i < len(HOTKEYS) else None for i in range(len(names))]


def labels_payload(project):
    names = [label.name for label in hot.project_labels(project)]
    return [{"name": name, "key": key} for name, key in zip(names, label_hotkeys(names))]


def worker_of(user):
    """The registered worker of an authenticated user, or ``None`` (read with the user
    by :class:`~labeling.authentication.UserWithWorkerBackend`)."""
    if not user.is_authenticated:
        return None
    try:
        worker = user.worker
    except Worker.DoesNotExist:
        return None
    return worker if worker.kind == WorkerKind.REGISTERED else None


def worker_payload(worker, status=None):
    """The worker's counters and status (``status``: theirs in the project at hand)."""
    return {"status": status or worker.status, "answers": worker.answer_total}


def task_payload(project, lease):
    payload = {"id": lease.public_id, "expires_at": lease.expires_at}
    if project.data_kind == DataKind.TEXT:
        payload["text"] = lease.item.text
    else:
        payload["image"] = reverse("api-task-image", args=[lease.public_id])
    return payload


class WorkerNotActiveError(PermissionDenied):
    def __init__(self, exc):
        super().__init__({"detail": str(exc), "status": exc.status})


class WorkerApiView(APIView):
    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]
    rate_scope = None

    def worker(self, request):
        worker = worker_of(request.user)
        if worker is None:
            raise PermissionDenied("This account is not a worker account; open /work/ to start labeling.")
        try:
            ratelimit_enforce([(f"{self.rate_scope}:worker", worker.pk)])
        except RateLimited as exc:
            raise Throttled(wait=exc.retry_after) from exc
        return worker

    def project(self, worker, slug):
        """``(project, the worker's status there)``, or 404."""
        try:
            return svc.project_admit(worker, slug)
        except svc.ProjectNotFound as exc:
            raise NotFound(str(exc)) from exc

    def handle_exception(self, exc):
        if isinstance(exc, svc.WorkerNotActive):
            exc = WorkerNotActiveError(exc)
        elif isinstance(exc, svc.UnknownTask):
            exc = NotFound(str(exc))
        return super().handle_exception(exc)


class NextQuerySerializer(serializers.Serializer):
    n = serializers.IntegerField(min_value=1, default=5)
    view = serializers.ChoiceField(choices=["choice", "grid"], default="choice")
    exclude = serializers.CharField(required=False, allow_blank=True, max_length=40 * 100)

    def validate_n(self, value):
        return min(value, settings.CROWDLOOP_WORKER_MAX_BATCH)

    def validate_exclude(self, value):
        ids = [part for part in value.split(",") if part]
        if len(ids) > 100 or not all(re.fullmatch(LEASE_PATTERN, i) for i in ids):
            raise serializers.ValidationError("up to 100 task ids, comma-separated")
        return ids


class TaskNextApi(WorkerApiView):
    """``GET ?n=K[&view=grid][&exclude=id,id]``: up to K items under lease, for this worker.

    Items the worker holds but the client did not list in ``exclude`` come first (a
    reloaded page gets them back), then new ones.
    """

    rate_scope = "worker-next"

    def get(self, request, slug):
        worker = self.worker(request)
        project, standing = self.project(worker, slug)
        query = NextQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        batch = svc.tasks_next(
            worker=worker, project=project, n=query.validated_data["n"],
            exclude=query.validated_data.get("exclude", ()), grid=query.validated_data["view"] == "grid",
            status=standing,
        )
        return Response(
            {
                "project": project.slug,
                "kind": project.data_kind,
                "labels": labels_payload(project),
                "target": batch.target.name if batch.target is not None else None,
                "items": [task_payload(project, lease) for lease in batch.leases],
                # tasks_next refuses a worker who is not active here
                "worker": worker_payload(worker, WorkerStatus.ACTIVE),
            }
        )


class AnswerInSerializer(serializers.Serializer):
    id = serializers.RegexField(LEASE_PATTERN)
    key = serializers.RegexField(KEY_PATTERN)
    label = serializers.CharField(allow_null=True, max_length=100)
    time_ms = serializers.IntegerField(min_value=0, max_value=24 * 3600 * 1000, required=False, allow_null=True)
    verdict = serializers.BooleanField(required=False, allow_null=True, default=None)

    def validate(self, data):
        if data["label"] is None and data.get("verdict") is not None:
            raise serializers.ValidationError("a skip has no verdict")
        return data


class AnswerBatchApi(WorkerApiView):
    """``POST [{"id", "label" (null: skip), "key", "time_ms", "verdict"?}, ...]``.

    Each answer comes back ``stored``, ``duplicate`` (its key was stored before: a retry
    stores nothing) or ``expired`` (its lease is no longer open), with feedback on a
    missed control item when the project allows it.
    """

    rate_scope = "worker-answer"

    def post(self, request, slug):
        worker = self.worker(request)
        project, standing = self.project(worker, slug)
        data = request.data.get("answers") if isinstance(request.data, dict) else request.data
        batch = AnswerInSerializer(
            data=data, many=True, max_length=settings.CROWDLOOP_WORKER_MAX_BATCH, allow_empty=False
        )
        batch.is_valid(raise_exception=True)
        keys = [answer["key"] for answer in batch.validated_data]
        if len(set(keys)) != len(keys):
            raise ValidationError({"key": "each answer needs its own key"})
        answers = [
            svc.TaskAnswer(
                lease_id=a["id"], key=a["key"], label=a["label"], time_ms=a.get("time_ms"), verdict=a.get("verdict")
            )
            for a in batch.validated_data
        ]
        try:
            result = svc.task_answers_submit(worker=worker, project=project, answers=answers, status=standing)
        except ValueError as exc:
            raise ValidationError({"label": str(exc)}) from exc
        return Response(
            {
                "results": [
                    {"id": o.lease_id, "key": o.key, "status": o.status, "skipped": o.skipped, "feedback": o.feedback}
                    for o in result.outcomes
                ],
                "worker": worker_payload(result.worker, result.status),
                "message": f"You are now {result.status} in this project." if result.decision else None,
            }
        )


class AnswerUndoApi(WorkerApiView):
    """``POST``: take back this worker's answer with client key ``key`` (within
    ``CROWDLOOP_UNDO_WINDOW_S``); the item's lease reopens."""

    rate_scope = "worker-undo"

    def post(self, request, key):
        worker = self.worker(request)
        try:
            lease = svc.answer_undo(worker=worker, key=key)
        except svc.UndoRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        worker.refresh_from_db()
        return Response({"undone": True, "id": lease.public_id, "worker": worker_payload(worker)})


@require_GET
def task_image(request, lease_id):
    """A fresh rendering of a leased item's PNG (never the same bytes twice), for the
    lease holder only."""
    worker = worker_of(request.user)
    if worker is None:
        return JsonResponse({"detail": "Authentication credentials were not provided."}, status=403)
    try:
        ratelimit_enforce([("worker-image:worker", worker.pk)])
    except RateLimited as exc:
        response = JsonResponse({"detail": "Too many requests."}, status=429)
        response["Retry-After"] = str(exc.retry_after)
        return response
    lease = (
        worker.leases.filter(public_id=lease_id, item__project__in=svc.projects_for_worker(worker))
        .exclude(item__project_id__in=svc.projects_closing(worker))
        .select_related("item")
        .first()
    )
    if lease is None or not lease.item.image:
        return JsonResponse({"detail": "Not found."}, status=404)
    with lease.item.image.open("rb") as file:
        response = HttpResponse(image_serve(file.read()), content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    return response

"""Server-rendered pages: the front door (landing, docs, favicon) and project owners' pages."""
from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.staticfiles import finders
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET, require_POST

from labeling import selectors
from labeling.api import export_response
from labeling.models import Split
from labeling.services.jobs import UploadRejected, import_job_create


class ImportForm(forms.Form):
    file = forms.FileField(help_text="A .zip of images (flat or one folder per class) or a .csv/.jsonl of texts.")
    split = forms.ChoiceField(
        choices=[
            (Split.POOL, "Labeling pool"),
            (Split.HOLDOUT, "Held-out split"),
        ],
        initial=Split.POOL,
        required=False,
        label="Import into",
        help_text="Pool: class folders or labels become gold. Held-out: labeled items that are never served; "
        "models are measured on them.",
    )


README = Path(settings.BASE_DIR) / "README.md"


def project_list(request):
    """``/``: the landing page for visitors, the projects for owners, the worker's home
    for crowd workers."""
    if not request.user.is_authenticated:
        return render(request, "labeling/landing.html", {"docs_url": reverse("docs")})
    projects = selectors.projects_managed_by(request.user).select_related("stats")
    if not request.user.is_staff and not projects.exists():
        return redirect("worker-home")  # a crowd worker, not a project owner
    return render(request, "labeling/project_list.html", {"projects": projects})


@require_GET
def docs(request):
    """The README, the one document that says how Crowdloop works, as a readable page."""
    try:
        text = README.read_text(encoding="utf-8")
    except OSError as exc:
        raise Http404("The documentation is not installed here.") from exc
    return render(request, "labeling/docs.html", {"text": text})


@require_GET
@cache_control(max_age=86400, public=True)
def favicon(request):
    """``/favicon.ico``: browsers ask for it whatever the page links; the SVG icon."""
    path = finders.find("favicon.svg")
    if path is None:
        raise Http404("No favicon.")
    return FileResponse(open(path, "rb"), content_type="image/svg+xml")


@login_required
def project_detail(request, slug):
    project = selectors.project_get_managed(request.user, slug)
    return render(
        request,
        "labeling/project_detail.html",
        {
            "project": project,
            "stats": getattr(project, "stats", None),
            "labels": project.label_classes.all(),
            "imports": project.import_jobs.all()[:10],
            "form": ImportForm(),
            "max_upload_mb": settings.CROWDLOOP_MAX_UPLOAD_BYTES // (1024 * 1024),
        },
    )


@login_required
@require_POST
def project_import(request, slug):
    project = selectors.project_get_managed(request.user, slug)
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if length > settings.CROWDLOOP_MAX_UPLOAD_BYTES:
        messages.error(request, f"That upload is over the cap of {settings.CROWDLOOP_MAX_UPLOAD_BYTES} bytes.")
        return redirect("project-detail", slug=slug)
    form = ImportForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, "Choose a file to import.")
        return redirect("project-detail", slug=slug)
    try:
        job = import_job_create(
            project=project, upload=form.cleaned_data["file"], user=request.user, split=form.cleaned_data["split"] or Split.POOL
        )
    except UploadRejected as exc:
        messages.error(request, str(exc))
        return redirect("project-detail", slug=slug)
    return redirect("import-detail", job_id=job.pk)


@login_required
def import_detail(request, job_id):
    job = selectors.import_job_get_managed(request.user, job_id)
    return render(request, "labeling/import_detail.html", {"job": job, "project": job.project})


@login_required
def project_export(request, slug):
    from rest_framework.exceptions import ValidationError

    project = selectors.project_get_managed(request.user, slug)
    try:
        return export_response(project, request.GET)
    except ValidationError as exc:
        messages.error(request, f"Export refused: {exc.detail}")
        return redirect("project-detail", slug=slug)

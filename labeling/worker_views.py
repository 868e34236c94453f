"""Pages for crowd workers (sign-up, their home, the labeling page) and the page where a
project owner sets the quality rules and admits workers."""
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from labeling import selectors
from labeling.models import (
    Project,
    QualityRules,
    Worker,
    WorkerKind,
    WorkerStatus,
)
from labeling.selectors import workers as worker_selectors
from labeling.services import workers as svc
from labeling.services.ratelimit import RateLimited, client_ip, ratelimit_enforce
from labeling.worker_api import labels_payload


class SignUpForm(forms.Form):
    username = forms.RegexField(
        regex=r"^[\w.@+-]{3,40}$", max_length=40, label="User name",
        help_text="3–40 letters, digits and @ . + - _", widget=forms.TextInput(attrs={"autocomplete": "username"}),
    )
    email = forms.EmailField(
        required=False, label="Email (optional)", widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )
    password = forms.CharField(label="Password", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))
    password2 = forms.CharField(
        label="Password again", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )

    def clean(self):
        data = super().clean()
        if data.get("password") and data.get("password") != data.get("password2"):
            self.add_error("password2", "The two passwords differ.")
        return data


def signup(request):
    if request.user.is_authenticated:
        return redirect("worker-home")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            ratelimit_enforce([("worker-signup:ip", client_ip(request))])
            user = svc.worker_sign_up(
                username=form.cleaned_data["username"], password=form.cleaned_data["password"],
                email=form.cleaned_data["email"],
            )
        except RateLimited:
            form.add_error(None, "Too many sign-ups from your network; try again later.")
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            login(request, user, backend=settings.AUTHENTICATION_BACKENDS[0])
            return redirect("worker-home")
    return render(request, "worker/signup.html", {"form": form}, status=400 if form.errors else 200)


@login_required
def worker_home(request):
    worker = svc.worker_for_user(request.user)
    projects = list(svc.projects_for_worker(worker).select_related("stats"))
    standing = {row.project_id: row for row in worker.project_statuses.exclude(status=WorkerStatus.ACTIVE)}
    for project in projects:
        project.standing = standing.get(project.pk)
    decision = None
    if worker.status != WorkerStatus.ACTIVE:
        decision = worker.decisions.filter(project__isnull=True, new_status=worker.status).first()
    return render(
        request,
        "worker/home.html",
        {
            "worker": worker,
            "reputation": worker_selectors.worker_reputation(worker),
            "projects": projects,
            "decision": decision,
        },
    )


@login_required
def worker_label(request, slug):
    worker = svc.worker_for_user(request.user)
    try:
        project = svc.project_get_for_worker(worker, slug)
    except svc.ProjectNotFound as exc:
        raise Http404(str(exc)) from exc
    status = WorkerStatus(svc.worker_status_in(worker, project))
    labels = labels_payload(project)
    return render(
        request,
        "worker/label.html",
        {
            "worker": worker,
            "project": project,
            "labels": labels,
            "status": status,
            "active": status == WorkerStatus.ACTIVE,
            "next_url": reverse("api-task-next", args=[project.slug]),
            "answers_url": reverse("api-task-answers", args=[project.slug]),
            "undo_url": reverse("api-answer-undo", args=["KEY"]),
            "prefetch": settings.CROWDLOOP_WORKER_PREFETCH,
            "undo_window_s": settings.CROWDLOOP_UNDO_WINDOW_S,
        },
    )


# --- Project owners ---------------------------------------------------------------------------


class RulesForm(forms.ModelForm):
    class Meta:
        model = QualityRules
        fields = [
            "control_window", "min_control_answers", "min_control_accuracy", "min_answer_ms", "max_fast_share",
            "max_skips_in_row", "action",
        ]


class CrowdSettingsForm(forms.ModelForm):
    class Meta:
        model = Project
        fields = ["open_to_all_workers", "show_control_feedback", "gold_share"]


class AdmitForm(forms.Form):
    username = forms.CharField(max_length=150, label="Worker's user name")


def _workers_url(project, anchor="rules"):
    return reverse("dashboard:workers", args=[project.slug]) + f"#{anchor}"


@login_required
def project_workers(request, slug):
    """The quality rules and who labels. They are shown on the dashboard's one workers
    page; a GET goes there, a POST saves them (or shows that page with the errors)."""
    from labeling.dashboard.worker_views import workers_render

    project = selectors.project_get_managed(request.user, slug)
    if request.method != "POST":
        return redirect(_workers_url(project))
    rules_form = RulesForm(request.POST, instance=svc.quality_rules_for(project), prefix="rules")
    crowd_form = CrowdSettingsForm(request.POST, instance=project, prefix="crowd")
    if rules_form.is_valid() and crowd_form.is_valid():
        svc.quality_rules_update(project, **rules_form.cleaned_data)
        svc.project_crowd_settings_update(project, **crowd_form.cleaned_data)
        messages.success(request, "Saved.")
        return redirect(_workers_url(project))
    messages.error(request, "Please correct the errors below.")
    return workers_render(request, project, rules_form=rules_form, crowd_form=crowd_form, status=400)


@login_required
@require_POST
def project_worker_admit(request, slug):
    project = selectors.project_get_managed(request.user, slug)
    form = AdmitForm(request.POST)
    user = None
    if form.is_valid():
        user = get_user_model().objects.filter(username=form.cleaned_data["username"]).first()
    if user is None:
        messages.error(request, "No such user.")
    else:
        svc.membership_grant(project, svc.worker_for_user(user))
        messages.success(request, f"{user.username} may now label {project.name}.")
    return redirect(_workers_url(project, "admitted"))


@login_required
@require_POST
def project_worker_remove(request, slug, worker_id):
    project = selectors.project_get_managed(request.user, slug)
    worker = get_object_or_404(Worker, pk=worker_id, kind=WorkerKind.REGISTERED, memberships__project=project)
    svc.membership_revoke(project, worker)
    messages.success(request, f"{worker.user} no longer labels {project.name}.")
    return redirect(_workers_url(project, "admitted"))

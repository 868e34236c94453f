"""The dashboard's workers pages: the table with the quality rules, one worker, status
changes and undoing decisions. Same conventions as :mod:`labeling.dashboard.views`."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from labeling.dashboard import figures, forms, selectors, services
from labeling.dashboard.formatting import fmt_number
from labeling.dashboard.views import _context, _page, _project, _query

WORKER_COLUMNS = [
    ("id", "Worker"),
    ("answers", "Answers (all)"),
    ("accuracy", "Control accuracy"),
    ("skill", "Skill here"),
    ("seen", "Last seen"),
]


@login_required
@require_GET
def workers(request, slug):
    return workers_render(request, _project(request, slug))


def workers_render(request, project, *, rules_form=None, crowd_form=None, status=200):
    """The one workers page of a project: who answered, the decisions log, the quality
    rules and who may label (those forms post to ``project-workers``)."""
    from labeling.services.workers import quality_rules_for
    from labeling.worker_views import AdmitForm, CrowdSettingsForm, RulesForm

    form = forms.WorkerFilterForm(request.GET)
    data = form.cleaned_data if form.is_valid() else {}
    filters = selectors.WorkerFilters(
        status=data.get("status") or "",
        kind=data.get("kind") or "",
        q=data.get("q") or "",
        min_controls=data.get("min_controls") or 0,
        sort=data.get("sort") or "-answers",
        page=_page(request),
    )
    rows, more = selectors.workers_page(project, filters)
    columns = []
    for key, title in WORKER_COLUMNS:
        current = filters.sort.lstrip("-") == key
        descending = filters.sort.startswith("-")
        next_sort = (key if descending else f"-{key}") if current else f"-{key}"
        columns.append(
            {
                "title": title,
                "url": _query(request, sort=next_sort, page=None),
                "current": current,
                "arrow": ("↓" if descending else "↑") if current else "",
            }
        )
    automatic = request.GET.get("log")
    return render(
        request,
        "dashboard/workers.html",
        _context(
            request,
            project,
            "workers",
            form=form,
            rows=rows,
            columns=columns,
            next_url=_query(request, page=filters.page + 1) if more else None,
            prev_url=_query(request, page=filters.page - 1) if filters.page > 1 else None,
            decisions=selectors.decisions_log(project, automatic={"auto": True, "manual": False}.get(automatic)),
            log_filter=automatic or "",
            log_urls={key: _query(request, log=key or None) for key in ("", "auto", "manual")},
            rules_form=rules_form or RulesForm(instance=quality_rules_for(project), prefix="rules"),
            crowd_form=crowd_form or CrowdSettingsForm(instance=project, prefix="crowd"),
            admit_form=AdmitForm(),
            members=project.memberships.select_related("worker__user").order_by("worker__user__username"),
            rules_open=status != 200,
        ),
        status=status,
    )


@login_required
@require_GET
def worker_detail(request, slug, worker_id):
    project = _project(request, slug)
    worker = selectors.worker_get(project, worker_id)
    detail = selectors.worker_detail(project, worker)
    classes = selectors.label_classes(project)
    confusion = figures.worker_confusion(detail["skill"], classes, worker.display_name)
    return render(
        request,
        "dashboard/worker_detail.html",
        _context(
            request,
            project,
            "workers",
            worker=worker,
            confusion=confusion,
            status_form=forms.WorkerStatusForm(),
            here_text=fmt_number(detail["correct_here"] / detail["controls_here"], True)
            if detail["controls_here"]
            else "–",
            **detail,
        ),
    )


@login_required
@require_POST
def worker_status(request, slug, worker_id):
    project = _project(request, slug)
    worker = selectors.worker_get(project, worker_id)
    form = forms.WorkerStatusForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a status and give a reason.")
    else:
        everywhere = form.cleaned_data["everywhere"]
        if everywhere and not request.user.is_staff:
            raise PermissionDenied("Only staff change a worker's status on the whole platform.")
        decision = services.worker_status_set(
            worker, form.cleaned_data["status"], reason=form.cleaned_data["reason"], user=request.user,
            project=project, everywhere=everywhere,
        )
        where = "on the whole platform" if everywhere else "in this project"
        if decision is None:
            messages.info(request, f"{worker.display_name} is already {form.cleaned_data['status']} {where}.")
        else:
            messages.success(
                request, f"{worker.display_name} is now {decision.get_new_status_display().lower()} {where}."
            )
    return redirect("dashboard:worker", slug=project.slug, worker_id=worker.pk)


@login_required
@require_POST
def decision_undo(request, slug, decision_id):
    from labeling.services.workers import DecisionError

    project = _project(request, slug)
    decision = selectors.decision_get(project, decision_id, request.user)
    try:
        services.worker_decision_undo(decision, user=request.user, project=project)
    except DecisionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request, f"Decision reversed: the worker is {decision.get_previous_status_display().lower()} again."
        )
    return redirect("dashboard:worker", slug=project.slug, worker_id=decision.worker_id)

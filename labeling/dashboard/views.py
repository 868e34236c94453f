"""The admin dashboard: project owners and staff see the whole loop.

Views validate input, call a selector or one service, render. Pages are server-rendered
(charts are SVG from :mod:`labeling.dashboard.charts`); the live parts poll
``live.json`` from ``static/dashboard/dashboard.js``. This module holds the projects
list, a project's overview and its live state, and the helpers every page uses; the
other pages have modules of their own: ``item_views``, ``learning_views`` (clusters and
training), ``worker_views``, ``audit_views`` and ``site_views``.
"""

from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from labeling import selectors as core_selectors
from labeling.dashboard import aggregates, audit_selectors, charts, figures, forms, selectors, services
from labeling.services import settling


def _project(request, slug):
    return core_selectors.project_get_managed(request.user, slug)


def _page(request):
    try:
        return max(int(request.GET.get("page", 1)), 1)
    except ValueError:
        return 1


def _query(request, **changes):
    """The current query string with ``changes`` applied (``None`` drops a key)."""
    params = {key: value for key, value in request.GET.items() if value != ""}
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return "?" + urlencode(params) if params else "?"


def _context(request, project, tab, **extra):
    return {"project": project, "tab": tab, "live_url": reverse("dashboard:live", args=[project.slug]), **extra}


# --- Projects -------------------------------------------------------------------------------------


@login_required
@require_GET
def project_list(request):
    projects = list(selectors.projects_for(request.user))
    if not projects and not request.user.is_staff:
        return redirect("worker-home")  # a crowd worker: the dashboard is for project owners
    services.stats_refresh_if_stale(projects)
    last_hour = aggregates.answers_last_hour([p.pk for p in projects])
    rows = []
    for project in projects:
        stats = selectors.project_stats(project)
        summary = selectors.stats_summary(stats)
        run = project.active_run
        rows.append(
            {
                "project": project,
                "summary": summary,
                "bar": charts.stack_bar(_status_segments(summary), label=f"Progress of {project.name}"),
                "last_hour": last_hour.get(project.pk, 0),
                "accuracy": (run.metrics or {}).get("accuracy") if run else None,
                "eval_accuracy": (run.metrics or {}).get("eval_accuracy") if run else None,
            }
        )
    return render(request, "dashboard/projects.html", {"rows": rows, "legend": STATUS_LEGEND})


STATUS_LEGEND = [
    ("Labeled", "src-consensus"),
    ("Pseudo-labeled", "src-pseudo"),
    ("Needs review", "src-review"),
    ("Unlabeled", "src-none"),
]


def _status_segments(summary):
    return [
        ("labeled", summary["labeled"], "src-consensus"),
        ("pseudo-labeled", summary["pseudo_labeled"], "src-pseudo"),
        ("needs review", summary["review"], "src-review"),
        ("unlabeled", summary["unlabeled"], "src-none"),
    ]


# --- Overview -------------------------------------------------------------------------------------


@login_required
@require_GET
def overview(request, slug):
    project = _project(request, slug)
    services.stats_refresh_if_stale([project])
    stats = selectors.project_stats(project)
    summary = selectors.stats_summary(stats)
    summary["answers_last_hour"] = aggregates.answers_last_hour([project.pk])[project.pk]
    classes = selectors.label_classes(project)
    breakdown = aggregates.label_breakdown(project)
    agreement = aggregates.agreement(project)
    try:
        queue, queue_error = selectors.queue_preview(project), ""
    except ValueError as exc:
        queue, queue_error = [], str(exc)
    source_groups, sources_bar = figures.label_sources(breakdown)
    run = project.active_run
    return render(
        request,
        "dashboard/overview.html",
        _context(
            request,
            project,
            "overview",
            summary=summary,
            classes=classes,
            breakdown=breakdown,
            counts=figures.label_counts(breakdown, summary["answers_total"]),
            source_groups=source_groups,
            sources_bar=sources_bar,
            agreement=agreement,
            control_pool=core_selectors.control_pool_stats(project),
            consensus_lag=settling.consensus_lag(project.pk),
            audit=audit_selectors.audit_summary(project, last_round=False),
            kappa_words=aggregates.agreement_words(agreement["fleiss_kappa"]),
            throughput=figures.throughput(aggregates.throughput(project)),
            distribution=figures.label_distribution(classes, breakdown),
            queue=queue,
            queue_error=queue_error,
            pipeline=selectors.pipeline_runs(project),
            training=selectors.training_runs(project, n=3),
            run=run,
            training_form=forms.TrainingForm(),
        ),
    )


@login_required
@require_GET
@never_cache
def live(request, slug):
    project = _project(request, slug)
    services.stats_refresh_if_stale([project])
    return JsonResponse(selectors.live_state(project))

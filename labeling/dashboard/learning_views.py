"""The dashboard's learning pages: the cluster map and clustering rounds, training runs
and their progress. Same conventions as :mod:`labeling.dashboard.views`."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from labeling import clock
from labeling.dashboard import aggregates, figures, forms, selectors, services
from labeling.dashboard.views import _context, _project, _query


@login_required
@require_GET
def clusters(request, slug):
    project = _project(request, slug)
    by = "source" if request.GET.get("by") == "source" else "label"
    data = aggregates.cluster_points(project)
    chart, legend = figures.cluster_map(project, selectors.label_classes(project), data["points"], by)
    return render(
        request,
        "dashboard/clusters.html",
        _context(
            request,
            project,
            "clusters",
            chart=chart,
            legend=legend,
            by=by,
            shown=len(data["points"]),
            total=data["total"],
            pipeline=selectors.pipeline_runs(project),
        ),
    )


@login_required
@require_GET
def training(request, slug):
    project = _project(request, slug)
    runs = selectors.training_runs(project)
    selected = None
    run_id = request.GET.get("run")
    if run_id:
        try:
            selected = selectors.training_run_get(project, run_id)
        except ValidationError:
            selected = None
    elif runs:
        selected = selectors.training_run_get(project, runs[0].pk)
    return render(
        request,
        "dashboard/training.html",
        _context(
            request,
            project,
            "training",
            runs=runs,
            panel=figures.run_panel(project, selected) if selected else None,
            learning=figures.learning_curve(selectors.learning_curve(project)),
            form=forms.TrainingForm(),
            awaiting=_awaiting_run(request, runs),
            known_runs=",".join(str(run.pk) for run in runs[:5]),
        ),
    )


def _awaiting_run(request, runs):
    """Whether a run requested at ``?requested=<time>`` has not been created yet."""
    requested = parse_datetime(request.GET.get("requested") or "")
    if requested is None:
        return False
    return not any(run.created_at >= requested for run in runs)


@login_required
@require_GET
@never_cache
def training_panel(request, slug, run_id):
    project = _project(request, slug)
    run = selectors.training_run_get(project, run_id)
    return render(request, "dashboard/_run_panel.html", {"project": project, **figures.run_panel(project, run)})


@login_required
@require_POST
def training_start(request, slug):
    """Checks (reads only) and queues the request; the run itself is created by a task,
    so this answers at once even while a worker holds the database's write lock. The
    training page then shows the run as soon as it is queued."""
    from labeling.services.training import TrainingRefused

    project = _project(request, slug)
    form = forms.TrainingForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Epochs must be a whole number from 1 to 500.")
        return redirect("dashboard:training", slug=project.slug)
    config = {"epochs": form.cleaned_data["epochs"]} if form.cleaned_data.get("epochs") else None
    try:
        services.training_request(project, config=config, user=request.user)
    except TrainingRefused as exc:
        messages.error(request, f"Training not started: {exc}")
        return redirect("dashboard:training", slug=project.slug)
    messages.success(request, "Training requested: the run shows below as soon as it is queued, then its progress.")
    requested = clock.now().isoformat(timespec="microseconds")
    return redirect(reverse("dashboard:training", args=[project.slug]) + _query(request, requested=requested))


@login_required
@require_POST
def clustering_start(request, slug):
    project = _project(request, slug)
    from labeling.services.semisupervised import pipeline_start

    pipeline_start(project)
    messages.success(
        request,
        "Clustering and pseudo-labeling requested; it starts when no other round of this project runs. "
        "Progress shows under Background runs.",
    )
    return redirect(reverse("dashboard:overview", args=[project.slug]) + "#pipeline")

"""The admin dashboard: project owners and staff see the whole loop.

Views validate input, call a selector or one service, render. Pages are server-rendered
(charts are SVG from :mod:`labeling.dashboard.charts`); the live parts poll
``live.json`` from ``static/dashboard/dashboard.js``.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from labeling import clock
from labeling import selectors as core_selectors
from labeling.dashboard import aggregates, audit_selectors, charts, figures, forms, selectors, services
from labeling.models import KnownLabelSource, Split
from labeling.services import settling
from labeling.services.sites import site_secret_rotate


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


# --- Items ----------------------------------------------------------------------------------------


@login_required
@require_GET
def items(request, slug):
    project = _project(request, slug)
    form = forms.ItemFilterForm(request.GET)
    data = form.cleaned_data if form.is_valid() else {}
    filters = selectors.ItemFilters(
        status=data.get("status") or "",
        source=data.get("source") or "",
        split=data.get("split") or "",
        min_confidence=data.get("min_confidence"),
        max_confidence=data.get("max_confidence"),
        disputed=bool(data.get("disputed")),
        q=(data.get("q") or "").lstrip("#"),
        sort=data.get("sort") or "id",
        page=_page(request),
    )
    rows, more = selectors.items_page(project, filters)
    return render(
        request,
        "dashboard/items.html",
        _context(
            request,
            project,
            "items",
            form=form,
            rows=rows,
            next_url=_query(request, page=filters.page + 1) if more else None,
            prev_url=_query(request, page=filters.page - 1) if filters.page > 1 else None,
        ),
    )


@login_required
@require_GET
def item_detail(request, slug, item_id):
    from labeling.selectors.items import item_explain

    project = _project(request, slug)
    item = selectors.item_get(project, item_id)
    detail = selectors.item_detail(project, item)
    classes = selectors.label_classes(project)
    consensus = selectors.related_or_none(item, "consensus")
    posterior = figures.posterior(consensus, classes, project.consensus_threshold)
    known = selectors.related_or_none(item, "known_label")
    initial = {"label": (known.label_id if known else consensus.label_id if consensus and consensus.label_id else None)}
    return render(
        request,
        "dashboard/item_detail.html",
        _context(
            request,
            project,
            "items",
            item=item,
            consensus=consensus,
            known=known,
            pseudo=selectors.related_or_none(item, "pseudo_label"),
            posterior=posterior,
            explain=item_explain(item),
            settle_form=forms.LabelForm(project, initial=initial),
            can_settle=item.split == Split.POOL,
            **detail,
        ),
    )


@login_required
@require_POST
def item_settle(request, slug, item_id):
    return _item_label_set(request, slug, item_id, KnownLabelSource.SETTLED, "settled as")


@login_required
@require_POST
def item_gold(request, slug, item_id):
    return _item_label_set(request, slug, item_id, KnownLabelSource.GOLD, "now a gold item labeled")


def _item_label_set(request, slug, item_id, source, done):
    project = _project(request, slug)
    item = selectors.item_get(project, item_id)
    form = forms.LabelForm(project, request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the project's labels.")
    else:
        label = form.cleaned_data["label"]
        try:
            services.item_label_set(item, label, source=source, user=request.user)
        except ValueError as exc:
            messages.error(request, f"Not changed: {exc}.")
        else:
            messages.success(request, f"Item #{item.pk} is {done} “{label.name}”.")
    return redirect("dashboard:item", slug=project.slug, item_id=item.pk)


# --- Clusters -------------------------------------------------------------------------------------


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


# --- Training -------------------------------------------------------------------------------------


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


# --- Sites ----------------------------------------------------------------------------------------


@login_required
def sites(request, slug):
    project = _project(request, slug)
    site_rows = selectors.project_sites(project)
    for site in site_rows:
        site.pass_rate = site.challenges_passed / site.challenges_issued if site.challenges_issued else None
        site.may_rotate = _may_rotate(request.user, site)
    bots = selectors.suspected_bots(project)
    for worker in bots:
        worker.display_name = selectors.worker_name(worker)
    return render(
        request,
        "dashboard/sites.html",
        _context(request, project, "sites", sites=site_rows, bots=bots),
    )


def _may_rotate(user, site):
    return user.is_staff or site.owner_id == user.pk


@login_required
@require_POST
@never_cache
def site_rotate(request, slug, site_id):
    project = _project(request, slug)
    site = next((s for s in selectors.project_sites(project) if s.pk == site_id), None)
    if site is None or not _may_rotate(request.user, site):
        messages.error(request, "Only the site's owner or staff can rotate its secret.")
        return redirect("dashboard:sites", slug=project.slug)
    secret = site_secret_rotate(site)
    # The secret is shown once, in this response, and never stored in a cookie or session.
    response = render(
        request,
        "dashboard/site_secret.html",
        _context(request, project, "sites", site=site, secret=secret),
    )
    response["Cache-Control"] = "no-store"
    return response

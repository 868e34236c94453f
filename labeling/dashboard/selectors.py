"""Dashboard reads: what one page shows, in a fixed number of queries.

Pages never count a whole table per request. Item counts come from
:class:`~labeling.models.ProjectStats` (kept fresh by
:func:`labeling.dashboard.services.stats_refresh_if_stale`); what scans a whole project
is in :mod:`labeling.dashboard.aggregates`, cached. List pages fetch one page of rows
with ``select_related`` plus one query per extra column, never one per row, and show
"next page" links instead of counting all matches.
"""

from dataclasses import dataclass

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import (
    Exists,
    F,
    OuterRef,
    Q,
)
from django.http import Http404

from labeling.dashboard.aggregates import SOURCE_NAMES, answers_last_hour
from labeling.dashboard.formatting import class_css, fmt_number
from labeling.dashboard.worker_selectors import (  # noqa: F401  (the views read them from here)
    PAGE_SIZE,
    WORKER_SORTS,
    WorkerFilters,
    decision_get,
    decisions_log,
    project_workers,
    suspected_bots,
    wilson_interval,
    worker_detail,
    worker_get,
    worker_name,
    worker_speeds,
    workers_page,
)
from labeling.models import (
    Item,
    ItemStatus,
    KnownLabelSource,
    PipelineRun,
    Prediction,
    ProjectStats,
    RunStatus,
    Site,
    TrainingRun,
)

ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)


def label_classes(project):
    """``[{"id", "name", "position", "css"}]`` in position order."""
    return [
        {"id": pk, "name": name, "position": position, "css": class_css(position)}
        for pk, name, position in project.label_classes.order_by("position").values_list("id", "name", "position")
    ]


# --- Projects -----------------------------------------------------------------------------------


def projects_for(user):
    """The managed projects with their counters and active model, one query."""
    from labeling.selectors import projects_managed_by

    return (
        projects_managed_by(user)
        .select_related("stats", "active_run")
        .defer("active_run__history", "active_run__config")
        .order_by("name")
    )


def project_stats(project):
    """The project's :class:`ProjectStats` row, or ``None`` before its first count."""
    return related_or_none(project, "stats")


def stats_summary(stats):
    """Counts by status from a :class:`ProjectStats` row (or zeros without one)."""
    by_status = (stats.items_by_status if stats else None) or {}
    return {
        "items_total": stats.items_total if stats else 0,
        "labeled": by_status.get(ItemStatus.LABELED, 0),
        "pseudo_labeled": by_status.get(ItemStatus.PSEUDO_LABELED, 0),
        "review": by_status.get(ItemStatus.REVIEW, 0),
        "unlabeled": by_status.get(ItemStatus.UNLABELED, 0),
        "known_total": stats.known_total if stats else 0,
        "answers_total": stats.answers_total if stats else 0,
        "refreshed_at": stats.refreshed_at.isoformat() if stats else None,
    }


# --- The queue ----------------------------------------------------------------------------------


def queue_preview(project, n=15):
    """The next unknown items the project's selection strategy serves, with why."""
    from labeling.services.selection import items_queue

    ids = items_queue(project, n)
    rows = Item.objects.filter(pk__in=ids).select_related("consensus__label").in_bulk()
    return [rows[i] for i in ids]


# --- Background runs ------------------------------------------------------------------------------


def pipeline_runs(project, n=5):
    """The latest background runs, each with ``display_message``: the step a running
    one is on, and for a finished one that it finished (its last step is history)."""
    runs = list(PipelineRun.objects.filter(project=project).defer("state").order_by("-created_at")[:n])
    for run in runs:
        run.display_message = pipeline_message(run)
    return runs


def pipeline_message(run):
    if run.status in ACTIVE:
        return run.message or ("waiting for a worker" if run.status == RunStatus.QUEUED else "starting")
    if run.status == RunStatus.SUCCEEDED:
        return "finished"
    return "stopped" if run.status != RunStatus.FAILED else "failed"


def training_runs(project, n=50):
    return list(TrainingRun.objects.filter(project=project).defer("history", "config").order_by("-created_at")[:n])


def run_payload(run):
    return {
        "id": str(run.pk),
        "status": run.status,
        "status_display": run.get_status_display(),
        "epoch": run.epoch,
        "n_epochs": run.n_epochs,
        "accuracy": (run.metrics or {}).get("accuracy"),
        "error": run.error[:300],
    }


def live_state(project, now=None):
    """What the live parts of the pages poll: counts, active and recent runs."""
    stats = ProjectStats.objects.filter(project=project).first()
    pipelines = pipeline_runs(project)
    runs = list(
        TrainingRun.objects.filter(project=project)
        .only("id", "status", "epoch", "n_epochs", "metrics", "error", "created_at")
        .order_by("-created_at")[:5]
    )
    summary = stats_summary(stats)
    summary["answers_last_hour"] = answers_last_hour([project.pk], now=now)[project.pk]
    return {
        "stats": summary,
        "pipeline": [
            {
                "id": run.pk,
                "kind": run.kind,
                "kind_display": run.get_kind_display(),
                "status": run.status,
                "status_display": run.get_status_display(),
                "progress": round(run.progress, 4),
                "message": run.display_message,
                "error": run.error[:300],
            }
            for run in pipelines
        ],
        "training": [run_payload(run) for run in runs],
        "active": any(run.status in ACTIVE for run in pipelines) or any(run.status in ACTIVE for run in runs),
    }


def learning_curve(project):
    """One point per succeeded run: ``(human answers spent, accuracy, eval accuracy)``."""
    points = []
    for created, metrics in (
        TrainingRun.objects.filter(project=project, status=RunStatus.SUCCEEDED)
        .order_by("created_at")
        .values_list("created_at", "metrics")
    ):
        metrics = metrics or {}
        if metrics.get("human_answers") is None:
            continue
        points.append((metrics["human_answers"], metrics.get("accuracy"), metrics.get("eval_accuracy"), created))
    return sorted(points, key=lambda p: (p[0], p[3]))


def training_run_get(project, run_id):
    run = TrainingRun.objects.filter(project=project, pk=run_id).first()
    if run is None:
        raise Http404("No such training run")
    return run


# --- Items --------------------------------------------------------------------------------------


@dataclass
class ItemFilters:
    status: str = ""
    source: str = ""
    split: str = ""
    min_confidence: float | None = None
    max_confidence: float | None = None
    disputed: bool = False
    q: str = ""
    sort: str = "id"
    page: int = 1


ITEM_SORTS = {
    "id": ("id",),
    "-answers": ("-answer_count", "id"),
    "uncertain": ("consensus__confidence", "id"),
    "-priority": ("-priority", "id"),
    "-id": ("-id",),
}


def _source_filter(project, source):
    known_null = Q(known_label__isnull=True)
    if project.active_run_id:
        predicted = Q(Exists(Prediction.objects.filter(item=OuterRef("pk"), run_id=project.active_run_id)))
    else:
        predicted = Q(pk__in=[])
    verified = Q(pseudo_label__accepted=True, pseudo_label__label_id=F("consensus__label_id"))
    return {
        "gold": Q(known_label__source=KnownLabelSource.GOLD),
        "settled": Q(known_label__source=KnownLabelSource.SETTLED),
        "consensus": known_null & Q(status=ItemStatus.LABELED) & ~verified,
        "verified": known_null & Q(status=ItemStatus.LABELED) & verified,
        "pseudo": known_null & Q(status=ItemStatus.PSEUDO_LABELED),
        "model": known_null & Q(status=ItemStatus.UNLABELED) & predicted,
        "review": known_null & Q(status=ItemStatus.REVIEW),
        "none": known_null & Q(status=ItemStatus.UNLABELED) & ~predicted,
    }.get(source)


def items_page(project, filters):
    items = Item.objects.filter(project=project).select_related(
        "consensus__label", "known_label__label", "pseudo_label__label"
    )
    if filters.status:
        items = items.filter(status=filters.status)
    if filters.split:
        items = items.filter(split=filters.split)
    condition = _source_filter(project, filters.source)
    if condition is not None:
        items = items.filter(condition)
    if filters.min_confidence is not None:
        items = items.filter(consensus__confidence__gte=filters.min_confidence)
    if filters.max_confidence is not None:
        items = items.filter(consensus__confidence__lte=filters.max_confidence)
    if filters.disputed:
        items = items.filter(consensus__n_answers__gte=2, consensus__confidence__lt=project.consensus_threshold)
    if filters.q:
        term = filters.q.strip()
        items = items.filter(
            Q(text__icontains=term)
            | Q(source_name__icontains=term)
            | (Q(pk=int(term)) if term.isdigit() else Q(pk__in=[]))
        )
    start = (max(filters.page, 1) - 1) * PAGE_SIZE
    rows = list(items.order_by(*ITEM_SORTS.get(filters.sort, ("id",)))[start : start + PAGE_SIZE + 1])
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    predictions = {}
    if project.active_run_id and rows:
        predictions = {
            p.item_id: p
            for p in Prediction.objects.filter(
                run_id=project.active_run_id, item_id__in=[i.pk for i in rows]
            ).select_related("label")
        }
    for item in rows:
        item.prediction = predictions.get(item.pk)
        item.label_info = item_label(item, item.prediction)
    return rows, more


def related_or_none(obj, name):
    """A reverse one-to-one (``obj.consensus``), or ``None`` when there is no row."""
    try:
        return getattr(obj, name)
    except ObjectDoesNotExist:
        return None


def item_label(item, prediction=None):
    """The final label of an item as ``{"source", "source_name", "label", "confidence"}``."""
    known = related_or_none(item, "known_label")
    consensus = related_or_none(item, "consensus")
    pseudo = related_or_none(item, "pseudo_label")
    if known is not None:
        source = "gold" if known.source == KnownLabelSource.GOLD else "settled"
        label, confidence = known.label, 1.0
    elif item.status == ItemStatus.LABELED and consensus is not None:
        verified = pseudo is not None and pseudo.accepted and pseudo.label_id == consensus.label_id
        source, label, confidence = ("verified" if verified else "consensus"), consensus.label, consensus.confidence
    elif item.status == ItemStatus.PSEUDO_LABELED and pseudo is not None:
        source, label, confidence = "pseudo", pseudo.label, pseudo.confidence
    elif item.status == ItemStatus.REVIEW:
        source, label, confidence = (
            "review",
            consensus.label if consensus else None,
            consensus.confidence if consensus else None,
        )
    elif prediction is not None:
        source, label, confidence = "model", prediction.label, prediction.confidence
    else:
        source, label, confidence = "none", None, None
    disagreement = None if consensus is None or consensus.n_answers < 2 else 1 - consensus.confidence
    return {
        "source": source,
        "source_name": SOURCE_NAMES[source],
        "label": label,
        "css": class_css(label.position) if label is not None else "",
        "confidence": confidence,
        "confidence_text": fmt_number(confidence, percent=True),
        "disagreement": disagreement,
        "disagreement_text": fmt_number(disagreement, percent=True),
    }


def item_get(project, item_id):
    item = (
        Item.objects.filter(project=project, pk=item_id)
        .select_related(
            "project", "consensus__label", "known_label__label", "known_label__created_by", "pseudo_label__label"
        )
        .first()
    )
    if item is None:
        raise Http404("No such item")
    return item


def item_detail(project, item):
    predictions = list(
        Prediction.objects.filter(item=item).select_related("label", "run").order_by("-run__created_at")[:20]
    )
    active = next((p for p in predictions if p.run_id == project.active_run_id), None)
    return {
        "answers": list(item.answers.select_related("worker__user", "label").order_by("created_at")[:200]),
        "predictions": predictions,
        "label_info": item_label(item, active),
    }


# --- Sites --------------------------------------------------------------------------------------


def project_sites(project):
    return list(Site.objects.filter(projects=project).order_by("name"))

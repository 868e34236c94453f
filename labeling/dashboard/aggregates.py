"""Dashboard aggregates: the numbers that scan a whole project, computed at most once
per TTL and kept in Django's cache.

Label sources and the labels per class, agreement between workers, throughput, answers
of the last hour and the points of the cluster map all read every item or answer of a
project, so no page computes them per request: the first request after the TTL does,
and :func:`labeling.dashboard.services.project_changed` drops them after a dashboard
action.
"""

import math
from datetime import timedelta

from django.core.cache import cache
from django.db.models import BooleanField, Case, Count, F, IntegerField, OuterRef, Q, Subquery, Value, When
from django.db.models.functions import Mod, TruncHour

from labeling import bridge, clock
from labeling.models import (
    Answer,
    Consensus,
    Item,
    ItemEmbedding,
    ItemStatus,
    KnownLabel,
    KnownLabelSource,
    PipelineKind,
    PipelineRun,
    Prediction,
    PseudoLabel,
    RunStatus,
    Split,
)

AGGREGATE_TTL_S = 300
ACTIVITY_TTL_S = 60
HOURS_TTL_S = 31 * 24 * 3600
MAP_MAX_POINTS = 2500

#: Where an item's label comes from, in the order the dashboard shows them.
SOURCES = [
    ("gold", "Gold"),
    ("settled", "Settled by hand"),
    ("consensus", "Human consensus"),
    ("verified", "Verified pseudo-label"),
    ("pseudo", "Pseudo-label"),
    ("model", "Model guess only (not a label)"),
    ("review", "Needs review"),
    ("none", "Unlabeled, no model guess"),
]
SOURCE_NAMES = dict(SOURCES)
#: Sources that give an item a class (what the per-class counts hold).
LABEL_SOURCES = ("gold", "settled", "consensus", "verified", "pseudo", "model")
#: Labels people gave or confirmed.
HUMAN_SOURCES = ("gold", "settled", "consensus", "verified")
#: Labels: human ones and accepted pseudo-labels. A model's prediction is never one.
TRUE_LABEL_SOURCES = (*HUMAN_SOURCES, "pseudo")
#: Pool items with no label yet.
UNLABELED_SOURCES = ("model", "review", "none")


def _key(name, project_id, *parts):
    return ":".join(["crowdloop", "dashboard", name, str(project_id), *map(str, parts)])


def cache_keys(project_id):
    """Cache keys of a project's aggregates (cleared after a dashboard action)."""
    return [_key(name, project_id) for name in ("labels", "agreement", "throughput", "last-hour")]


def _cached(key, ttl, compute):
    value = cache.get(key)
    if value is None:
        value = compute()
        cache.set(key, value, ttl)
    return value


def answers_last_hour(project_ids, now=None):
    """``{project_id: answers in the last hour}``: cached per project for a minute,
    the missing ones computed in one grouped query."""
    now = now or clock.now()
    keys = {_key("last-hour", pk): pk for pk in project_ids}
    found = cache.get_many(list(keys))
    result = {keys[key]: value for key, value in found.items()}
    missing = [pk for pk in project_ids if pk not in result]
    if missing:
        counts = dict(
            Answer.objects.filter(item__project_id__in=missing, created_at__gte=now - timedelta(hours=1))
            .values_list("item__project_id")
            .annotate(n=Count("id"))
            .order_by()
        )
        fresh = {pk: counts.get(pk, 0) for pk in missing}
        cache.set_many({_key("last-hour", pk): n for pk, n in fresh.items()}, ACTIVITY_TTL_S)
        result.update(fresh)
    return result


def answers_per_hour(project, now=None):
    """``{hour: answers}`` over the last 30 days, counted incrementally.

    An hour that has ended never changes (an answer's ``created_at`` is its insert
    time), so its count is kept in the cache for 31 days and only the answers since the
    start of the current hour are counted again: after the first call the query reads
    one hour of answers, not thirty days.
    """
    now = now or clock.now()
    current = now.replace(minute=0, second=0, microsecond=0)
    start = current.replace(hour=0) - timedelta(days=29)
    key = _key("hours", project.pk)
    kept = cache.get(key) or {}
    since = max(kept.get("final_before", start), start)
    hours = {hour: n for hour, n in kept.get("hours", {}).items() if start <= hour < since}
    hours.update(
        Answer.objects.filter(item__project=project, created_at__gte=since)
        .annotate(bucket=TruncHour("created_at"))
        .values_list("bucket")
        .annotate(n=Count("id"))
        .order_by()
    )
    cache.set(key, {"hours": hours, "final_before": current}, HOURS_TTL_S)
    return hours


def throughput(project, now=None):
    """Answers per hour (last 48 h) and per day (last 30 days, UTC), cached for a minute."""

    def compute():
        at = now or clock.now()
        hours = answers_per_hour(project, now=at)
        hour0 = at.replace(minute=0, second=0, microsecond=0) - timedelta(hours=47)
        day0 = at.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=29)
        daily = {}
        for hour, n in hours.items():
            day = hour.replace(hour=0)
            daily[day] = daily.get(day, 0) + n
        hourly = [hour0 + timedelta(hours=i) for i in range(48)]
        days = [day0 + timedelta(days=i) for i in range(30)]
        return {
            "hourly": [(h.strftime("%H:00"), h.strftime("%d %b %H:00 UTC"), hours.get(h, 0)) for h in hourly],
            "daily": [(d.strftime("%d %b"), d.strftime("%a %d %b %Y"), daily.get(d, 0)) for d in days],
        }

    return _cached(_key("throughput", project.pk), ACTIVITY_TTL_S, compute)


def label_breakdown(project):
    """Where the pool's labels come from, overall and per class (a cached aggregate).

    Sources: gold and settled (known labels), human consensus, verified pseudo-label
    (humans confirmed an accepted pseudo-label), pseudo-label (accepted, not yet
    verified), model (no other label, predicted by the active run), needs review, none.
    Held-out items are counted apart: they are for measuring, not labeling.
    """
    return _cached(_key("labels", project.pk), AGGREGATE_TTL_S, lambda: _label_breakdown_compute(project))


def _label_breakdown_compute(project):
    pool = Item.objects.filter(project=project, split=Split.POOL)
    sources, holdout = _item_sources(project)
    per_class = {}
    for label_id, source, n in _class_sources(project, pool):
        per_class.setdefault(label_id, dict.fromkeys(LABEL_SOURCES, 0))[source] += n
        if source == "verified":
            sources["verified"] += n
            sources["consensus"] -= n
        elif source == "model":
            sources["model"] += n
            sources["none"] -= n
    return {
        "sources": sources,
        "per_class": per_class,
        "pool_total": sum(sources.values()),
        "holdout_total": holdout,
        "computed_at": clock.now().isoformat(),
    }


def _item_sources(project):
    """``({source: pool items}, held-out items)`` from the items' known labels and
    status alone: verified consensus counts as consensus and a model's guess as none
    (:func:`_class_sources` tells them apart)."""
    sources = dict.fromkeys(SOURCE_NAMES, 0)
    holdout = 0
    for split, status, known, n in (
        Item.objects.filter(project=project)
        .values_list("split", "status", "known_label__source")
        .annotate(n=Count("id"))
        .order_by()
    ):
        if split != Split.POOL:
            holdout += n
        elif known:
            sources["gold" if known == KnownLabelSource.GOLD else "settled"] += n
        elif status == ItemStatus.LABELED:
            sources["consensus"] += n
        elif status == ItemStatus.PSEUDO_LABELED:
            sources["pseudo"] += n
        elif status == ItemStatus.REVIEW:
            sources["review"] += n
        elif status == ItemStatus.UNLABELED:
            sources["none"] += n
    return sources, holdout


def _class_sources(project, pool):
    """``(label_id, source, n)`` over the ``pool`` items that have a class: known labels,
    consensus (verified or not), accepted pseudo-labels, then the active run's guesses
    for unlabeled items. One grouped query per kind."""
    for label_id, source, n in (
        KnownLabel.objects.filter(item__in=pool).values_list("label_id", "source").annotate(n=Count("pk")).order_by()
    ):
        yield label_id, "gold" if source == KnownLabelSource.GOLD else "settled", n
    verified = Case(
        When(item__pseudo_label__accepted=True, item__pseudo_label__label_id=F("label_id"), then=Value(True)),
        default=Value(False),
        output_field=BooleanField(),
    )
    for label_id, is_verified, n in (
        Consensus.objects.filter(
            item__in=pool, item__status=ItemStatus.LABELED, item__known_label__isnull=True, label__isnull=False
        )
        .annotate(verified=verified)
        .values_list("label_id", "verified")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        yield label_id, "verified" if is_verified else "consensus", n
    for label_id, n in (
        PseudoLabel.objects.filter(
            item__in=pool, item__status=ItemStatus.PSEUDO_LABELED, item__known_label__isnull=True
        )
        .values_list("label_id")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        yield label_id, "pseudo", n
    if project.active_run_id:
        for label_id, n in (
            Prediction.objects.filter(
                run_id=project.active_run_id,
                item__in=pool,
                item__status=ItemStatus.UNLABELED,
                item__known_label__isnull=True,
            )
            .values_list("label_id")
            .annotate(n=Count("pk"))
            .order_by()
        ):
            yield label_id, "model", n


def agreement(project):
    """Fleiss' kappa and Krippendorff's alpha over the counted answers (a cached
    aggregate: one grouped query, then :func:`labeling.bridge.answers_agreement`)."""

    def compute():
        return {**bridge.answers_agreement(project), "computed_at": clock.now().isoformat()}

    return _cached(_key("agreement", project.pk), AGGREGATE_TTL_S, compute)


def agreement_words(value):
    """Landis and Koch's words for a kappa."""
    if value is None:
        return "not enough overlapping answers"
    for bound, words in (
        (0, "worse than chance"),
        (0.2, "slight"),
        (0.4, "fair"),
        (0.6, "moderate"),
        (0.8, "substantial"),
    ):
        if value < bound:
            return words
    return "almost perfect"


def cluster_points(project):
    """Up to :data:`MAP_MAX_POINTS` embedded items with their final label and source
    (representatives first, the rest an even sample by id), cached until the next
    clustering or model."""
    latest = (
        PipelineRun.objects.filter(project=project, kind=PipelineKind.CLUSTER, status=RunStatus.SUCCEEDED)
        .order_by("-created_at")
        .values_list("pk", flat=True)
        .first()
    )
    key = _key("map", project.pk, latest or 0, project.active_run_id or 0)
    return _cached(key, AGGREGATE_TTL_S, lambda: _cluster_points_compute(project))


def _cluster_points_compute(project):
    embeddings = ItemEmbedding.objects.filter(item__project=project)
    total = embeddings.count()
    if total > MAP_MAX_POINTS:
        step = math.ceil(total / MAP_MAX_POINTS)
        embeddings = embeddings.annotate(bucket=Mod("item_id", step)).filter(Q(bucket=0) | Q(is_representative=True))
    points = []
    for item_id, x, y, cluster, representative, *label_fields in _map_rows(project, embeddings):
        points.append((item_id, x, y, cluster, representative, *_map_source(*label_fields)))
    return {"points": points, "total": total}


def _map_rows(project, embeddings):
    """The map's rows of ``embeddings``: position, cluster, then what says an item's
    label (status, known label and its source, consensus, pseudo-label, the active
    run's guess), representatives first."""
    if project.active_run_id:
        prediction = Prediction.objects.filter(item=OuterRef("item_id"), run_id=project.active_run_id)
        predicted = Subquery(prediction.values("label_id")[:1])
    else:
        predicted = Value(None, output_field=IntegerField())
    return (
        embeddings.annotate(predicted=predicted)
        .order_by("-is_representative", "item_id")
        .values_list(
            "item_id",
            "x",
            "y",
            "cluster",
            "is_representative",
            "item__status",
            "item__known_label__label_id",
            "item__known_label__source",
            "item__consensus__label_id",
            "item__pseudo_label__label_id",
            "predicted",
        )[: int(MAP_MAX_POINTS * 1.2)]
    )


def _map_source(status, known, known_source, consensus, pseudo, predicted):
    """``(source, label_id)`` of a point on the map."""
    if known:
        return ("gold" if known_source == KnownLabelSource.GOLD else "settled"), known
    if status == ItemStatus.LABELED:
        return ("verified" if pseudo == consensus else "consensus"), consensus
    if status == ItemStatus.PSEUDO_LABELED:
        return "pseudo", pseudo
    if status == ItemStatus.REVIEW:
        return "review", consensus
    if predicted:
        return "model", predicted
    return "none", None

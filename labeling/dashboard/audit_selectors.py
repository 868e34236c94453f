"""Reads of the label-noise audit for the dashboard and the API."""
from django.db.models import Count, Q
from django.http import Http404

from labeling.models import (
    Answer,
    AuditDecision,
    AuditOutcome,
    PipelineKind,
    PipelineRun,
)

PAGE = 200


def audit_summary(project, *, last_round=True):
    """Decisions of ``project`` by outcome in one query, and (``last_round``) the last
    audit round in another."""
    counts = AuditDecision.objects.filter(project=project).aggregate(
        total=Count("pk"),
        **{outcome.value: Count("pk", filter=Q(outcome=outcome)) for outcome in AuditOutcome},
    )
    if last_round:
        counts["last_round"] = (
            PipelineRun.objects.filter(project=project, kind=PipelineKind.AUDIT).order_by("-created_at").first()
        )
    return counts


def audit_decisions(project, *, outcome=None, limit=PAGE):
    """The most recent decisions of ``project`` (optionally of one ``outcome``), each with
    ``followed``: the counted answers its item received after the decision, as
    ``[(label name, created_at)]``. Two queries, whatever the number of rows."""
    rows = AuditDecision.objects.filter(project=project).select_related("item", "given_label", "model_label", "final_label")
    if outcome:
        rows = rows.filter(outcome=outcome)
    decisions = list(rows.order_by("-created_at", "score")[:limit])
    if not decisions:
        return decisions
    first = min(decision.created_at for decision in decisions)
    answers = {}
    for item_id, name, created_at in (
        Answer.objects.filter(item_id__in={d.item_id for d in decisions}, created_at__gte=first)
        .without_banned_workers()
        .exclude(verdict=False)
        .order_by("created_at")
        .values_list("item_id", "label__name", "created_at")
    ):
        answers.setdefault(item_id, []).append((name, created_at))
    for decision in decisions:
        decision.followed = [(name, at) for name, at in answers.get(decision.item_id, []) if at >= decision.created_at]
    return decisions


def audit_decision_get(project, decision_id):
    decision = AuditDecision.objects.filter(project=project, pk=decision_id).first()
    if decision is None:
        raise Http404("No such audit decision")
    return decision

"""Registered crowd workers: sign-up, admission, work under leases, reputation and the
quality rules that pause or ban them.

The worker UI's door onto the shared service layer: items come from
:mod:`~labeling.services.selection` (the same strategies and leases as the widget),
answers are written by :func:`~labeling.services.answers.answers_record`, and consensus
is recomputed by :mod:`~labeling.services.consensus`. Callers (views, API) never see an
item id, a gold flag or a label of an item: only lease public ids.
"""
import math
import random
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.db import transaction
from django.db.models import Count, F, Max, Q
from django.db.models.functions import Greatest
from django.http import Http404
from django.utils import timezone

from labeling import bridge
from labeling.models import (
    Answer,
    AnswerSource,
    Item,
    Lease,
    Prediction,
    Project,
    ProjectMembership,
    PseudoLabel,
    QualityRules,
    Skip,
    Worker,
    WorkerDecision,
    WorkerKind,
    WorkerSkill,
    WorkerStatus,
)
from labeling.services import control_pool, feedback, selection
from labeling.services.answers import AnswerInput, answers_record
from labeling.services.consensus import items_consensus_update
from labeling.services.worker_status import (  # noqa: F401 (re-exported for callers)
    DecisionError,
    fresh_start,
    projects_closing,
    status_here,
    worker_answers_recount,
    worker_decision_reverse,
    worker_status_change,
    worker_status_in,
)

# Share of control items: raised for new or doubtful workers, lowered for trusted ones.
NEW_OR_DOUBTFUL_SHARE = 0.25
DOUBTFUL_BELOW = 0.75  # smoothed control accuracy
TRUSTED_MIN_CONTROLS = 30
TRUSTED_LOWER_BOUND = 0.8  # Wilson lower bound of control accuracy
MAX_CONTROL_SHARE = 0.5
TIME_SAMPLE = 500  # answers used for the answer-time profile


class WorkerError(Exception):
    """Base of the refusals below; the message is safe to show to the worker."""


class UnknownTask(WorkerError):
    """A lease id or answer key that is not this worker's (or does not exist)."""


class WorkerNotActive(WorkerError):
    def __init__(self, worker, status=None):
        self.status = status or worker.status
        where = "Your account is" if self.status == worker.status else "You are"
        super().__init__(f"{where} {WorkerStatus(self.status).label.lower()}; you cannot label for now.")


class UndoRefused(WorkerError):
    pass


def _now():
    return timezone.now()


# --- Accounts and admission -------------------------------------------------------------------


def worker_sign_up(*, username, password, email=""):
    """Create a user account with its registered worker; raises ``ValidationError`` for a
    weak password or a taken name."""
    from django.core.exceptions import ValidationError

    User = get_user_model()
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationError("That user name is taken.")
    user = User(username=username, email=email)
    validate_password(password, user)
    with transaction.atomic():
        user.set_password(password)
        user.save()
        Worker.objects.create(user=user, kind=WorkerKind.REGISTERED)
    return user


def worker_for_user(user):
    """The registered worker of ``user``, created on first use."""
    worker, _ = Worker.objects.get_or_create(user=user, defaults={"kind": WorkerKind.REGISTERED})
    return worker


def projects_for_worker(worker):
    """Projects ``worker`` is admitted to: open to all, or with a membership."""
    if worker is None or worker.kind != WorkerKind.REGISTERED:
        return Project.objects.none()
    admitted = ProjectMembership.objects.filter(worker=worker).values("project_id")
    return Project.objects.filter(Q(open_to_all_workers=True) | Q(pk__in=admitted))


def project_get_for_worker(worker, slug):
    project = projects_for_worker(worker).filter(slug=slug).first()
    if project is None:
        raise Http404("No such project")
    return project


def membership_grant(project, worker):
    membership, _ = ProjectMembership.objects.get_or_create(project=project, worker=worker)
    return membership


def membership_revoke(project, worker, *, now=None):
    """Remove ``worker`` from ``project``; their open leases there return the items."""
    now = now or _now()
    with transaction.atomic():
        ProjectMembership.objects.filter(project=project, worker=worker).delete()
        Lease.objects.filter(worker=worker, item__project=project, expires_at__gt=now).update(expires_at=now)


def quality_rules_for(project):
    """The project's rules, or the defaults (unsaved) when it has none."""
    return QualityRules.objects.filter(project=project).first() or QualityRules(project=project)


def quality_rules_update(project, **fields):
    rules = quality_rules_for(project)
    for name, value in fields.items():
        setattr(rules, name, value)
    rules.full_clean()
    rules.save()
    return rules


def project_crowd_settings_update(project, *, open_to_all_workers, show_control_feedback, gold_share):
    """Who may label ``project``, whether missed control items are explained, and the
    share of control items."""
    project.open_to_all_workers = open_to_all_workers
    project.show_control_feedback = show_control_feedback
    project.gold_share = gold_share
    project.full_clean()
    project.save(update_fields=["open_to_all_workers", "show_control_feedback", "gold_share"])
    return project


# --- Assignment -------------------------------------------------------------------------------


@dataclass
class Batch:
    leases: list
    target: object = None  # the label of a "select all X" grid


def _control_counts(worker, project):
    counts = Answer.objects.filter(worker=worker, item__project=project, correct__isnull=False).aggregate(
        total=Count("id"), correct=Count("id", filter=Q(correct=True))
    )
    return counts["total"], counts["correct"]


def control_share_for(worker, project, rules=None):
    """The share of control items in this worker's next items: higher while they are new
    or doubtful (so the rules can judge them soon), lower once they are trusted."""
    rules = rules or quality_rules_for(project)
    base = project.gold_share
    total, correct = _control_counts(worker, project)
    if total < rules.min_control_answers or bridge.smoothed_accuracy(correct, total) < DOUBTFUL_BELOW:
        share = max(2 * base, NEW_OR_DOUBTFUL_SHARE)
    elif total >= TRUSTED_MIN_CONTROLS and wilson_interval(correct, total)[0] >= TRUSTED_LOWER_BOUND:
        share = base / 2
    else:
        share = base
    return min(share, MAX_CONTROL_SHARE)


def _ensure_active(worker, project=None):
    """Refuse a worker paused or banned platform-wide or, given one, in ``project``."""
    status = worker.status if project is None else worker_status_in(worker, project)
    if status != WorkerStatus.ACTIVE:
        raise WorkerNotActive(worker, status)


def _items_seen_by(worker, project):
    leased = Lease.objects.filter(worker=worker, item__project=project).values_list("item_id", flat=True)
    answered = Answer.objects.filter(worker=worker, item__project=project).values_list("item_id", flat=True)
    return set(leased) | set(answered)


def tasks_next(*, worker, project, n, exclude=(), grid=False, now=None, rng=None):
    """Up to ``n`` items for ``worker``, each under a lease.

    First the worker's still-open leases in this project that the client does not hold
    (``exclude``: lease public ids it already has), so a reloaded page gets its items
    back; then new ones: control items at :func:`control_share_for`, randomly placed,
    and unknown items in the order of the project's selection strategy. Unknown items
    are picked with their rows locked and leased in the same transaction. No controls
    are handed out when no unknown item is left. With ``grid`` the batch carries the
    target label of a "select all X" grid.
    """
    now = now or _now()
    rng = rng or random.SystemRandom()
    _ensure_active(worker, project)
    held = list(
        Lease.objects.filter(worker=worker, item__project=project, expires_at__gt=now)
        .exclude(public_id__in=list(exclude))
        .select_related("item")
        .order_by("id")[:n]
    )
    fresh = []
    need = n - len(held)
    if need > 0:
        share = control_share_for(worker, project)
        n_controls = min(need, int(need * share + rng.random()))
        with transaction.atomic():
            controls = []
            if n_controls:
                controls = selection.control_items_pick(
                    project, worker=worker, n=n_controls, exclude_ids=_items_seen_by(worker, project), rng=rng
                )
            # At least one unknown item is asked for, to know that some are left.
            unknown = selection.unknown_items_pick(
                project, worker=worker, n=max(need - len(controls), 1), exclude_ids={c.pk for c in controls},
                now=now, for_update=True,
            )
            items = controls + unknown[: need - len(controls)] if unknown else []
            rng.shuffle(items)
            leases = selection.leases_grant(
                worker=worker, items=items, ttl_seconds=settings.CROWDLOOP_LEASE_TTL_S,
                control_ids=[c.pk for c in controls], now=now,
            )
            control_pool.exposures_record(worker=worker, item_ids=[c.pk for c in controls if c in items], now=now)
        order = {item.pk: i for i, item in enumerate(items)}
        fresh = sorted(leases, key=lambda lease: order[lease.item_id])
    leases = held + fresh
    return Batch(leases=leases, target=_grid_target(project, leases, rng) if grid else None)


def _grid_target(project, leases, rng):
    """The label most of these items are expected to have (pseudo-labels, else the
    active model's predictions), else a random one."""
    labels = list(project.label_classes.all())
    if not labels:
        return None
    ids = [lease.item_id for lease in leases]
    counts = Counter(PseudoLabel.objects.filter(item_id__in=ids).values_list("label_id", flat=True))
    if not counts and project.active_run_id:
        counts = Counter(
            Prediction.objects.filter(run_id=project.active_run_id, item_id__in=ids).values_list("label_id", flat=True)
        )
    if counts:
        best = counts.most_common(1)[0][0]
        return next(label for label in labels if label.pk == best)
    return rng.choice(labels)


# --- Answers ----------------------------------------------------------------------------------


@dataclass
class TaskAnswer:
    """One answer from the worker UI. ``label`` ``None`` is a skip; ``verdict`` ``False``
    means "not this label" (a grid tile left unselected)."""

    lease_id: str
    key: str
    label: str | None
    time_ms: int | None = None
    verdict: bool | None = None


@dataclass
class TaskOutcome:
    lease_id: str
    key: str
    status: str  # stored, duplicate, expired
    feedback: dict | None = None
    skipped: bool = False


@dataclass
class SubmitResult:
    outcomes: list
    decision: WorkerDecision | None = None
    worker: Worker = None
    status: str = WorkerStatus.ACTIVE  # the worker's status in the project after the rules ran


def task_answers_submit(*, worker, project, answers, now=None):
    """Store a batch of answers (and skips) for leases held by ``worker`` in ``project``.

    Idempotent per client key: a key already stored answers ``duplicate`` and stores
    nothing. An answer is accepted only while its lease is open (and, for an unknown
    item, while the item is below the answer cap); otherwise ``expired``. Any lease id
    that is not this worker's in this project refuses the whole batch
    (:class:`UnknownTask`) before anything is written. The quality rules run after.
    A missed control item is explained only within :mod:`~labeling.services.feedback`'s
    limits; an item explained to this worker before is no longer control for them.
    """
    now = now or _now()
    _ensure_active(worker, project)
    labels = {label.name: label for label in project.label_classes.all()}
    by_id = {label.pk: label for label in labels.values()}
    for answer in answers:
        if answer.label is not None and answer.label not in labels:
            raise ValueError(f"unknown label {answer.label!r}")
    wanted = {answer.lease_id for answer in answers}
    with transaction.atomic():
        item_ids = sorted(
            Lease.objects.filter(worker=worker, item__project=project, public_id__in=wanted).values_list(
                "item_id", flat=True
            )
        )
        if len(item_ids) != len(wanted):
            raise UnknownTask("Unknown task id.")
        # Lock the items (in id order) before reading leases and answers, so that a
        # concurrent retry waits for this batch and pickers skip these items. "No key"
        # locks leave inserts that reference the items (new leases, answers) unblocked.
        items = {
            item.pk: item
            for item in Item.objects.select_for_update(no_key=True).filter(pk__in=item_ids).order_by("pk")
        }
        leases = {lease.public_id: lease for lease in Lease.objects.filter(worker=worker, public_id__in=wanted)}
        stored = {
            row.task_ref: row
            for row in Answer.objects.filter(
                worker=worker, source=AnswerSource.WORKER, task_ref__in={a.key for a in answers}
            )
        }
        skipped = set(Skip.objects.filter(worker=worker, item_id__in=item_ids).values_list("item_id", flat=True))
        explained = feedback.explained_item_ids(worker, item_ids)
        control_labels = selection.control_label_of(
            [items[lease.item_id] for lease in leases.values() if lease.is_control and lease.item_id not in explained]
        )
        budget = feedback.FeedbackBudget(worker, project, now)
        outcomes, inputs, consumed, skips = [], [], set(), []
        for answer in answers:
            lease = leases[answer.lease_id]
            item = items[lease.item_id]
            control = by_id.get(control_labels.get(item.pk))
            previous = stored.get(answer.key)
            if previous is not None or (answer.label is None and item.pk in skipped):
                told = None
                if previous is not None and previous.correct is False and item.pk in explained:
                    label = by_id.get(selection.control_label_of([item]).get(item.pk))
                    told = feedback.feedback_payload(label) if label is not None else None
                outcomes.append(TaskOutcome(lease.public_id, answer.key, "duplicate", told, previous is None))
                continue
            is_open = lease.expires_at > now and lease.pk not in consumed
            if is_open and not lease.is_control and item.answer_count >= project.max_answers_per_item:
                consumed.add(lease.pk)
                is_open = False
            if not is_open:
                outcomes.append(TaskOutcome(lease.public_id, answer.key, "expired"))
                continue
            consumed.add(lease.pk)
            if answer.label is None:
                skips.append(Skip(item=item, worker=worker))
                outcomes.append(TaskOutcome(lease.public_id, answer.key, "stored", skipped=True))
                continue
            label = labels[answer.label]
            correct = None if control is None else (label.pk == control.pk) != (answer.verdict is False)
            inputs.append(
                AnswerInput(
                    item=item, label_id=label.pk, task_ref=answer.key, verdict=answer.verdict,
                    is_control=control is not None, correct=correct, time_taken_ms=answer.time_ms,
                )
            )
            item.answer_count += 1
            told = budget.explain(item, control) if correct is False else None
            outcomes.append(TaskOutcome(lease.public_id, answer.key, "stored", told))
        Lease.objects.filter(pk__in=consumed).update(expires_at=now)
        Skip.objects.bulk_create(skips, ignore_conflicts=True)
        _, raced = answers_record(worker=worker, inputs=inputs, source=AnswerSource.WORKER, now=now)
    raced = {row.task_ref for row in raced}
    for outcome in outcomes:
        if outcome.key in raced and outcome.status == "stored":
            outcome.status = "duplicate"
    decision = worker_rules_apply(worker, project, now=now)
    worker.refresh_from_db()
    status = worker_status_in(worker, project)
    return SubmitResult(outcomes=outcomes, decision=decision, worker=worker, status=status)


def answer_undo(*, worker, key, now=None):
    """Delete the worker's answer with client key ``key`` if it is younger than
    ``CROWDLOOP_UNDO_WINDOW_S``: counters go back, the consensus of the item is
    recomputed and the lease reopens, so the item can be answered again. Returns the
    lease."""
    now = now or _now()
    _ensure_active(worker)
    answer = (
        Answer.objects.filter(worker=worker, source=AnswerSource.WORKER, task_ref=key)
        .select_related("item__project")
        .first()
    )
    if answer is None:
        raise UnknownTask("Unknown answer.")
    _ensure_active(worker, answer.item.project)
    with transaction.atomic():
        Item.objects.select_for_update(no_key=True).filter(pk=answer.item_id).first()
        answer = Answer.objects.filter(pk=answer.pk).first()
        if answer is None:
            raise UnknownTask("Unknown answer.")
        if answer.created_at < now - timedelta(seconds=settings.CROWDLOOP_UNDO_WINDOW_S):
            raise UndoRefused(f"Answers can be undone for {settings.CROWDLOOP_UNDO_WINDOW_S} seconds only.")
        answer.delete()
        Item.objects.filter(pk=answer.item_id).update(answer_count=Greatest(F("answer_count") - 1, 0))
        control = answer.correct is not None
        Worker.objects.filter(pk=worker.pk).update(
            answer_total=Greatest(F("answer_total") - 1, 0),
            control_total=Greatest(F("control_total") - int(control), 0),
            control_correct=Greatest(F("control_correct") - int(answer.correct is True), 0),
        )
        lease = Lease.objects.get(worker=worker, item_id=answer.item_id)
        lease.expires_at = now + timedelta(seconds=settings.CROWDLOOP_LEASE_TTL_S)
        lease.save(update_fields=["expires_at"])
    items_consensus_update([answer.item_id])
    return lease


# --- Quality rules and decisions --------------------------------------------------------------


def worker_rules_check(worker, project, rules=None):
    """The first of the project's rules this worker breaks, as a sentence, or ``None``."""
    rules = rules or quality_rules_for(project)
    mine = Answer.objects.filter(worker=worker, item__project=project, source=AnswerSource.WORKER)
    skips = Skip.objects.filter(worker=worker, item__project=project)
    since = fresh_start(worker, project)
    if since is not None:
        mine, skips = mine.filter(created_at__gt=since), skips.filter(created_at__gt=since)
    window = rules.control_window
    recent = list(
        mine.filter(correct__isnull=False).order_by("-created_at", "-id").values_list("correct", flat=True)[:window]
    )
    if len(recent) >= max(rules.min_control_answers, 1):
        accuracy = sum(recent) / len(recent)
        if accuracy < rules.min_control_accuracy:
            return (
                f"accuracy {sum(recent)}/{len(recent)} ({accuracy:.0%}) on the last {len(recent)} control answers, "
                f"below {rules.min_control_accuracy:.0%}"
            )
    if rules.min_answer_ms:
        times = list(mine.exclude(time_taken_ms=None).order_by("-created_at", "-id").values_list(
            "time_taken_ms", flat=True)[:window])
        if len(times) >= window:
            fast = sum(1 for ms in times if ms < rules.min_answer_ms)
            if fast / len(times) > rules.max_fast_share:
                return (
                    f"{fast} of the last {len(times)} answers faster than {rules.min_answer_ms} ms "
                    f"(more than {rules.max_fast_share:.0%})"
                )
    if rules.max_skips_in_row:
        last_answer = mine.aggregate(at=Max("created_at"))["at"]
        in_row = (skips.filter(created_at__gt=last_answer) if last_answer else skips).count()
        if in_row >= rules.max_skips_in_row:
            return f"{in_row} skips in a row (limit {rules.max_skips_in_row})"
    return None


def worker_rules_apply(worker, project, *, now=None):
    """Run the project's rules on a worker active there; pause or ban them in this
    project (per the rules) and log the decision when one is broken. Returns the
    decision or ``None``."""
    if worker_status_in(worker, project) != WorkerStatus.ACTIVE:
        return None
    rules = quality_rules_for(project)
    reason = worker_rules_check(worker, project, rules)
    if reason is None:
        return None
    return worker_status_change(worker, rules.action, reason=reason, project=project, automatic=True, now=now)


# --- Reputation -------------------------------------------------------------------------------


def wilson_interval(correct, total, z=1.96):
    """Wilson score interval of a proportion (95 % by default); ``(0, 1)`` without data."""
    if total <= 0:
        return 0.0, 1.0
    p = correct / total
    denominator = 1 + z * z / total
    centre = p + z * z / (2 * total)
    spread = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return max((centre - spread) / denominator, 0.0), min((centre + spread) / denominator, 1.0)


@dataclass
class Reputation:
    answers: int
    skips: int
    controls: int
    controls_correct: int
    accuracy: float  # smoothed with a prior: 1/1 is not 100 %
    interval: tuple
    median_ms: int | None
    fast_share: float | None
    min_answer_ms: int
    agreement: float | None
    agreement_n: int
    skill: float | None = None
    confusion: list | None = None
    labels: list | None = None

    @property
    def confusion_rows(self):
        """``(true label, row)`` pairs of the confusion matrix, for display."""
        return list(zip(self.labels or [], self.confusion or []))


def worker_reputation(worker, project=None):
    """Accuracy on control items (smoothed, with a Wilson interval), answer-time profile,
    agreement with consensus and, once truth inference ran, the estimated confusion
    matrix; for one project or over all."""
    answers = Answer.objects.filter(worker=worker)
    skips = Skip.objects.filter(worker=worker)
    if project is not None:
        answers, skips = answers.filter(item__project=project), skips.filter(item__project=project)
    counts = answers.aggregate(
        total=Count("id"),
        controls=Count("id", filter=Q(correct__isnull=False)),
        correct=Count("id", filter=Q(correct=True)),
    )
    times = sorted(
        answers.exclude(time_taken_ms=None).order_by("-id").values_list("time_taken_ms", flat=True)[:TIME_SAMPLE]
    )
    min_ms = (quality_rules_for(project) if project is not None else QualityRules()).min_answer_ms
    agree = (
        answers.exclude(verdict=False)
        .filter(item__consensus__label__isnull=False, item__consensus__n_answers__gte=2)
        .aggregate(n=Count("id"), same=Count("id", filter=Q(label_id=F("item__consensus__label_id"))))
    )
    reputation = Reputation(
        answers=counts["total"],
        skips=skips.count(),
        controls=counts["controls"],
        controls_correct=counts["correct"],
        accuracy=bridge.smoothed_accuracy(counts["correct"], counts["controls"]),
        interval=wilson_interval(counts["correct"], counts["controls"]),
        median_ms=_median(times),
        fast_share=(sum(1 for ms in times if ms < min_ms) / len(times)) if times else None,
        min_answer_ms=min_ms,
        agreement=(agree["same"] / agree["n"]) if agree["n"] else None,
        agreement_n=agree["n"],
    )
    if project is not None:
        skill = WorkerSkill.objects.filter(worker=worker, project=project).first()
        if skill is not None:
            reputation.skill = skill.accuracy
            reputation.confusion = skill.confusion
            reputation.labels = [label.name for label in project.label_classes.all()]
    return reputation


def _median(values):
    if not values:
        return None
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else round((values[middle - 1] + values[middle]) / 2)


def project_workers(project, limit=50):
    """Workers who answered in ``project``, most active first, with their reputation and
    (as ``status_here``) their status there."""
    ids = (
        Answer.objects.filter(item__project=project)
        .values("worker_id")
        .annotate(n=Count("id"))
        .order_by("-n")
        .values_list("worker_id", flat=True)[:limit]
    )
    workers = Worker.objects.annotate(status_here=status_here(project)).in_bulk(list(ids))
    return [(workers[pk], worker_reputation(workers[pk], project)) for pk in ids if pk in workers]

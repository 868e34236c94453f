"""Measuring a crowd run from the database: for the harness, never for the people.

The simulated people only ever see HTTP responses; this module is the referee who
looks at the rows afterwards: what was stored, what the loop made of it, and how it
compares with the evaluation truth of the demo items.
"""
from collections import Counter, defaultdict

from django.db.models import Count

from labeling.crowd.connectors import user_agent_for
from labeling.crowd.stats import percentile
from labeling.models import (
    Answer,
    Consensus,
    EvaluationTruth,
    Item,
    ItemStatus,
    KnownLabel,
    PipelineRun,
    PseudoLabel,
    RunStatus,
    Split,
    TrainingRun,
    Worker,
    WorkerSkill,
)
from labeling.services.tokens import visitor_key
from labeling.services.worker_status import worker_status_in


def people_workers(people, site=None):
    """``{person name: Worker}`` for the people the server knows: registered workers by
    user name, visitors by the keyed hash of (address, User-Agent, site) it saw."""
    found = {}
    names = {person.username: person for person in people if person.door == "worker"}
    for worker in Worker.objects.filter(user__username__in=list(names)).select_related("user"):
        found[names[worker.user.username].name] = worker
    if site is not None:
        keys = {}
        for person in people:
            if person.door == "widget":
                for address in person.addresses:
                    keys[visitor_key(ip=address, user_agent=user_agent_for(person), site_id=site.pk)] = person
        for worker in Worker.objects.filter(visitor_key__in=list(keys)):
            found[keys[worker.visitor_key].name] = worker
    return found


def crowd_evaluate(project, people, site=None):
    """What the run left behind: answers, worker fates per kind, labels and their
    accuracy against the evaluation truth (with plain majority vote over the same
    answers as the baseline), pseudo-labels, pipeline and training runs."""
    workers = people_workers(people, site)
    kinds = {person.name: person.kind for person in people}
    skills = dict(WorkerSkill.objects.filter(project=project).values_list("worker_id", "accuracy"))
    by_kind = defaultdict(Counter)
    skill_sums = defaultdict(list)
    for name, worker in workers.items():
        kind = kinds[name]
        by_kind[kind]["known_to_server"] += 1
        by_kind[kind][worker_status_in(worker, project)] += 1
        if worker.pk in skills:
            skill_sums[kind].append(skills[worker.pk])
    stored = Counter(
        dict(
            Answer.objects.filter(item__project=project, worker__in=list(workers.values()))
            .values_list("worker_id")
            .annotate(n=Count("id"))
            .order_by()
        )
    )
    for name, worker in workers.items():
        by_kind[kinds[name]]["stored_answers"] += stored.get(worker.pk, 0)
    fates = {
        kind: {**dict(counter), "mean_skill": (sum(skill_sums[kind]) / len(skill_sums[kind])) if skill_sums[kind] else None}
        for kind, counter in by_kind.items()
    }
    return {
        "answers": _answers(project),
        "workers": fates,
        "labels": labels_accuracy(project),
        "pseudo": _pseudo(project),
        "pipeline": dict(
            Counter(f"{kind}:{status}" for kind, status in PipelineRun.objects.filter(project=project).values_list("kind", "status"))
        ),
        "training": training_curve(project),
    }


def _answers(project):
    rows = Answer.objects.filter(item__project=project)
    return {
        "total": rows.count(),
        "by_source": dict(rows.values_list("source").annotate(n=Count("id")).order_by()),
        "controls": rows.filter(correct__isnull=False).count(),
        "on_holdout": rows.filter(item__split=Split.HOLDOUT).count(),
        "from_banned": rows.count() - rows.without_banned_workers().count(),
    }


def labels_accuracy(project):
    """Human labels settled by consensus (not gold): how many, how right, and how right
    a plain majority vote over all the same items' label answers would be."""
    truth = dict(EvaluationTruth.objects.filter(item__project=project).values_list("item_id", "label_id"))
    gold = set(KnownLabel.objects.filter(item__project=project).values_list("item_id", flat=True))
    settled = dict(
        Consensus.objects.filter(item__project=project, item__status=ItemStatus.LABELED, label__isnull=False)
        .exclude(item_id__in=gold)
        .values_list("item_id", "label_id")
    )
    votes = defaultdict(Counter)
    for item_id, label_id in Answer.objects.filter(item_id__in=list(settled)).exclude(verdict=False).values_list(
        "item_id", "label_id"
    ):
        votes[item_id][label_id] += 1
    scored = [i for i in settled if i in truth]
    right = sum(settled[i] == truth[i] for i in scored)
    majority_right = sum(bool(votes[i]) and _majority(votes[i]) == truth[i] for i in scored)
    return {
        "gold": len(gold),
        "consensus": len(settled),
        "consensus_accuracy": right / len(scored) if scored else None,
        "majority_accuracy": majority_right / len(scored) if scored else None,
        "review": Item.objects.filter(project=project, status=ItemStatus.REVIEW).count(),
    }


def _majority(counter):
    """The most voted label; a tie goes to the label voted first (no knowledge)."""
    best = max(counter.values())
    return next(label for label, n in counter.items() if n == best)


def _pseudo(project):
    truth = dict(EvaluationTruth.objects.filter(item__project=project).values_list("item_id", "label_id"))
    accepted = list(PseudoLabel.objects.filter(item__project=project, accepted=True).values_list("item_id", "label_id"))
    right = sum(truth.get(item_id) == label_id for item_id, label_id in accepted)
    return {"accepted": len(accepted), "accuracy": right / len(accepted) if accepted else None}


def training_curve(project):
    """Training runs in order: human labels, test accuracy on the held-out split."""
    runs = TrainingRun.objects.filter(project=project).order_by("created_at")
    active = project.__class__.objects.filter(pk=project.pk).values_list("active_run_id", flat=True).first()
    return [
        {
            "status": run.status,
            "human_answers": run.metrics.get("human_answers"),
            "human_labels": run.metrics.get("human_labels"),
            "pseudo_n": run.metrics.get("pseudo_n"),
            "val_accuracy": run.metrics.get("accuracy"),
            "eval_accuracy": run.metrics.get("eval_accuracy"),
            "active": run.pk == active,
            "error": run.error[:200] if run.status == RunStatus.FAILED else "",
        }
        for run in runs
    ]


def _pct(value):
    return "-" if value is None else f"{100 * value:.1f} %"


def format_report(ledger, evaluation=None):
    """The run as text lines: the crowd's view, then (when given) the referee's."""
    summary = ledger.summary()
    lines = [
        f"Crowd: {summary['spent']} answers given ("
        + ", ".join(f"{door} {n}" for door, n in sorted(summary["by_door"].items()))
        + f"); {len(ledger.people)} people; {summary['errors']} unexpected replies",
        "",
        ("| kind | people | answers | challenges | passed | too fast | blocked | workers caught | stored | "
        "paused | banned | mean skill |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    fates = (evaluation or {}).get("workers", {})
    for kind in sorted(set(summary["people"]) | set(fates)):
        seen = summary["by_kind"].get(kind, {})
        fate = fates.get(kind, {})
        skill = fate.get("mean_skill")
        lines.append(
            f"| {kind} | {summary['people'].get(kind, 0)} | {seen.get('answers', 0)} | {seen.get('challenges', 0)} | "
            f"{seen.get('passed', 0)} | {seen.get('failed_too_fast', 0)} | {seen.get('blocked', 0)} | "
            f"{seen.get('caught', 0)} | {fate.get('stored_answers', 0)} | {fate.get('paused', 0)} | "
            f"{fate.get('banned', 0)} | {'-' if skill is None else f'{skill:.2f}'} |"
        )
    if evaluation:
        answers, labels, pseudo = evaluation["answers"], evaluation["labels"], evaluation["pseudo"]
        lines += [
            "",
            (f"Stored answers: {answers['total']} ({', '.join(f'{k} {v}' for k, v in sorted(answers['by_source'].items()))}; "
            f"{answers['controls']} on control items, {answers['on_holdout']} on held-out items)"),
            (f"Labels: {labels['gold']} gold, {labels['consensus']} settled by consensus, accuracy "
            f"{_pct(labels['consensus_accuracy'])} (plain majority vote over the same answers: "
            f"{_pct(labels['majority_accuracy'])}); {labels['review']} in review"),
            f"Accepted pseudo-labels: {pseudo['accepted']} (accuracy {_pct(pseudo['accuracy'])})",
            "Pipeline runs: " + (", ".join(f"{k} {v}" for k, v in sorted(evaluation["pipeline"].items())) or "none"),
            "Training runs (human labels -> held-out accuracy): "
            + (", ".join(
                f"{run['human_labels']} -> {_pct(run['eval_accuracy'])}{' (active)' if run['active'] else ''}"
                if run["status"] == "succeeded" else run["status"]
                for run in evaluation["training"]
            ) or "none"),
        ]
    if ledger.timings:
        lines += ["", "| request | n | p50 ms | p99 ms |", "|---|---:|---:|---:|"]
        for name, values in sorted(ledger.timings.items()):
            lines.append(
                f"| {name} | {len(values)} | {1000 * percentile(values, 50):.1f} | {1000 * percentile(values, 99):.1f} |"
            )
    return lines

"""Label efficiency: held-out accuracy of the active model against human answers spent.

Run from the repository root (about 10 minutes on 2 busy cores)::

    python bench/label_efficiency.py [--budgets 100,300,1000] [--spammers 0.1,0.3] [--out FILE]

The digits demo project (pool: ``load_digits`` rows 0-1399, 30 of them gold; test:
rows 1400-1796) is built in a fresh on-disk SQLite database under a temporary
``CROWDLOOP_DATA_DIR``. A simulated crowd (``labeling.crowd``: honest people with
accuracies uniform in 0.6-0.95, plus the given share of uniform spammers; 10 registered
workers and 5 widget visitors at a time on the demo site) labels it through the HTTP API:
in-process, through Django's test client, on a simulated clock, with Celery eager and
Celery beat's schedule replayed on that clock. The people see only HTTP responses.

The loop runs by itself: consensus per answer, full truth inference every
``CROWDLOOP_AGGREGATE_EVERY`` (50 here) answers, a semi-supervised round every
``CROWDLOOP_PIPELINE_EVERY_LABELS`` (20 here) new human labels, training every
``CROWDLOOP_TRAIN_EVERY_LABELS`` (100, the default). The crowd arrives after the loop's
first scheduled round on the gold items (what beat's ``semisupervised_all_task`` does
on a demo left running for half an hour). At each checkpoint the queue is drained the
way the workers would: a full truth inference, a semi-supervised round and a training
run; the crowd then goes on.

Baselines, measured in the same run on the same split: logistic regression and
scikit-learn's LabelSpreading (kNN, k=7) trained on the 30 gold items plus as many clean
random pool labels as the crowd gave answers (mean over 5 draws): each answer turned
into a perfect label.
"""
import argparse
import datetime
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA_DIR = Path(tempfile.mkdtemp(prefix="crowdloop-efficiency-"))
os.environ.update(
    DJANGO_SETTINGS_MODULE="labeling.settings",
    CROWDLOOP_DATA_DIR=str(DATA_DIR),
    DEBUG="0",
    CROWDLOOP_AGGREGATE_EVERY="50",
    CROWDLOOP_PIPELINE_EVERY_LABELS="20",
    CROWDLOOP_TRAIN_EVERY_LABELS="100",
    LOG_LEVEL="WARNING",
)

import django

django.setup()

import numpy as np
from django.conf import settings

# Accounts are made and logged into per run: a fast hasher keeps that out of the timings.
settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
from django.core.management import call_command
from django.db import connection

MACHINE = "2-core x86_64, python-svc"
RESULTS = ROOT / "bench" / "results" / "label_efficiency.md"
DRAWS = 5


def prepare():
    """Migrate, build the demo project and site, run the first scheduled round; return
    the path of a snapshot of the database."""
    from labeling.celery import app
    from labeling.services.demo import (
        demo_crowd_open,
        demo_project_create,
        demo_site_create,
    )
    from labeling.tasks import semisupervised_all_task

    call_command("migrate", interactive=False, verbosity=0)
    project, _ = demo_project_create()
    demo_site_create(project)
    demo_crowd_open(project)
    app.conf.task_always_eager = True
    semisupervised_all_task.apply()
    connection.close()
    snapshot = DATA_DIR / "prepared.sqlite3"
    _sqlite_copy(Path(settings.DATABASES["default"]["NAME"]), snapshot)
    return snapshot


def _sqlite_copy(source, target):
    import sqlite3

    with sqlite3.connect(source) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copyfile(source, target)


def restore(snapshot):
    connection.close()
    database = Path(settings.DATABASES["default"]["NAME"])
    for suffix in ("-wal", "-shm"):
        Path(str(database) + suffix).unlink(missing_ok=True)
    shutil.copyfile(snapshot, database)
    from django.core.cache import cache

    cache.clear()


def drain(project):
    """What the workers would do with the queue at this point: full truth inference, a
    semi-supervised round, a training run (eager: its predictions feed one more round)."""
    from labeling.services.consensus import project_aggregate
    from labeling.services.semisupervised import project_semisupervised
    from labeling.services.training import TrainingRefused, training_run_create

    project_aggregate(project)
    project_semisupervised(project)
    try:
        return training_run_create(project)
    except TrainingRefused:
        return None


def checkpoint_row(project, ledger, run, seconds):
    from labeling.crowd.evaluation import labels_accuracy
    from labeling.models import Answer, EvaluationTruth, Project, PseudoLabel

    project = Project.objects.select_related("active_run").get(pk=project.pk)
    labels = labels_accuracy(project)
    truth = dict(EvaluationTruth.objects.filter(item__project=project).values_list("item_id", "label_id"))
    accepted = list(PseudoLabel.objects.filter(item__project=project, accepted=True).values_list("item_id", "label_id"))
    if run is not None:
        run.refresh_from_db()
    active = project.active_run
    return {
        "spent": ledger.spent,
        "stored": Answer.objects.filter(item__project=project).count(),
        "consensus": labels["consensus"],
        "consensus_accuracy": labels["consensus_accuracy"],
        "per_label": ledger.spent / labels["consensus"] if labels["consensus"] else None,
        "pseudo": len(accepted),
        "pseudo_accuracy": (sum(truth.get(i) == l for i, l in accepted) / len(accepted)) if accepted else None,
        "latest": run.metrics.get("eval_accuracy") if run is not None and run.status == "succeeded" else None,
        "active": active.metrics.get("eval_accuracy") if active is not None else None,
        "train_seconds": seconds,
    }


def crowd_config(snapshot, spammers, budgets, seed):
    """One crowd on a fresh copy of the prepared project, with checkpoints at ``budgets``."""
    from labeling.crowd.simulation import (
        Beat,
        CrowdSpec,
        SiteAccess,
        VirtualClock,
        client_connector,
        crowd_accounts_provision,
        crowd_people,
        crowd_run,
    )
    from labeling.crowd.transport import ClientTransport
    from labeling.models import Project
    from labeling.services.demo import DEMO_SITEKEY, DEMO_SLUG, demo_site_secret

    restore(snapshot)
    project = Project.objects.get(slug=DEMO_SLUG)
    spec = CrowdSpec(
        budget=max(budgets), workers=10, visitor_seats=5, seed=seed,
        shares={"honest": 1.0 - spammers, "spammer": spammers},
    )
    workers = crowd_people(spec)
    password = crowd_accounts_provision(project, workers)
    site = SiteAccess(DEMO_SITEKEY, demo_site_secret(), ClientTransport(remote_addr="192.0.2.10", user_agent="site"))
    pending = sorted(budgets)
    rows, timing = [], {"crowd": 0.0, "drain": 0.0}
    started = time.perf_counter()

    def on_step(ledger):
        if pending and ledger.spent >= pending[0]:
            pending.pop(0)
            t0 = time.perf_counter()
            run = drain(project)
            seconds = time.perf_counter() - t0
            timing["drain"] += seconds
            rows.append(checkpoint_row(project, ledger, run, seconds))
            print(f"  {spammers:.0%} spammers, {ledger.spent} answers: {rows[-1]}", flush=True)
        return bool(pending)

    ledger = crowd_run(
        spec, slug=project.slug, site=site, connect=client_connector(), clock=VirtualClock(), workers=workers,
        password=password, beat=Beat(settings.CELERY_BEAT_SCHEDULE), on_step=on_step,
    )
    timing["crowd"] = time.perf_counter() - started - timing["drain"]
    return rows, ledger, timing


def baselines(budgets, gold_rows, seed):
    """LR and LabelSpreading on the gold rows plus N clean random pool labels."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.semi_supervised import LabelSpreading

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_pool, y_pool, X_test, y_test = X[:1400], y[:1400], X[1400:], y[1400:]
    rng = np.random.default_rng(seed)
    others = np.setdiff1d(np.arange(1400), gold_rows)
    result = {}
    for n in budgets:
        lr, ls = [], []
        for _ in range(DRAWS):
            rows = np.concatenate([gold_rows, rng.choice(others, size=min(n, len(others)), replace=False)])
            lr.append(LogisticRegression(max_iter=3000).fit(X_pool[rows], y_pool[rows]).score(X_test, y_test))
            partial = np.full(1400, -1)
            partial[rows] = y_pool[rows]
            ls.append(LabelSpreading(kernel="knn", n_neighbors=7, max_iter=200).fit(X_pool, partial).score(X_test, y_test))
        result[n] = (float(np.mean(lr)), float(np.std(lr)), float(np.mean(ls)), float(np.std(ls)))
    return result


def gold_rows():
    from labeling.models import KnownLabel

    names = KnownLabel.objects.values_list("item__source_name", flat=True)
    return np.array(sorted(int(name.split("[")[1].rstrip("]")) for name in names))


def pct(value):
    return "-" if value is None else f"{100 * value:.1f} %"


def report(results, base, args, seconds, timings):
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    lines = [
        "## Label efficiency (digits)",
        "",
        f"- Date: {now}",
        (f"- Machine: {MACHINE} (Python {platform.python_version()}; load average {load:.1f} at the end: "
        "the cores are shared)"),
        f"- Command: `python bench/label_efficiency.py --budgets {args.budgets} --spammers {args.spammers}` "
        f"({seconds:.0f} s in all: " + "; ".join(
            f"{s:.0%} spammers: crowd and the loop's own rounds {t['crowd']:.0f} s, checkpoints {t['drain']:.0f} s"
            for s, t in timings.items()
        ) + ")",
        ("- In-process: Django's test client against an on-disk SQLite database, Celery eager, on a simulated "
        "clock (the server sees the people's seconds; beat's schedule is replayed on it). The simulated "
        "people see only HTTP responses: challenge and task JSON, the PNGs they download, cookies."),
        ("- Crowd: 10 registered workers (worker API) and 5 widget visitors at a time (demo site: 2 control "
        "items per challenge, 1.5 s minimum solve time); honest accuracy uniform in 0.6-0.95, spammers answer "
        "uniformly at random. *Answers* counts every answer given, stored or not: each tile of a challenge "
        "(control tiles and failed challenges included) and each item a worker answers."),
        ("- Loop rhythm: `CROWDLOOP_AGGREGATE_EVERY=50`, `CROWDLOOP_PIPELINE_EVERY_LABELS=20`, "
        "`CROWDLOOP_TRAIN_EVERY_LABELS=100`; at each checkpoint the queue is drained (full truth inference, "
        "a semi-supervised round, a training run with the default config), then the crowd goes on."),
        ("- Model: the project's active model (`TrainingRun.metrics.eval_accuracy`, on rows 1400-1796); "
        "*latest* is the run made at the checkpoint, when it did not become the active one."),
        (f"- Baselines (same run): logistic regression and LabelSpreading (kNN, k=7) on the 30 gold rows plus N "
        f"clean random pool labels, N = the answer budget; mean ± std over {DRAWS} draws."),
        "",
        ("| spammers | answers | stored | consensus labels | consensus accuracy | answers per label | "
        "accepted pseudo-labels (accuracy) | active model | latest run | LR, 30 gold + N clean | "
        "LabelSpreading, 30 gold + N clean | ratio to LR | ratio to LS |"),
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    budgets = sorted(int(b) for b in args.budgets.split(","))
    for spammers, rows in results.items():
        for budget, row in zip(budgets, rows, strict=False):
            lr, lr_sd, ls, ls_sd = base[budget]
            ours = row["active"]
            per_label = "-" if row["per_label"] is None else f"{row['per_label']:.1f}"
            lines.append(
                f"| {spammers:.0%} | {row['spent']} | {row['stored']} | {row['consensus']} | "
                f"{pct(row['consensus_accuracy'])} | {per_label} | "
                f"{row['pseudo']} ({pct(row['pseudo_accuracy'])}) | **{pct(ours)}** | "
                f"{pct(row['latest']) if row['latest'] != ours else 'same'} | {pct(lr)} ± {100 * lr_sd:.1f} | "
                f"{pct(ls)} ± {100 * ls_sd:.1f} | {'-' if ours is None else f'{ours / lr:.2f}x'} | "
                f"{'-' if ours is None else f'{ours / ls:.2f}x'} |"
            )
    lines += ["", "### Targets", ""]
    for budget, target in ((100, 0.96), (300, 0.98)):
        for spammers, rows in results.items():
            row = next((r for b, r in zip(budgets, rows, strict=False) if b == budget), None)
            if row is None:
                continue
            ours = row["active"]
            verdict = "met" if ours is not None and ours >= target else "**missed**"
            lines.append(
                f"- ≥ {target:.0%} at {budget} answers, {spammers:.0%} spammers: {pct(ours)} ({row['spent']} answers) "
                f"— {verdict}"
            )
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="100,300,1000")
    parser.add_argument("--spammers", default="0.1,0.3")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    budgets = sorted(int(b) for b in args.budgets.split(","))
    start = time.perf_counter()
    try:
        print(f"preparing the demo project in {DATA_DIR}", flush=True)
        snapshot = prepare()
        base = baselines(budgets, gold_rows(), args.seed)
        results, timings = {}, {}
        for spammers in (float(s) for s in args.spammers.split(",")):
            rows, _, timing = crowd_config(snapshot, spammers, budgets, args.seed)
            results[spammers], timings[spammers] = rows, timing
        lines = report(results, base, args, time.perf_counter() - start, timings)
    finally:
        connection.close()
        shutil.rmtree(DATA_DIR, ignore_errors=True)
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()

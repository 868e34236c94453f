"""Label efficiency, hands-off: held-out accuracy of the active model against answers spent.

Run from the repository root (about 15 minutes on 2 busy cores)::

    python bench/label_efficiency.py [--dataset digits|glyphs] [--budgets 100,300] [--spammers 0.1,0.3]

A new project is built the way a user builds one, in a fresh on-disk SQLite database
under a temporary ``CROWDLOOP_DATA_DIR``, with every setting at its default:

* ``digits``: the demo project (``load_digits`` rows 0-1399 pool with 3 gold per class,
  rows 1400-1796 held out), as ``manage.py demo`` builds it.
* ``glyphs``: a second, unlike set (:mod:`bench.glyphs`: 10 letters in 22 fonts, 28x28,
  with mirror pairs b/d/p/q): 4,000 unlabeled PNGs with random names imported as a
  folder, then 3 gold per class from class folders (after the pool, as users do), then a
  1,000-image held-out split from class folders with ``import_items --holdout``.

Nothing is started by hand afterwards: no clustering, no training, no queue drained, no
rhythm setting changed. Celery runs eager (each task runs when it is queued, as an idle
worker would pick it up), beat's schedule is replayed on the simulated clock. A
simulated crowd (``labeling.crowd``: honest people with accuracies uniform in
0.6-0.95, plus the given share of uniform spammers; 10 registered workers and 5 widget
visitors at a time) labels through the HTTP API, in-process through Django's test
client; the people see only HTTP responses. At each budget the bench reads the state.

Baselines, measured in the same run on the same split: logistic regression and
scikit-learn's LabelSpreading (kNN, k=7) on the gold items plus as many clean random
pool labels as the crowd gave answers (mean over 5 draws): each answer turned into a
perfect label.
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
sys.path.insert(0, str(ROOT / "bench"))
DATA_DIR = Path(tempfile.mkdtemp(prefix="crowdloop-efficiency-"))
os.environ.update(
    DJANGO_SETTINGS_MODULE="labeling.settings",
    CROWDLOOP_DATA_DIR=str(DATA_DIR),
    DEBUG="0",
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
RESULTS = ROOT / "bench" / "results"
DRAWS = 5


def prepare(dataset):
    """Build the project as a user would and let the loop react; returns the snapshot
    path, the arrays for the baselines and the import-to-first-model timing."""
    from labeling.celery import app
    from labeling.models import TrainingRun

    call_command("migrate", interactive=False, verbosity=0)
    app.conf.task_always_eager = True
    started = time.perf_counter()
    project, arrays, imported_at = (_prepare_digits if dataset == "digits" else _prepare_glyphs)()
    runs = TrainingRun.objects.filter(project=project, status="succeeded").order_by("finished_at")
    first, measured = runs.first(), runs.last()
    timing = {
        "import_s": imported_at - started,
        "first_model_s": (first.finished_at - first_import_end(project)).total_seconds() if first else None,
        "first_model": measured.metrics.get("eval_accuracy") if measured else None,
        "first_kind": measured.metrics.get("kind") if measured else None,
    }
    connection.close()
    snapshot = DATA_DIR / "prepared.sqlite3"
    _sqlite_copy(Path(settings.DATABASES["default"]["NAME"]), snapshot)
    return snapshot, project.slug, arrays, timing


def first_import_end(project):
    """When the import that let the first model train finished: the gold import (the
    demo imports everything at once)."""
    from labeling.models import KnownLabel

    return KnownLabel.objects.filter(item__project=project).order_by("-created_at").values_list(
        "created_at", flat=True
    ).first()


def _prepare_digits():
    from sklearn.datasets import load_digits

    from labeling.services.demo import demo_crowd_open, demo_project_create, demo_site_create

    project, _ = demo_project_create()
    imported_at = time.perf_counter()
    demo_site_create(project)
    demo_crowd_open(project)
    X, y = load_digits(return_X_y=True)
    gold = gold_rows(lambda name: int(name.split("[")[1].rstrip("]")))
    return project, (X[:1400] / 16.0, y[:1400], X[1400:] / 16.0, y[1400:], gold), imported_at


def _prepare_glyphs():
    import glyphs

    from labeling.crowd.reader import images_register
    from labeling.models import EvaluationTruth, Item
    from labeling.services.demo import demo_crowd_open, demo_site_create
    from labeling.services.projects import project_create

    folders = DATA_DIR / "glyphs"
    truth = glyphs.write_folders(folders, seed=0)
    project = project_create(name="Letters", slug="letters", labels=glyphs.CLASSES, data_kind="image")
    call_command("import_items", project.slug, str(folders / "pool"), "--no-progress", verbosity=0)
    call_command("import_items", project.slug, str(folders / "gold"), "--no-progress", verbosity=0)
    call_command("import_items", project.slug, str(folders / "holdout"), "--holdout", "--no-progress", verbosity=0)
    imported_at = time.perf_counter()
    demo_site_create(project)
    demo_crowd_open(project)
    # The people's eyes and the measurement, never the loop: what each pool file shows.
    labels = dict(project.label_classes.values_list("name", "id"))
    pool = list(Item.objects.filter(project=project, split="pool").values_list("pk", "source_name"))
    EvaluationTruth.objects.bulk_create(
        [EvaluationTruth(item_id=pk, label_id=labels[truth[name]]) for pk, name in pool if name in truth], ignore_conflicts=True
    )
    names = sorted(truth)
    images_register([(folders / "pool" / name).read_bytes() for name in names], [truth[name] for name in names])
    X_pool = _pixels([folders / "pool" / name for name in names])
    y_pool = np.array([glyphs.CLASSES.index(truth[name]) for name in names])
    holdout = sorted((folders / "holdout").glob("*/*.png"))
    X_test = _pixels(holdout)
    y_test = np.array([glyphs.CLASSES.index(path.parent.name) for path in holdout])
    gold_paths = sorted((folders / "gold").glob("*/*.png"))
    X_gold = _pixels(gold_paths)
    y_gold = np.array([glyphs.CLASSES.index(path.parent.name) for path in gold_paths])
    X_pool, y_pool = np.concatenate([X_pool, X_gold]), np.concatenate([y_pool, y_gold])
    gold = np.arange(len(names), len(names) + len(gold_paths))
    return project, (X_pool, y_pool, X_test, y_test, gold), imported_at


def _pixels(paths):
    from PIL import Image

    return np.stack([np.asarray(Image.open(path).convert("L"), dtype=np.float32).ravel() / 255.0 for path in paths])


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


def checkpoint_row(project, ledger):
    from labeling.crowd.evaluation import labels_accuracy
    from labeling.models import Answer, EvaluationTruth, Project, PseudoLabel, TrainingRun

    project = Project.objects.select_related("active_run").get(pk=project.pk)
    labels = labels_accuracy(project)
    truth = dict(EvaluationTruth.objects.filter(item__project=project).values_list("item_id", "label_id"))
    accepted = list(PseudoLabel.objects.filter(item__project=project, accepted=True).values_list("item_id", "label_id"))
    latest = TrainingRun.objects.filter(project=project, status="succeeded").order_by("-finished_at").first()
    active = project.active_run
    from django.db.models import Count

    stored = Answer.objects.filter(item__project=project)
    breakdown = {
        f"{source}/{'control' if control else {None: 'label', True: 'yes', False: 'no'}[verdict]}": n
        for source, control, verdict, n in stored.values_list("source", "is_control", "verdict")
        .annotate(n=Count("id")).order_by()
    }
    return {
        "spent": ledger.spent,
        "stored": stored.count(),
        "breakdown": breakdown,
        "consensus": labels["consensus"],
        "consensus_accuracy": labels["consensus_accuracy"],
        "per_label": ledger.spent / labels["consensus"] if labels["consensus"] else None,
        "pseudo": len(accepted),
        "pseudo_accuracy": (sum(truth.get(i) == l for i, l in accepted) / len(accepted)) if accepted else None,
        "runs": TrainingRun.objects.filter(project=project, status="succeeded").count(),
        "latest": latest.metrics.get("eval_accuracy") if latest else None,
        "active": active.metrics.get("eval_accuracy") if active is not None else None,
        "kind": active.metrics.get("kind") if active is not None else None,
        "cnn": next((run.metrics["cnn"] for run in TrainingRun.objects.filter(project=project, status="succeeded")
                     .order_by("-finished_at") if "cnn" in run.metrics), None),
    }


def crowd_config(snapshot, slug, spammers, budgets, seed):
    """One crowd on a fresh copy of the prepared project, read at ``budgets``."""
    from labeling.crowd.accounts import crowd_accounts_provision, crowd_people
    from labeling.crowd.clocks import Beat, VirtualClock
    from labeling.crowd.connectors import client_connector
    from labeling.crowd.simulation import CrowdSpec, SiteAccess, crowd_run
    from labeling.crowd.transport import ClientTransport
    from labeling.models import Project
    from labeling.services.demo import DEMO_SITEKEY, demo_site_secret

    restore(snapshot)
    project = Project.objects.get(slug=slug)
    spec = CrowdSpec(
        budget=max(budgets), workers=10, visitor_seats=5, seed=seed,
        shares={"honest": 1.0 - spammers, "spammer": spammers},
    )
    workers = crowd_people(spec)
    password = crowd_accounts_provision(project, workers)
    site = SiteAccess(DEMO_SITEKEY, demo_site_secret(), ClientTransport(remote_addr="192.0.2.10", user_agent="site"))
    pending = sorted(budgets)
    rows = []
    started = time.perf_counter()

    def on_step(ledger):
        if pending and ledger.spent >= pending[0]:
            pending.pop(0)
            rows.append(checkpoint_row(project, ledger))
            print(f"  {spammers:.0%} spammers, {ledger.spent} answers: {rows[-1]}", flush=True)
        return bool(pending)

    ledger = crowd_run(
        spec, slug=project.slug, site=site, connect=client_connector(), clock=VirtualClock(), workers=workers,
        password=password, beat=Beat(settings.CELERY_BEAT_SCHEDULE), on_step=on_step,
    )
    print(f"  crowd: {ledger.summary()}", flush=True)
    return rows, time.perf_counter() - started


def baselines(budgets, arrays, seed):
    """LR and LabelSpreading on the gold rows plus N clean random pool labels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.semi_supervised import LabelSpreading

    X_pool, y_pool, X_test, y_test, gold = arrays
    rng = np.random.default_rng(seed)
    others = np.setdiff1d(np.arange(len(y_pool)), gold)
    result = {}
    for n in budgets:
        lr, ls = [], []
        for _ in range(DRAWS):
            rows = np.concatenate([gold, rng.choice(others, size=min(n, len(others)), replace=False)])
            lr.append(LogisticRegression(max_iter=3000).fit(X_pool[rows], y_pool[rows]).score(X_test, y_test))
            partial = np.full(len(y_pool), -1)
            partial[rows] = y_pool[rows]
            ls.append(LabelSpreading(kernel="knn", n_neighbors=7, max_iter=200).fit(X_pool, partial).score(X_test, y_test))
        result[n] = (float(np.mean(lr)), float(np.std(lr)), float(np.mean(ls)), float(np.std(ls)))
    return result


def gold_rows(row_of):
    from labeling.models import KnownLabel

    names = KnownLabel.objects.values_list("item__source_name", flat=True)
    return np.array(sorted(row_of(name) for name in names))


def pct(value):
    return "-" if value is None else f"{100 * value:.1f} %"


TARGETS = {"digits": ((100, 0.96), (300, 0.98)), "glyphs": ((500, 0.95),)}


def report(dataset, results, base, args, seconds, timing, crowd_seconds):
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    lines = [
        f"## Label efficiency, hands-off ({dataset})",
        "",
        f"- Date: {now}",
        (f"- Machine: {MACHINE} (Python {platform.python_version()}; load average {load:.1f} at the end: "
         "the cores are shared)"),
        f"- Command: `python bench/label_efficiency.py --dataset {dataset} --budgets {args.budgets} "
        f"--spammers {args.spammers}` ({seconds:.0f} s in all; crowds: "
        + ", ".join(f"{s:.0%} spammers {t:.0f} s" for s, t in crowd_seconds.items()) + ")",
        ("- Hands-off: the project is imported with default settings and nothing is started by hand; Celery "
         "eager, beat replayed on the simulated clock. *Answers* counts every answer given, stored or not "
         "(control tiles and failed challenges included)."),
        (f"- Import to first model: {timing['first_model_s']:.1f} s from the gold labels' import to the first "
         f"trained model (all imports {timing['import_s']:.0f} s, their rounds included); the model after the "
         f"imports: {timing['first_kind']}, held-out {pct(timing['first_model'])}"
         if timing["first_model_s"] is not None else "- Import to first model: no model after the import"),
        (f"- Baselines (same run): logistic regression and LabelSpreading (kNN, k=7) on the gold items plus N "
         f"clean random pool labels, N = the answer budget; mean ± std over {DRAWS} draws."),
        "",
        ("| spammers | answers | stored | consensus labels | consensus accuracy | answers per label | "
         "accepted pseudo-labels (accuracy) | runs | active model (kind) | latest run | LR, gold + N clean | "
         "LabelSpreading, gold + N clean |"),
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    budgets = sorted(int(b) for b in args.budgets.split(","))
    for spammers, rows in results.items():
        for budget, row in zip(budgets, rows, strict=False):
            lr, lr_sd, ls, ls_sd = base[budget]
            per_label = "-" if row["per_label"] is None else f"{row['per_label']:.1f}"
            lines.append(
                f"| {spammers:.0%} | {row['spent']} | {row['stored']} | {row['consensus']} | "
                f"{pct(row['consensus_accuracy'])} | {per_label} | {row['pseudo']} ({pct(row['pseudo_accuracy'])}) | "
                f"{row['runs']} | **{pct(row['active'])}** ({row['kind']}) | "
                f"{pct(row['latest']) if row['latest'] != row['active'] else 'same'} | "
                f"{pct(lr)} ± {100 * lr_sd:.1f} | {pct(ls)} ± {100 * ls_sd:.1f} |"
            )
    lines += ["", "### Targets", ""]
    for budget, target in TARGETS[dataset]:
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
    parser.add_argument("--dataset", choices=("digits", "glyphs"), default="digits")
    parser.add_argument("--budgets", default=None, help="default: 100,300 (digits), 100,300,500 (glyphs)")
    parser.add_argument("--spammers", default="0.1,0.3")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    args.budgets = args.budgets or ("100,300" if args.dataset == "digits" else "100,300,500")
    budgets = sorted(int(b) for b in args.budgets.split(","))
    start = time.perf_counter()
    try:
        print(f"preparing the {args.dataset} project in {DATA_DIR}", flush=True)
        snapshot, slug, arrays, timing = prepare(args.dataset)
        print(f"  prepared: {timing}", flush=True)
        base = baselines(budgets, arrays, args.seed)
        results, crowd_seconds = {}, {}
        for spammers in (float(s) for s in args.spammers.split(",")):
            results[spammers], crowd_seconds[spammers] = crowd_config(snapshot, slug, spammers, budgets, args.seed)
        lines = report(args.dataset, results, base, args, time.perf_counter() - start, timing, crowd_seconds)
    finally:
        connection.close()
        shutil.rmtree(DATA_DIR, ignore_errors=True)
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out or RESULTS / f"label_efficiency_{args.dataset}.md").write_text(text)


if __name__ == "__main__":
    main()

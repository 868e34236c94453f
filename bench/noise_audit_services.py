"""End-to-end check of the label audit through the services, on a small digits project.

400 digits are imported from a folder as a user would; two simulated workers answer each
item (agreeing: consensus labels). For 5 % of the items (uniform flips) both answer the
same wrong label, as colluding or confused workers would. Then one audit round runs
(``project_audit``, as the cpu task does), and new simulated workers, right 90 % of the
time, answer the re-opened items through ``answers_record`` until none is pending (or
the answer cap sends it to review). Printed: flags, outcomes, flips repaired, correct
labels made worse, answers spent.

    python bench/noise_audit_services.py [--n 400] [--seed 0]
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA_DIR = Path(tempfile.mkdtemp(prefix="crowdloop-audit-"))
os.environ.update(DJANGO_SETTINGS_MODULE="labeling.settings", CROWDLOOP_DATA_DIR=str(DATA_DIR), DEBUG="0",
                  LOG_LEVEL="WARNING")

import django

django.setup()

import numpy as np
from django.core.management import call_command


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    from sklearn.datasets import load_digits

    from labeling.bridge import digit_png
    from labeling.models import (
        AuditDecision,
        AuditOutcome,
        Consensus,
        Item,
        ItemStatus,
        Worker,
    )
    from labeling.services.answers import AnswerInput, answers_record
    from labeling.services.audit import project_audit
    from labeling.services.imports import path_import
    from labeling.services.projects import project_create

    rng = np.random.default_rng(args.seed)
    digits = load_digits()
    folder = DATA_DIR / "upload" / "pool"
    folder.mkdir(parents=True)
    for row in range(args.n):
        (folder / f"r{row}.png").write_bytes(digit_png(digits.images[row]))
    project = project_create(name="Audit check", labels=[str(c) for c in range(10)], data_kind="image")
    path_import(project, folder)
    labels = {int(label.name): label for label in project.label_classes.all()}
    items = {int(item.source_name.split("r")[-1].split(".")[0]): item for item in Item.objects.filter(project=project)}
    truth = {items[row].pk: int(digits.target[row]) for row in items}
    flipped = set(rng.choice(sorted(truth), int(round(0.05 * len(truth))), replace=False).tolist())
    given = {i: ((t + int(rng.integers(1, 10))) % 10 if i in flipped else t) for i, t in truth.items()}
    started = time.perf_counter()

    def answer(item_id, label):
        worker = Worker.objects.create()
        answers_record(worker=worker, inputs=[AnswerInput(item=Item.objects.get(pk=item_id), label_id=labels[label].pk,
                                                          task_ref="b")], source="worker")

    for item_id, label in given.items():
        answer(item_id, label)
        answer(item_id, label)
    labeled = Item.objects.filter(project=project, status=ItemStatus.LABELED).count()
    run = project_audit(project)
    flagged = set(AuditDecision.objects.filter(project=project).values_list("item_id", flat=True))
    spent = 0
    for _ in range(project.max_answers_per_item):
        pending = AuditDecision.objects.filter(project=project, outcome=AuditOutcome.PENDING).values_list("item_id", flat=True)
        servable = Item.objects.filter(pk__in=list(pending), status=ItemStatus.UNLABELED,
                                       answer_count__lt=project.max_answers_per_item)
        ids = list(servable.values_list("pk", flat=True))
        if not ids:
            break
        for item_id in ids:
            right = rng.random() < 0.9
            answer(item_id, truth[item_id] if right else (truth[item_id] + int(rng.integers(1, 10))) % 10)
            spent += 1
    final = dict(Consensus.objects.filter(item__project=project).values_list("item_id", "label__name"))
    repaired = sum(final.get(i) == str(truth[i]) for i in flipped)
    correct = [i for i in truth if i not in flipped]
    worse = sum(final.get(i) != str(truth[i]) for i in correct if given[i] == truth[i])
    outcomes = {o: AuditDecision.objects.filter(project=project, outcome=o).count() for o in AuditOutcome.values}
    hits = len(flagged & flipped)
    print(f"items {len(truth)}, consensus labels {labeled}, flips {len(flipped)}; audit: {run.status} {run.result}")
    print(f"flagged {len(flagged)}: recall {hits / len(flipped):.1%}, precision {hits / max(len(flagged), 1):.1%}")
    print(f"outcomes {outcomes}; flips repaired {repaired}/{len(flipped)} ({repaired / len(flipped):.1%}); "
          f"correct labels made worse {worse}/{len(correct)} ({worse / len(correct):.2%}); "
          f"re-check answers {spent} ({spent / len(flipped):.1f} per flip); {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

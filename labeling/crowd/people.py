"""Simulated people: what they answer, and how long they take.

Every judgment goes through what the person *perceives*: the digit they read (see
:mod:`labeling.crowd.reader`), right with their own accuracy, otherwise a look-alike
(a 4 taken for a 9) or another digit. They then answer honestly about what they
perceived: a choice names it, a yes/no confirms the proposed label when it matches, a
grid selects the tiles that match the target. Kinds:

``honest``       accuracy drawn from the crowd's range (0.6-0.95 by default), human pace.
``spammer``      uniformly random answers (a random label, a coin for yes/no, random
                 grid tiles) at human pace.
``same_answer``  a bot giving one answer to everything: one label, always "yes", no tile.
``too_fast``     random answers, far faster than a person reads.
``colluder``     reads well (0.95) but the group agrees to call every digit of one class
                 another one (every 4 a 9), answering as one.
"""
import math
import random
from dataclasses import dataclass, field

KINDS = ("honest", "spammer", "same_answer", "too_fast", "colluder")
LOOK_ALIKES = {
    "0": "689", "1": "74", "2": "73", "3": "859", "4": "917",
    "5": "639", "6": "508", "7": "192", "8": "390", "9": "4873",
}
LOOK_ALIKE_SHARE = 0.6
COLLUDER_ACCURACY = 0.95
COLLUSION = ("4", "9")  # the group calls every 4 a 9


@dataclass
class Person:
    name: str
    kind: str
    door: str  # "widget" or "worker"
    accuracy: float | None
    seconds_per_item: float  # median time to look at one item and answer
    rng: random.Random = field(repr=False)
    same_label: str | None = None
    username: str | None = None  # registered workers
    addresses: list = field(default_factory=list)  # the client addresses the server may have seen

    # --- Perception --------------------------------------------------------------------------

    def perceive(self, truth, labels):
        """The label this person takes an item whose true label is ``truth`` for
        (``None``: they could not read it, and guess)."""
        if truth is None or truth not in labels:
            return self.rng.choice(labels)
        if self.kind == "colluder" and truth == COLLUSION[0] and COLLUSION[1] in labels:
            return COLLUSION[1]
        if self.rng.random() < self.accuracy:
            return truth
        wrong = [label for label in labels if label != truth]
        similar = [label for label in LOOK_ALIKES.get(truth, "") if label in wrong]
        if similar and self.rng.random() < LOOK_ALIKE_SHARE:
            return self.rng.choice(similar)
        return self.rng.choice(wrong)

    @property
    def reads(self):
        return self.kind in ("honest", "colluder")

    # --- Answers -----------------------------------------------------------------------------

    def choose(self, truth, labels):
        if self.kind == "same_answer":
            return self.same_label if self.same_label in labels else labels[0]
        if not self.reads:
            return self.rng.choice(labels)
        return self.perceive(truth, labels)

    def confirm(self, truth, proposed, labels):
        if self.kind == "same_answer":
            return True
        if not self.reads:
            return self.rng.random() < 0.5
        return self.perceive(truth, labels) == proposed

    def select(self, truth, target, labels):
        if self.kind == "same_answer":
            return False
        if not self.reads:
            return self.rng.random() < 0.3
        return self.perceive(truth, labels) == target

    # --- Pace --------------------------------------------------------------------------------

    def seconds_for(self, n_items):
        """How long looking at ``n_items`` and answering takes this person (log-normal
        around their own pace)."""
        return sum(self.seconds_per_item * math.exp(self.rng.gauss(0.0, 0.35)) for _ in range(max(n_items, 1)))


def person_make(name, kind, door, rng, *, accuracy_range=(0.6, 0.95)):
    """A person of ``kind`` with their own accuracy, pace and habits drawn from ``rng``."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
    accuracy = None
    if kind == "honest":
        accuracy = rng.uniform(*accuracy_range)
    elif kind == "colluder":
        accuracy = COLLUDER_ACCURACY
    pace = rng.uniform(0.05, 0.12) if kind == "too_fast" else rng.uniform(1.2, 3.0)
    return Person(
        name=name, kind=kind, door=door, accuracy=accuracy, seconds_per_item=pace,
        rng=random.Random(rng.random()), same_label=rng.choice("0123456789"),
    )


def kinds_split(n, shares, rng):
    """``n`` kinds in proportion to ``shares`` (largest remainder, so that a small crowd
    still gets every kind with a share), shuffled."""
    total = sum(shares.values())
    if n <= 0 or total <= 0:
        return []
    exact = {kind: n * share / total for kind, share in shares.items()}
    counts = {kind: math.floor(value) for kind, value in exact.items()}
    rest = sorted(exact, key=lambda kind: exact[kind] - counts[kind], reverse=True)
    for kind in rest[: n - sum(counts.values())]:
        counts[kind] += 1
    kinds = [kind for kind, count in counts.items() for _ in range(count)]
    rng.shuffle(kinds)
    return kinds

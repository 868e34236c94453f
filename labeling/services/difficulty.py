"""How many control tiles a challenge needs, and how many of them one may miss.

Two promises pull against each other: a random guesser passes at most
``RANDOM_MAX`` of challenges of every kind, and an honest person who is right on
``HONEST_ACCURACY`` of tiles passes at least ``HONEST_MIN`` of first tries. With ``n``
control tiles and ``m`` misses forgiven, each promise is a binomial tail:
``P(at least n - m of n right)`` with the per-tile chance of a guesser (``1/L`` for a
choice among ``L`` labels, ``1/2`` for a grid or verify tile, which are yes/no) or of
the honest person. :func:`pass_rule` takes the fewest control tiles that keep both.

Yes/no tiles are cheap to guess: it takes 8 controls with one miss forgiven (random
3.5 %, honest 81.3 %) where a choice among ten labels needs 2 (random 1 %, honest
81 %). Sites on automatic difficulty therefore ask choice questions first whenever the
project has three labels or more.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import comb

from labeling.models import ChallengeKind

HONEST_ACCURACY = 0.9
RANDOM_MAX = 0.05
HONEST_MIN = 0.8
MAX_CONTROLS = 8


@dataclass(frozen=True)
class PassRule:
    controls: int
    misses: int
    random_pass: float
    honest_pass: float

    def needed(self, n_controls: int) -> int:
        """Right answers needed out of ``n_controls`` graded control tiles."""
        return max(n_controls - self.misses, 1)


def pass_probability(n: int, misses: int, p: float) -> float:
    """Chance of at least ``n - misses`` right out of ``n``, each right with chance ``p``."""
    return sum(comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(max(n - misses, 0), n + 1))


def chance_per_tile(kind: str, n_labels: int) -> float:
    """A blind guesser's chance on one control tile of ``kind``."""
    if kind == ChallengeKind.CHOICE:
        return 1.0 / max(n_labels, 2)
    return 0.5


def pass_rule(kind: str, n_labels: int, *, honest: float = HONEST_ACCURACY, random_max: float = RANDOM_MAX,
              honest_min: float = HONEST_MIN, max_controls: int = MAX_CONTROLS) -> PassRule:
    """The fewest control tiles (and the misses forgiven) keeping both promises; when
    none within ``max_controls`` does, the rule at ``max_controls`` that keeps the
    guesser under ``random_max`` with the best honest pass rate."""
    guess = chance_per_tile(kind, n_labels)
    fallback: PassRule | None = None
    for n in range(1, max_controls + 1):
        for misses in range(0, n):
            rule = PassRule(n, misses, pass_probability(n, misses, guess), pass_probability(n, misses, honest))
            if rule.random_pass > random_max:
                break
            if rule.honest_pass >= honest_min:
                return rule
            if n == max_controls and (fallback is None or rule.honest_pass > fallback.honest_pass):
                fallback = rule
    return fallback or PassRule(max_controls, 0, guess**max_controls, honest**max_controls)


def looked_probability(kind: str, n_labels: int, n_controls: int, n_right: int, *, honest: float = HONEST_ACCURACY) -> float:
    """How sure one can be that a visitor who got ``n_right`` of ``n_controls`` control
    tiles right looked at them, rather than guessed blind: the posterior of "a person
    right ``honest`` of the time" against "a blind guesser" (per-tile chance
    :func:`chance_per_tile`), even odds before the challenge. A pass on 2 yes/no tiles
    (a guesser's luck one time in four) gives 0.76; 2 right choices among ten labels, or
    8 of 8 yes/no tiles, give 0.99. With no graded control tile it is 1/2."""
    guess = chance_per_tile(kind, n_labels)
    n_wrong = max(n_controls - n_right, 0)
    person = honest**n_right * (1 - honest) ** n_wrong
    blind = guess**n_right * (1 - guess) ** n_wrong
    return person / (person + blind)


def tradeoff(kind: str, n_labels: int, *, honest: float = HONEST_ACCURACY,
             max_controls: int = MAX_CONTROLS) -> list[PassRule]:
    """Every ``(controls, misses)`` rule up to ``max_controls`` as a :class:`PassRule`:
    the random-against-honest curve the bench README reports."""
    guess = chance_per_tile(kind, n_labels)
    return [
        PassRule(n, misses, pass_probability(n, misses, guess), pass_probability(n, misses, honest))
        for n in range(1, max_controls + 1)
        for misses in range(0, min(n, 3))
    ]

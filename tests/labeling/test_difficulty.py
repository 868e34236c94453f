"""Automatic difficulty: few enough control tiles for people, enough against guessing."""
import random
from datetime import timedelta

import pytest

from labeling.models import ChallengeKind, LabelClass
from labeling.services import difficulty
from labeling.services.challenge_answers import challenge_answer
from labeling.services.challenges import ClientInfo, challenge_issue
from labeling.services.sites import site_create
from tests.labeling.widget_support import HOST, fresh_cache, project_make  # noqa: F401


@pytest.mark.parametrize(
    "kind, n_labels, controls, misses",
    [
        (ChallengeKind.CHOICE, 10, 2, 0),
        (ChallengeKind.CHOICE, 3, 5, 1),
        (ChallengeKind.CHOICE, 2, 8, 1),
        (ChallengeKind.GRID, 10, 8, 1),
        (ChallengeKind.VERIFY, 10, 8, 1),
    ],
)
def test_the_rule_is_the_fewest_controls_that_keep_both_promises(kind, n_labels, controls, misses):
    rule = difficulty.pass_rule(kind, n_labels)
    assert (rule.controls, rule.misses) == (controls, misses)
    assert rule.random_pass <= difficulty.RANDOM_MAX and rule.honest_pass >= difficulty.HONEST_MIN
    for fewer in difficulty.tradeoff(kind, n_labels, max_controls=controls - 1):
        assert fewer.random_pass > difficulty.RANDOM_MAX or fewer.honest_pass < difficulty.HONEST_MIN


def test_binomial_tails_match_a_simulation():
    rng = random.Random(3)
    n, misses, p = 8, 1, 0.9
    trials = 20_000
    passes = sum(sum(rng.random() < p for _ in range(n)) >= n - misses for _ in range(trials))
    assert abs(passes / trials - difficulty.pass_probability(n, misses, p)) < 0.01


def _visitor(i):
    return ClientInfo(ip=f"198.51.100.{i % 250 + 1}", user_agent=f"agent {i}", hostname=HOST)


def _answer(challenge, rng, p_right):
    """A person right on each control tile with chance ``p_right`` (``None``: blind
    guessing), through what the client sees only (tile ids and label names)."""
    from labeling.services import selection

    tiles = list(challenge.tiles.select_related("item").order_by("position"))
    names = dict(LabelClass.objects.filter(project=challenge.project_id).values_list("id", "name"))
    known = selection.control_label_of([tile.item for tile in tiles if tile.is_control])
    answers = {}
    for tile in tiles:
        if tile.is_control and p_right is not None and rng.random() < p_right:
            answers[tile.public_id] = names[known[tile.item_id]]
        elif tile.is_control and p_right is not None:
            answers[tile.public_id] = rng.choice([n for i, n in names.items() if i != known[tile.item_id]])
        else:
            answers[tile.public_id] = rng.choice(list(names.values()))
    return {"answers": answers}


@pytest.mark.django_db
def test_an_automatic_site_asks_digit_choices_that_guessing_rarely_passes_and_people_do(settings):
    settings.CROWDLOOP_CONTROL_MAX_SERVES = 10**6
    settings.CROWDLOOP_CONTROL_SERVES_PER_WINDOW = 10**6
    project = project_make(labels=tuple(str(d) for d in range(10)), gold_per_class=8, unknown=400)
    site, _ = site_create(name="Auto", projects=[project], allowed_hostnames=[HOST], min_solve_ms=0)
    assert site.difficulty_auto
    rng = random.Random(7)
    results = {"guess": 0, "honest": 0}
    for i in range(120):
        who = "guess" if i % 2 else "honest"
        challenge = challenge_issue(sitekey=site.sitekey, client=_visitor(i), rng=rng)
        assert challenge.kind == ChallengeKind.CHOICE  # three labels or more: choice first
        assert challenge.tiles.filter(is_control=True).count() == 2
        outcome = challenge_answer(
            challenge_id=str(challenge.pk), data=_answer(challenge, rng, None if who == "guess" else 0.9),
            client=_visitor(i), now=challenge.issued_at + timedelta(seconds=5),
        )
        results[who] += outcome.passed
    assert results["guess"] <= 4  # 60 tries at 1 %
    assert results["honest"] >= 40  # 60 tries at 81 %


@pytest.mark.django_db
def test_an_automatic_site_forgives_one_miss_of_five_on_a_three_label_project():
    project = project_make(labels=("a", "b", "c"), gold_per_class=10, unknown=20)
    site, _ = site_create(name="Auto", projects=[project], allowed_hostnames=[HOST], min_solve_ms=0)
    rng = random.Random(1)
    challenge = challenge_issue(sitekey=site.sitekey, client=_visitor(1), rng=rng, kind=ChallengeKind.CHOICE)
    controls = list(challenge.tiles.filter(is_control=True))
    assert len(controls) == 5
    body = _answer(challenge, rng, 1.0)
    wrong = next(name for name in ("a", "b", "c") if name != body["answers"][controls[0].public_id])
    body["answers"][controls[0].public_id] = wrong
    outcome = challenge_answer(
        challenge_id=str(challenge.pk), data=body, client=_visitor(1), now=challenge.issued_at + timedelta(seconds=5)
    )
    assert outcome.passed


@pytest.mark.django_db
def test_a_site_given_its_own_numbers_keeps_them():
    own, _ = site_create(name="Own", allowed_hostnames=[HOST], control_items=3, pass_share=0.5)
    auto, _ = site_create(name="Auto", allowed_hostnames=[HOST])
    assert not own.difficulty_auto and auto.difficulty_auto


@pytest.mark.django_db
@pytest.mark.parametrize("seed", [11, 5])
def test_a_crowd_with_thirty_percent_blind_bots_settles_the_same_labels_as_without_them(settings, seed):
    """Visitors through the real widget path on a site with the default (automatic)
    difficulty, ten labels, choice questions: 70 % people, right 90 % of the time, 30 %
    bots that answer blindly. Bots pass about 1 % of their tries; taking every bot's
    answers out (a ban recounts their items) changes no consensus label.

    Not guarded here, measured: on a weak site of the owner's own numbers (one control
    tile, so bots pass about 10 %) the visitor prior alone did not hold: 1-3 labels
    changed in 4 of 6 seeds."""
    difficulty_kwargs = {}
    from labeling.models import Consensus, Worker, WorkerStatus
    from labeling.services.worker_status import worker_answers_recount

    settings.CROWDLOOP_CONTROL_MAX_SERVES = 10**6
    settings.CROWDLOOP_CONTROL_SERVES_PER_WINDOW = 10**6
    labels = tuple(str(d) for d in range(10))
    project = project_make(labels=labels, gold_per_class=6, unknown=40)
    truth = {item.pk: labels[item.pk % 10] for item in project.items.filter(known_label__isnull=True)}
    site, _ = site_create(name="Bots", projects=[project], allowed_hostnames=[HOST], min_solve_ms=0, **difficulty_kwargs)
    rng = random.Random(seed)
    bots, bot_passes = [], 0
    for i in range(300):
        bot = rng.random() < 0.3
        client = _visitor(i)
        try:
            challenge = challenge_issue(sitekey=site.sitekey, client=client, rng=rng, kind=ChallengeKind.CHOICE)
        except Exception:  # noqa: BLE001 -- nothing left to ask
            break
        body = _answer(challenge, rng, None if bot else 0.9)
        if not bot:  # people answer unknown tiles right 90 % of the time too
            for tile in challenge.tiles.filter(is_control=False):
                right = truth.get(tile.item_id)
                if right is not None:
                    body["answers"][tile.public_id] = right if rng.random() < 0.9 else rng.choice(labels)
        outcome = challenge_answer(
            challenge_id=str(challenge.pk), data=body, client=client, now=challenge.issued_at + timedelta(seconds=5)
        )
        if bot:
            bots.append(challenge.worker_id)
            bot_passes += outcome.passed
    with_bots = dict(Consensus.objects.filter(item_id__in=truth, label__isnull=False).values_list("item_id", "label_id"))
    assert len(with_bots) >= 20 and len(bots) >= 60
    assert bot_passes <= 3  # about 1 % of their tries
    for worker in Worker.objects.filter(pk__in=bots):
        Worker.objects.filter(pk=worker.pk).update(status=WorkerStatus.BANNED)
        worker_answers_recount(worker)
    without = dict(Consensus.objects.filter(item_id__in=truth, label__isnull=False).values_list("item_id", "label_id"))
    assert with_bots == without

"""Bots that never look at what the pictures show pass no more often than a random
guesser: every serve is a fresh rendering, prompts and feedback say nothing of the
control items, each control item is shown a few times at most, and one shown under a
prompt naming a label (a grid's target) never again.

Each bot learns from the same challenge payloads (fetched, never answered, each from a
new address behind a trusted proxy), then tries ``TRIES`` challenges of its own; the
random guesser (which needs no images, so is cheap) tries ``GUESSES`` in the same test.
With 4 control tiles a challenge (3 labels) a guesser passes about 1 in 20: the standard
error of the difference of two such pass rates is about 3 points, so ``TOLERANCE`` is
about 3 of them (a false alarm under 1 % of seeds); the attack this defends against
passed 84 %. Everything is seeded.
"""
import random

import pytest
from django.test import Client

from labeling.services import challenge_plans, challenges
from labeling.services.sites import site_create
from tests.labeling.widget_bots import (
    MemorisingBot,
    PromptInferenceBot,
    RandomGuesser,
    Widget,
    attack,
    attack_project_make,
    dhash,
    hamming,
)
from tests.labeling.widget_support import fresh_cache  # noqa: F401

pytestmark = pytest.mark.django_db
LEARN = 100
TRIES = 60
GUESSES = 200
TOLERANCE = 0.10


@pytest.fixture
def attacked_site(settings, monkeypatch):
    settings.CROWDLOOP_TRUSTED_PROXIES = ["10.9.0.0/16"]
    settings.CROWDLOOP_CONTROL_POOL_REFRESH_S = 3600
    seeded = random.Random(20261130)
    monkeypatch.setattr(challenges, "_rng", lambda: seeded)
    # A grid retires its 4 control items (the prompt named a label): ~600 grids here,
    # counting the next challenge the widget issues after each failure.
    project = attack_project_make(labels=("cat", "dog", "fox"), n_gold=3500, n_unknown=600, seed=1)
    site, _ = site_create(
        name="Shop", projects=[project], allowed_hostnames=["shop.example"], min_solve_ms=0, control_items=4
    )
    return site


def test_bots_that_memorise_images_or_read_prompts_pass_no_more_than_a_random_guesser(attacked_site):
    client = Client()
    learner = Widget(client, attacked_site.sitekey)
    bots = [
        RandomGuesser(random.Random(1)),
        MemorisingBot(random.Random(2), key="sha256"),
        MemorisingBot(random.Random(3), key="dhash"),
        PromptInferenceBot(random.Random(4)),
    ]
    for _ in range(LEARN):
        seen = learner.fetch()
        assert seen is not None
        for bot in bots:
            bot.learn(seen)
    bots[3].settle()
    rates = {}
    for i, bot in enumerate(bots):
        n = GUESSES if isinstance(bot, RandomGuesser) and not bot.images else TRIES
        passed, tried = attack(bot, Widget(client, attacked_site.sitekey, first_address=10_000 * (i + 1)), n)
        assert tried == n
        rates[bot.name] = passed / tried
    guesser = rates.pop("random guesser")
    assert 0.01 < guesser < 0.12, rates
    for name, rate in rates.items():
        assert rate <= guesser + TOLERANCE, f"{name} passes {rate:.0%}, the random guesser {guesser:.0%}"


def test_a_memorising_bot_wins_when_controls_recur_and_prompts_point_at_them(attacked_site, settings, monkeypatch):
    """The suite can fail: with control tiles whose label is the prompt's, and the same
    few control items over and over, never retired (the old widget), the bot wins."""
    settings.CROWDLOOP_CONTROL_SERVES_PER_WINDOW = 10_000
    settings.CROWDLOOP_CONTROL_MAX_SERVES = 10_000
    settings.CROWDLOOP_CONTROL_RESERVE = 0  # the old widget asked grids from any pool
    from labeling.models import KnownLabel

    keep = list(KnownLabel.objects.order_by("item_id").values_list("item_id", flat=True)[:30])
    KnownLabel.objects.exclude(item_id__in=keep).delete()
    monkeypatch.setattr(challenge_plans, "_controls_for", _controls_with_the_target)
    record = challenges.control_pool.exposures_record  # and a grid's controls do not retire
    monkeypatch.setattr(challenges.control_pool, "exposures_record", lambda **kw: record(**{**kw, "retire": False}))
    client = Client()
    learner = Widget(client, attacked_site.sitekey)
    guesser, bot = RandomGuesser(random.Random(1)), MemorisingBot(random.Random(2), key="dhash")
    for _ in range(100):
        bot.learn(learner.fetch())
    guessed, _ = attack(guesser, Widget(client, attacked_site.sitekey, first_address=50_000), 30)
    won, _ = attack(bot, Widget(client, attacked_site.sitekey, first_address=60_000), 30)
    assert won / 30 > guessed / 30 + 0.3


def _controls_with_the_target(project, worker, n, target, rng, exclude_ids=(), now=None):
    """The old planning: control tiles whose label is the target."""
    pool = challenges.control_pool.pool_pick(project, worker=worker, n=n, exclude_ids=exclude_ids, rng=rng, now=now)
    return challenge_plans._with_items([pair for pair in pool if pair[1] == target][:n])


def test_dhash_still_recognises_a_picture_across_renderings():
    """Fresh renderings defeat exact hashes, not perceptual ones (hence the rotating pool)."""
    import io

    import numpy as np
    from PIL import Image

    from labeling.bridge import image_render

    rng, pictures = np.random.default_rng(0), []
    for _ in range(20):
        blocks = rng.integers(0, 256, size=(4, 4), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(blocks, mode="L").resize((32, 32), Image.Resampling.BICUBIC).save(buffer, format="PNG")
        pictures.append(buffer.getvalue())
    seeded = random.Random(0)
    same = [hamming(dhash(image_render(p, rng=seeded)), dhash(image_render(p, rng=seeded))) for p in pictures]
    other = [hamming(dhash(pictures[i]), dhash(pictures[j])) for i in range(20) for j in range(i)]
    assert np.median(same) < min(other)

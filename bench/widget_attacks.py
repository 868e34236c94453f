"""Attacks on the widget by bots that never look at what the pictures show, honest
pass rates and solve times, and what fresh renderings leave to a perceptual hash.

Run from the repository root (0.1-0.5 s a challenge with its images on a shared 2-core
machine: the full size, ``--learn 3000 --tries 1000``, takes over an hour)::

    python bench/widget_attacks.py [--learn 3000] [--tries 1000] [--honest-tries 1000]
        [--gold 60000] [--rate 600] [--budgets 4/12] [--mix even] [--out FILE]

A fresh on-disk SQLite database (``DEBUG=0``). The project has 10 labels and
``--gold`` gold items (labels in turn) plus 6,000 unknown items, each with a picture of
its own (random 4x4 blocks scaled to 32x32: smooth, so that dHash works at its best);
the unknown items carry pseudo-labels, so that verify questions are asked. The site
runs the defaults (automatic difficulty) except that it has no minimum solve time.
``--mix even`` draws each challenge's first kind evenly among grid, choice and verify
(the others follow when the pool cannot serve it), so that every kind is attacked;
``--mix auto`` keeps the site's own order (choice first, verify a third of the time).
A grid or verify question retires its 8 control items, and the widget issues the next
challenge with each failed answer (which the bots ignore): an attack try costs about 11
pool items, hence the large ``--gold``.
A simulated clock advances ``3600 / --rate`` seconds per challenge, so that exposure
windows roll over as they would for an attacker fetching ``--rate`` challenges an hour.
Each challenge comes from a new address behind a trusted proxy.

1. Rendering: milliseconds per fresh rendering, and dHash distances between two
   renderings of one picture and between different pictures.
2. Attacks: the bots of ``tests/labeling/widget_bots.py`` learn from ``--learn``
   payloads (fetched with their images, never answered), then each tries ``--tries``
   challenges; the random guesser is measured in the same run.
3. Honest people, right 90 % of the time on each tile, against the random guesser, on
   the automatic default and on the wave-1 rule (2 control tiles, all right): first-try
   pass rates per kind, and the median time to a pass (each person keeps their address
   and tries again after a failure, up to 5 times; reading time per tile from the
   simulated crowd's people, :func:`labeling.crowd.people.person_make`).
"""
import argparse
import datetime
import io
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA_DIR = Path(tempfile.mkdtemp(prefix="crowdloop-widget-attacks-"))
os.environ.update(
    DJANGO_SETTINGS_MODULE="labeling.settings", CROWDLOOP_DATA_DIR=str(DATA_DIR), DEBUG="0", LOG_LEVEL="WARNING"
)

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402
from PIL import Image  # noqa: E402

from labeling.bridge import image_render  # noqa: E402
from labeling.crowd.people import person_make  # noqa: E402
from labeling.models import (  # noqa: E402
    ChallengeItem,
    ChallengeKind,
    ControlPoolEntry,
    Item,
    ItemStatus,
    KnownLabel,
    LabelClass,
    PseudoLabel,
)
from labeling.services import challenge_plans, challenges, control_pool  # noqa: E402
from labeling.services.sites import site_create  # noqa: E402
from tests.labeling.widget_bots import (  # noqa: E402
    DHASH_RADIUS,
    MemorisingBot,
    PromptInferenceBot,
    RandomGuesser,
    Widget,
    attack,
    attack_project_make,
    dhash,
    hamming,
)

RESULTS = ROOT / "bench" / "results" / "widget_attacks.md"
LABELS = [str(k) for k in range(10)]

settings.CROWDLOOP_RATE_LIMITS = {
    scope: (hits * 1000, window) for scope, (hits, window) in settings.CROWDLOOP_RATE_LIMITS.items()
}
settings.CROWDLOOP_TRUSTED_PROXIES = ["10.9.0.0/16"]
settings.CROWDLOOP_CONTROL_POOL_REFRESH_S = 3600


class Clock:
    """The simulated time of the widget: advances a fixed step per challenge issued."""

    def __init__(self, step_s):
        self.now, self.step = timezone.now(), datetime.timedelta(seconds=step_s)

    def install(self, rng, mix):
        issue = challenges.challenge_issue
        self.natural_order = challenge_plans._kinds_in_order
        if mix == "even":
            kinds = (ChallengeKind.GRID, ChallengeKind.CHOICE, ChallengeKind.VERIFY)

            def kinds_in_order(rng, choice_first=False):
                first = rng.choice(kinds)
                return [first, *(kind for kind in kinds if kind != first)]

            challenge_plans._kinds_in_order = kinds_in_order

        def issue_and_tick(**kwargs):
            self.now += self.step
            return issue(**kwargs)

        challenges.challenge_issue = issue_and_tick
        challenges._now = lambda: self.now
        challenges._rng = lambda: rng
        control_pool._now = lambda: self.now
        from labeling import widget_api

        widget_api.challenge_issue = issue_and_tick


def rendering_table(seed=0):
    rng, pyrng = np.random.default_rng(seed), random.Random(seed)
    rows = []
    for side in (32, 128, 512):
        picture = Image.fromarray(rng.integers(0, 256, size=(4, 4), dtype=np.uint8)).resize((side, side), Image.BICUBIC)
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        data = buffer.getvalue()
        start = time.perf_counter()
        for _ in range(100):
            image_render(data, rng=pyrng)
        rows.append((side, (time.perf_counter() - start) * 10))
    pictures = []
    for _ in range(200):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, size=(4, 4), dtype=np.uint8)).resize((32, 32), Image.BICUBIC).save(
            buffer, format="PNG")
        pictures.append(buffer.getvalue())
    same = [hamming(dhash(image_render(p, rng=pyrng)), dhash(image_render(p, rng=pyrng))) for p in pictures]
    other = [hamming(dhash(pictures[i]), dhash(pictures[j])) for i in range(200) for j in range(i)]
    lines = ["| image side | ms per rendering |", "|---:|---:|"]
    lines += [f"| {side} px | {ms:.2f} |" for side, ms in rows]
    lines += [
        "",
        "| dHash (64 bits) | median distance | 95th percentile | within the bots' radius "
        f"({DHASH_RADIUS} bits) |",
        "|---|---:|---:|---:|",
        f"| two renderings of one picture | {statistics.median(same):.0f} | {np.percentile(same, 95):.0f} | "
        f"{np.mean(np.array(same) <= DHASH_RADIUS):.1%} |",
        f"| two different pictures | {statistics.median(other):.0f} | {np.percentile(other, 95):.0f} | "
        f"{np.mean(np.array(other) <= DHASH_RADIUS):.2%} |",
    ]
    return lines


class Honest:
    """A person who sees each picture: right on each tile with probability ``p``."""

    name = "honest person (90 %)"
    images = False

    def __init__(self, rng, p=0.9):
        self.rng, self.p = rng, p

    def body(self, seen):
        tiles = {
            tile.public_id: tile
            for tile in ChallengeItem.objects.filter(challenge_id=seen.payload["id"]).select_related("challenge")
        }
        known = dict(KnownLabel.objects.filter(item_id__in=[t.item_id for t in tiles.values()]).values_list(
            "item_id", "label_id"))
        names = dict(LabelClass.objects.filter(pk__in=set(known.values())).values_list("id", "name"))
        right = self.rng.random
        if seen.kind == "grid":
            target = next(iter(tiles.values())).challenge.target_label_id
            chosen = []
            for public_id, tile in tiles.items():
                truth = known.get(tile.item_id) == target if tile.item_id in known else self.rng.random() < 0.3
                if (right() < self.p) == truth:
                    chosen.append(public_id)
            return {"selected": chosen}
        answers = {}
        for public_id, tile in tiles.items():
            if seen.kind == "verify":
                truth = known.get(tile.item_id) == tile.proposed_label_id
                answers[public_id] = truth if right() < self.p else not truth
            else:
                truth = names.get(known.get(tile.item_id), self.rng.choice(seen.labels))
                answers[public_id] = truth if right() < self.p else self.rng.choice(
                    [name for name in seen.labels if name != truth])
        return {"answers": answers}


def honest_solves(site, people, seed):
    """``people`` honest people, each from an address of their own, try until they pass
    (5 tries at most). Returns first tries ``(passed, tried, by kind)`` and each
    person's seconds to a pass (``None`` when they never passed)."""
    client, rng = Client(), random.Random(seed)
    solver, kinds, first_passed, seconds = Honest(random.Random(seed + 1)), {}, 0, []
    for i in range(people):
        person = person_make(f"h{i}", "honest", "widget", rng)
        widget = Widget(client, site.sitekey, first_address=7_000_000 + 100_000 * site.pk + 10 * i)
        fixed = widget._headers()
        widget._headers = lambda fixed=fixed: fixed
        spent, passed = 0.0, None
        for attempt in range(5):
            seen = widget.fetch(images=False)
            if seen is None:
                break
            spent += person.seconds_for(len(seen.tiles))
            won = widget.answer(seen, solver.body(seen))
            if attempt == 0:
                counts = kinds.setdefault(seen.kind, [0, 0])
                counts[0] += won
                counts[1] += 1
                first_passed += won
            if won:
                passed = spent
                break
        seconds.append(passed)
    return (first_passed, sum(c[1] for c in kinds.values()), kinds), seconds


def site_for(project, **options):
    options = {"allowed_hostnames": ["shop.example"], "min_solve_ms": 0, **options}
    return site_create(name="Shop", projects=[project], **options)[0]


def attack_table(site, learn, tries, seed):
    client = Client()
    learner = Widget(client, site.sitekey)
    bots = [
        RandomGuesser(random.Random(seed + 1)),
        MemorisingBot(random.Random(seed + 2), key="sha256"),
        MemorisingBot(random.Random(seed + 3), key="dhash"),
        PromptInferenceBot(random.Random(seed + 4)),
    ]
    refused = 0
    for _ in range(learn):
        seen = learner.fetch()
        if seen is None:
            refused += 1
            continue
        for bot in bots:
            bot.learn(seen)
    bots[3].settle()
    results = []
    for i, bot in enumerate(bots):
        kinds = {}
        passed, tried = attack(bot, Widget(client, site.sitekey, first_address=1_000_000 * (i + 1)), tries, kinds)
        results.append((bot.name, tried, passed, kinds))
    return results, refused


def kinds_text(kinds):
    return ", ".join(f"{kind} {rate(*counts)} of {counts[1]}" for kind, counts in sorted(kinds.items()))


def guesses(site, tries, seed):
    kinds = {}
    widget = Widget(Client(), site.sitekey, first_address=5_000_000 + 100_000 * site.pk)
    passed, tried = attack(RandomGuesser(random.Random(seed)), widget, tries, kinds)
    return passed, tried, kinds


def pseudo_labels_add(project, seed):
    """Pseudo-labels (random: unknown items have no truth here) on every unknown item, so that verify
    questions are asked and grid targets come from them half of the time."""
    rng = random.Random(seed)
    ids = list(project.label_classes.values_list("id", flat=True))
    unknown = list(Item.objects.filter(project=project, known_label__isnull=True).values_list("id", flat=True))
    PseudoLabel.objects.bulk_create(
        [PseudoLabel(item_id=item_id, label_id=rng.choice(ids), confidence=0.95, source="propagation", accepted=True)
         for item_id in unknown]
    )
    Item.objects.filter(pk__in=unknown).update(status=ItemStatus.PSEUDO_LABELED)


def rate(passed, tried):
    return f"{passed / tried:.1%}" if tried else "–"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learn", type=int, default=3000)
    parser.add_argument("--tries", type=int, default=1000)
    parser.add_argument("--honest-tries", type=int, default=1000, help="first tries per setting, honest and random")
    parser.add_argument("--gold", type=int, default=60000, help="a grid or verify retires its 8 control items")
    parser.add_argument("--rate", type=int, default=600, help="challenges an hour (simulated clock)")
    parser.add_argument("--budgets", default="4/12", help="serves per window / in all, per item")
    parser.add_argument("--mix", choices=("even", "auto"), default="even")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    call_command("migrate", interactive=False, verbosity=0)
    rng = random.Random(args.seed)
    clock = Clock(3600 / args.rate)
    clock.install(rng, args.mix)
    started = time.time()
    lines = [
        f"Measured {datetime.date.today()}, `python bench/widget_attacks.py --learn {args.learn} --tries {args.tries} "
        f"--honest-tries {args.honest_tries} --gold {args.gold} --rate {args.rate} --budgets {args.budgets} "
        f"--mix {args.mix}`; load average {os.getloadavg()[0]:.1f} at the start.",
        "",
        "**Rendering** (each serve of a tile):",
        "",
        *rendering_table(args.seed),
        "",
    ]
    project = attack_project_make(labels=LABELS, n_gold=args.gold, n_unknown=6000, seed=args.seed)
    pseudo_labels_add(project, args.seed)
    print(f"project ready after {time.time() - started:.0f} s", flush=True)
    lines += [
        f"**Attacks** ({args.gold} gold items, 10 labels, automatic difficulty, first kind drawn: {args.mix}, "
        f"{args.rate} challenges an hour; each bot learns from the same {args.learn} payloads, then tries "
        f"{args.tries}):",
        "",
        "| budget (serves per hour / in all) | bot | tries | passed | pass rate | vs random | by kind |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for budget in args.budgets.split(","):
        per_window, total = (int(part) for part in budget.split("/"))
        settings.CROWDLOOP_CONTROL_SERVES_PER_WINDOW, settings.CROWDLOOP_CONTROL_MAX_SERVES = per_window, total
        ControlPoolEntry.objects.update(served_total=0, window_served=0, window_start=None, retired_at=None)
        site = site_for(project)
        results, refused = attack_table(site, args.learn, args.tries, args.seed)
        guesser = results[0][2] / max(results[0][1], 1)
        site.delete()
        for name, tried, passed, kinds in results:
            delta = f"{(passed / tried - guesser) * 100:+.1f} pp" if tried else "–"
            lines.append(
                f"| {budget} | {name} | {tried} | {passed} | {rate(passed, tried)} | {delta} | {kinds_text(kinds)} |"
            )
        if refused:
            lines.append(f"| {budget} | (learning payloads refused: pool spent) | {refused} | | | |")
        retired = ControlPoolEntry.objects.filter(retired_at__isnull=False).count()
        lines.append(f"| {budget} | (control items retired by grids and verify questions) | {retired} | | | |")
        print("\n".join(lines[-6:]), f"({time.time() - started:.0f} s)", flush=True)
    lines += [
        "",
        f"**Honest against random** ({args.honest_tries} random guesses and {args.honest_tries} honest people per rule; "
        "people right 90 % of the time on each tile; pass rates of first tries; time to a pass with up to 5 tries "
        "from one address, reading time per tile as the simulated crowd's):",
        "",
        "| rule | random guesser | honest (90 %) | honest median s to a pass | never passed | random by kind | "
        "honest by kind |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    even_order = challenge_plans._kinds_in_order
    rules = (
        ("automatic (default), the site's own kind order", {}, clock.natural_order),
        (f"automatic (default), first kind drawn: {args.mix}", {}, even_order),
        ("wave 1: 2 controls, all right, the site's own kind order", {"control_items": 2, "pass_share": 1.0},
         clock.natural_order),
    )
    for name, options, order in rules if args.honest_tries else ():
        challenge_plans._kinds_in_order = order
        ControlPoolEntry.objects.update(served_total=0, window_served=0, window_start=None, retired_at=None)
        site = site_for(project, **options)
        guess = guesses(site, args.honest_tries, args.seed)
        honest, seconds = honest_solves(site, args.honest_tries, args.seed)
        solved = [value for value in seconds if value is not None]
        median = f"{statistics.median(solved):.1f}" if solved else "–"
        lines.append(
            f"| {name} | {rate(*guess[:2])} | {rate(*honest[:2])} | {median} | {len(seconds) - len(solved)} | "
            f"{kinds_text(guess[2])} | {kinds_text(honest[2])} |"
        )
        print(lines[-1], f"({time.time() - started:.0f} s)", flush=True)
        site.delete()
    lines += ["", f"Ran {time.time() - started:.0f} s."]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

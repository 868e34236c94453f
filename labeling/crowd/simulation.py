"""Running a crowd: who comes, through which door, on which clock, until the budget ends.

A discrete-event scheduler runs every person's visit (a generator from
:mod:`labeling.crowd.doors`) in the order of the times they act. On a
:class:`VirtualClock` (in-process runs: tests, the label-efficiency benchmark) seconds
are simulated and the server's clock is the simulated one, so a person who thinks for
four seconds does not cost four seconds, and the server still sees those four seconds
(minimum solve times, leases, rate-limit windows, the Celery beat schedule). On a
:class:`RealClock` (a running server) people wait for real.

Registered workers are a fixed group who log in and stay; widget visitors arrive one
after another on a few "seats" (pages being visited at the same time), each a new
person with a new address, whose kind is drawn from the crowd's shares.
"""
import heapq
import itertools
import logging
import random
import secrets
import threading
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from labeling import clock
from labeling.crowd.doors import widget_visit, worker_session
from labeling.crowd.people import KINDS, kinds_split, person_make
from labeling.crowd.transport import ClientTransport, HttpTransport

logger = logging.getLogger(__name__)

DEFAULT_SHARES = {"honest": 0.7, "spammer": 0.1, "same_answer": 0.05, "too_fast": 0.05, "colluder": 0.1}
MAX_ERRORS_KEPT = 50


@dataclass
class CrowdSpec:
    """Who is in the crowd. ``shares`` are proportions of people per kind (see
    :mod:`labeling.crowd.people`); ``budget`` is the number of answers the crowd gives
    in all (every tile of a challenge and every item of a worker counts one, stored or
    not)."""

    budget: int = 1000
    workers: int = 8
    visitor_seats: int = 4
    shares: dict = field(default_factory=lambda: dict(DEFAULT_SHARES))
    accuracy_range: tuple = (0.6, 0.95)
    seed: int = 0
    batch: int = 5
    visitor_gap_s: float = 5.0
    max_tries: int = 3

    def __post_init__(self):
        unknown = set(self.shares) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown kind(s) {', '.join(sorted(unknown))}; known: {', '.join(KINDS)}")


def shares_parse(text):
    """``"honest=0.7,spammer=0.3"`` -> ``{"honest": 0.7, "spammer": 0.3}``."""
    shares = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, value = part.partition("=")
        shares[kind.strip()] = float(value)
    return shares


@dataclass
class SiteAccess:
    """What a site owner knows: the site key, the secret, and their server's client."""

    sitekey: str
    secret: str
    server: object = None


class Ledger:
    """What the crowd did, as the crowd saw it: answers spent, challenges, passes,
    blocks, errors; per kind and per door. The budget lives here."""

    def __init__(self, budget):
        self.budget = budget
        self.spent = 0
        self.people = []
        self.counts = defaultdict(Counter)  # kind -> event -> n
        self.doors = Counter()
        self.errors = []
        self.error_count = 0
        self.timings = defaultdict(list)  # endpoint -> seconds

    def left(self):
        return self.budget - self.spent

    def spend(self, person, n):
        self.spent += n
        self.counts[person.kind]["answers"] += n
        self.doors[person.door] += n

    def note(self, person, event, n=1):
        self.counts[person.kind][event] += n

    def error(self, person, endpoint, reply):
        self.error_count += 1
        self.counts[person.kind]["errors"] += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append((person.name, endpoint, reply.status, reply.body[:200]))

    def collect_timings(self, transport):
        for name, seconds, _ in transport.timings:
            self.timings[name].append(seconds)
        transport.timings.clear()

    def summary(self):
        kinds = Counter(person.kind for person in self.people)
        return {
            "spent": self.spent,
            "by_door": dict(self.doors),
            "people": dict(kinds),
            "by_kind": {kind: dict(counter) for kind, counter in self.counts.items()},
            "errors": self.error_count,
        }


# --- Clocks -----------------------------------------------------------------------------------


class VirtualClock:
    """Simulated seconds. :meth:`installed` makes the server's clock this one (see
    :mod:`labeling.clock`)."""

    def __init__(self, start=None):
        self.start = start or clock.now()
        self.t = 0.0

    def now(self):
        return self.t

    def wait_until(self, t, stop=None):
        self.t = max(self.t, t)
        return True

    def datetime(self):
        return self.start + timedelta(seconds=self.t)

    @contextmanager
    def installed(self):
        with clock.installed(self.datetime):
            yield self


class RealClock:
    """Wall-clock seconds since the run started; waiting sleeps (and wakes on ``stop``).
    ``speed`` > 1 makes people wait that many times less than they think (answer times
    they report stay what they thought; minimum solve times are then too short for
    honest people, so use it with a site that has none)."""

    def __init__(self, speed=1.0):
        self.started = time.monotonic()
        self.speed = float(speed)

    def now(self):
        return (time.monotonic() - self.started) * self.speed

    def wait_until(self, t, stop=None):
        delay = (t - self.now()) / self.speed
        if delay > 0:
            if stop is not None:
                return not stop.wait(delay)
            time.sleep(delay)
        return True

    @contextmanager
    def installed(self):
        yield self


class Beat:
    """Celery beat for a virtual clock: the entries of ``CELERY_BEAT_SCHEDULE``, applied
    when simulated time passes their period (in-process, with eager Celery)."""

    def __init__(self, schedule):
        self.entries = [(entry["task"], float(entry["schedule"])) for entry in schedule.values()]
        self.next_at = {task: period for task, period in self.entries}

    def tick(self, now):
        from labeling.celery import app

        for task, period in self.entries:
            while now >= self.next_at[task]:
                self.next_at[task] += period
                app.tasks[task].apply()


# --- Connecting people ------------------------------------------------------------------------


def client_connector():
    """People reach the server in-process through Django's test client, each from their
    own address."""
    addresses = itertools.count(1)

    def connect(person, origin):
        n = next(addresses)
        address = f"198.18.{n // 250 % 250}.{n % 250 + 1}"
        person.addresses = [address]
        return ClientTransport(remote_addr=address, user_agent=user_agent_for(person), origin=origin)

    return connect


def http_connector(base_url, *, forwarded_for=False):
    """People reach a running server over HTTP. With ``forwarded_for`` each person
    sends their own address in ``X-Forwarded-For``, as a reverse proxy would (the
    server believes it only from ``CROWDLOOP_TRUSTED_PROXIES``)."""
    addresses = itertools.count(1)

    def connect(person, origin):
        n = next(addresses)
        address = f"198.18.{n // 250 % 250}.{n % 250 + 1}"
        person.addresses = [address, "127.0.0.1"] if forwarded_for else ["127.0.0.1"]
        return HttpTransport(
            base_url, user_agent=user_agent_for(person), origin=origin, forwarded_for=address if forwarded_for else None
        )

    return connect


def user_agent_for(person):
    """The User-Agent a simulated person sends (and a visitor is partly known by)."""
    return f"Mozilla/5.0 (X11; Linux x86_64) crowdloop-sim/{person.name}"


# --- Accounts ---------------------------------------------------------------------------------


def crowd_accounts_provision(project, people, *, password=None):
    """Create (or reset the password of) each worker's account and admit it to
    ``project`` when the project is not open to all: the operator's part, done through
    the workers service. Returns the password every simulated worker logs in with."""
    from django.contrib.auth import get_user_model

    from labeling.services.workers import (
        membership_grant,
        worker_for_user,
        worker_sign_up,
    )

    password = password or secrets.token_urlsafe(16)
    User = get_user_model()
    for person in people:
        if person.door != "worker":
            continue
        user = User.objects.filter(username=person.username).first()
        if user is None:
            user = worker_sign_up(username=person.username, password=password)
        else:
            user.set_password(password)
            user.save(update_fields=["password"])
        worker = worker_for_user(user)
        if not project.open_to_all_workers:
            membership_grant(project, worker)
    return password


# --- The run ----------------------------------------------------------------------------------


def crowd_people(spec, *, run_tag=""):
    """The registered workers of a crowd (visitors are made as they arrive)."""
    rng = random.Random(spec.seed)
    people = []
    for i, kind in enumerate(kinds_split(spec.workers, spec.shares, rng)):
        person = person_make(f"w{i}-{kind}", kind, "worker", rng, accuracy_range=spec.accuracy_range)
        person.username = f"crowd{run_tag}-{i:03d}-{kind}".replace("_", "-")
        people.append(person)
    return people


def crowd_run(spec, *, slug, site, connect, clock, workers=None, password=None, ledger=None, on_step=None,
              beat=None, stop=None, max_wall_s=None, origin="http://localhost"):
    """Run the crowd until its budget is spent (or ``on_step(ledger)`` returns
    ``False``, ``stop`` is set, or ``max_wall_s`` real seconds pass). Returns the
    :class:`Ledger`.

    ``workers``: the registered workers (:func:`crowd_people`), whose accounts exist
    with ``password`` (:func:`crowd_accounts_provision`). ``site``: a
    :class:`SiteAccess` for the widget door, or ``None`` for workers only.
    ``connect(person, origin)`` returns a person's transport.
    """
    rng = random.Random(spec.seed + 1)
    ledger = ledger or Ledger(spec.budget)
    workers = workers or []
    ledger.people.extend(workers)
    transports = []
    queue, order = [], itertools.count()

    def schedule(at, visit):
        heapq.heappush(queue, (at, next(order), visit))

    for person in workers:
        web = connect(person, None)
        transports.append(web)
        visit = worker_session(
            person, web, slug=slug, username=person.username, password=password, ledger=ledger, batch=spec.batch
        )
        schedule(rng.uniform(0, 5), visit)

    visitor_numbers = itertools.count()
    kinds, weights = list(spec.shares), list(spec.shares.values())

    def seat():
        while ledger.left() > 0:
            number = next(visitor_numbers)
            kind = rng.choices(kinds, weights)[0]
            person = person_make(f"v{number}-{kind}", kind, "widget", rng, accuracy_range=spec.accuracy_range)
            ledger.people.append(person)
            web = connect(person, origin)
            try:
                yield from widget_visit(person, web, site, ledger, max_tries=spec.max_tries)
            finally:
                ledger.collect_timings(web)
                web.close()
            yield rng.expovariate(1.0 / spec.visitor_gap_s) if spec.visitor_gap_s > 0 else 0.0

    if site is not None and sum(weights) > 0:
        for _ in range(spec.visitor_seats):
            schedule(rng.uniform(0, 5), seat())

    wall_start = time.monotonic()
    try:
        with clock.installed():
            while queue:
                at, _, visit = heapq.heappop(queue)
                if not clock.wait_until(at, stop) or (stop is not None and stop.is_set()):
                    break
                if beat is not None:
                    beat.tick(clock.now())
                try:
                    wait = next(visit)
                except StopIteration:
                    continue
                schedule(clock.now() + max(float(wait), 0.0), visit)
                if on_step is not None and on_step(ledger) is False:
                    break
                if max_wall_s is not None and time.monotonic() - wall_start > max_wall_s:
                    logger.warning("crowd stopped after %.0f s of wall time", max_wall_s)
                    break
    finally:
        for _, _, visit in queue:
            visit.close()
        for web in transports:
            ledger.collect_timings(web)
            web.close()
        if site is not None and site.server is not None:
            ledger.collect_timings(site.server)
    return ledger


def server_wait(base_url, *, stop=None, timeout_s=120.0):
    """Wait until the server at ``base_url`` answers; ``False`` if it does not in time."""
    web = HttpTransport(base_url, user_agent="crowdloop-sim/ready", timeout=5.0)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            try:
                if web.get("/accounts/login/").status == 200:
                    return True
            except OSError:
                web.close()
            time.sleep(0.5)
        return False
    finally:
        web.close()


def crowd_thread(spec, *, slug, site, connect, workers, password, stop, on_done=None, base_url=None, **kwargs):
    """Run the crowd on a real clock in a daemon thread, once the server at
    ``base_url`` answers; ``stop`` ends it early."""

    def main():
        if base_url is not None and not server_wait(base_url, stop=stop):
            logger.warning("the simulated crowd gave up: no server at %s", base_url)
            return
        try:
            ledger = crowd_run(
                spec, slug=slug, site=site, connect=connect, clock=RealClock(), workers=workers, password=password,
                stop=stop, **kwargs,
            )
        except Exception:
            logger.exception("the simulated crowd stopped on an error")
            return
        if on_done is not None:
            on_done(ledger)

    thread = threading.Thread(target=main, name="crowd", daemon=True)
    thread.start()
    return thread


def crowd_background_start(project, base_url, *, budget, stop, on_done=None, seed=0):
    """The demo's crowd: 8 registered workers and 4 widget visitors at a time on the
    demo site, with the default mix, against the server at ``base_url`` in real time.
    Provisions the accounts now; returns the thread."""
    from labeling.models import Site
    from labeling.services.demo import DEMO_SITEKEY, demo_site_secret

    spec = CrowdSpec(budget=budget, seed=seed)
    workers = crowd_people(spec, run_tag="-demo")
    password = crowd_accounts_provision(project, workers)
    site = None
    if Site.objects.filter(sitekey=DEMO_SITEKEY, projects=project).exists():
        site = SiteAccess(DEMO_SITEKEY, demo_site_secret(), HttpTransport(base_url, user_agent="demo site server"))
    return crowd_thread(
        spec, slug=project.slug, site=site, connect=http_connector(base_url), workers=workers, password=password,
        stop=stop, on_done=on_done, base_url=base_url,
    )

"""Running a crowd: who comes, through which door, until the budget ends.

A discrete-event scheduler runs every person's visit (a generator from
:mod:`labeling.crowd.doors`) in the order of the times they act, on a clock from
:mod:`labeling.crowd.clocks` (simulated seconds in-process, real ones against a running
server). What the crowd did is kept in a :class:`~labeling.crowd.ledger.Ledger`.

Registered workers are a fixed group who log in and stay (:mod:`labeling.crowd.accounts`);
widget visitors arrive one after another on a few "seats" (pages being visited at the
same time), each a new person with a new address, whose kind is drawn from the crowd's
shares.
"""
import heapq
import itertools
import logging
import random
import threading
import time
from dataclasses import dataclass, field

from labeling.crowd.accounts import crowd_accounts_provision, crowd_people
from labeling.crowd.clocks import RealClock
from labeling.crowd.connectors import http_connector
from labeling.crowd.doors import widget_visit, worker_session
from labeling.crowd.ledger import Ledger
from labeling.crowd.people import KINDS, person_make
from labeling.crowd.transport import HttpTransport

logger = logging.getLogger(__name__)

DEFAULT_SHARES = {"honest": 0.7, "spammer": 0.1, "same_answer": 0.05, "too_fast": 0.05, "colluder": 0.1}


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


class _Agenda:
    """Visits in the order of the times they act next; of two at the same time, the
    one scheduled first."""

    def __init__(self):
        self.queue = []
        self.order = itertools.count()

    def __bool__(self):
        return bool(self.queue)

    def add(self, at, visit):
        heapq.heappush(self.queue, (at, next(self.order), visit))

    def pop(self):
        at, _, visit = heapq.heappop(self.queue)
        return at, visit

    def close(self):
        """Close the visits still waiting."""
        for _, _, visit in self.queue:
            visit.close()


def crowd_run(spec, *, slug, site, connect, clock, workers=None, password=None, ledger=None, on_step=None,
              beat=None, stop=None, max_wall_s=None, origin="http://localhost"):
    """Run the crowd until its budget is spent (or ``on_step(ledger)`` returns
    ``False``, ``stop`` is set, or ``max_wall_s`` real seconds pass). Returns the
    :class:`~labeling.crowd.ledger.Ledger`.

    ``workers``: the registered workers (:func:`~labeling.crowd.accounts.crowd_people`),
    whose accounts exist with ``password``
    (:func:`~labeling.crowd.accounts.crowd_accounts_provision`). ``site``: a
    :class:`SiteAccess` for the widget door, or ``None`` for workers only.
    ``connect(person, origin)`` returns a person's transport.
    """
    rng = random.Random(spec.seed + 1)
    ledger = ledger or Ledger(spec.budget)
    workers = workers or []
    ledger.people.extend(workers)
    agenda, transports = _Agenda(), []
    for person in workers:
        web = connect(person, None)
        transports.append(web)
        visit = worker_session(
            person, web, slug=slug, username=person.username, password=password, ledger=ledger, batch=spec.batch
        )
        agenda.add(rng.uniform(0, 5), visit)
    if site is not None and sum(spec.shares.values()) > 0:
        visitor_numbers = itertools.count()
        for _ in range(spec.visitor_seats):
            agenda.add(rng.uniform(0, 5), _visitor_seat(spec, site, connect, origin, ledger, rng, visitor_numbers))
    try:
        with clock.installed():
            _visits_run(agenda, clock, ledger, beat=beat, stop=stop, on_step=on_step, max_wall_s=max_wall_s)
    finally:
        agenda.close()
        for web in transports:
            ledger.collect_timings(web)
            web.close()
        if site is not None and site.server is not None:
            ledger.collect_timings(site.server)
    return ledger


def _visitor_seat(spec, site, connect, origin, ledger, rng, numbers):
    """One page of ``site`` visited by one new person after another while the budget
    lasts (a visit generator itself); ``numbers`` numbers the visitors of all seats."""
    kinds, weights = list(spec.shares), list(spec.shares.values())
    while ledger.left() > 0:
        number = next(numbers)
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


def _visits_run(agenda, clock, ledger, *, beat, stop, on_step, max_wall_s):
    """Advance the visits of ``agenda`` one step at a time, each at its time on
    ``clock`` (ticking ``beat`` first), until none is left or the run is stopped."""
    wall_start = time.monotonic()
    while agenda:
        at, visit = agenda.pop()
        if not clock.wait_until(at, stop) or (stop is not None and stop.is_set()):
            break
        if beat is not None:
            beat.tick(clock.now())
        try:
            wait = next(visit)
        except StopIteration:
            continue
        agenda.add(clock.now() + max(float(wait), 0.0), visit)
        if on_step is not None and on_step(ledger) is False:
            break
        if max_wall_s is not None and time.monotonic() - wall_start > max_wall_s:
            logger.warning("crowd stopped after %.0f s of wall time", max_wall_s)
            break


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

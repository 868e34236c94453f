"""Widget traffic for the degrade fault tests: visitors that get a challenge, answer it
right (read from the database, as only a test can) and have the token verified, over
real HTTP against a real server, counting every status; then a check that every
answer the server acknowledged is stored exactly once.

Runs inside a Django process pointed at the server's database: the test itself, or a
child (``python -m tests.faults.degrade_client setup|traffic ...``, JSON on stdout) when
that database is a cluster of the test's own.
"""
import itertools
import json
import sys
import threading
import time
from collections import Counter

import requests

HOST = "shop.example"
ENDPOINTS = ("challenge", "answer", "siteverify")


def _with_database(call, patience_s=60):
    """The client's own reads (what the right answer is) wait out a database restart."""
    from django.db import close_old_connections
    from django.db.utils import InterfaceError, OperationalError

    deadline = time.monotonic() + patience_s
    while True:
        try:
            return call()
        except (OperationalError, InterfaceError):
            close_old_connections()
            from django.db import connection

            connection.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _solution(challenge_id):
    from labeling.models import Challenge, ChallengeKind
    from tests.labeling.widget_support import solution

    challenge = Challenge.objects.get(pk=challenge_id)
    return solution(challenge, unknown=True if challenge.kind != ChallengeKind.CHOICE else "1")


class Traffic:
    """``threads`` visitors cycling until :meth:`stop`; statuses per endpoint and the
    acknowledged (200 and passed) challenges are kept."""

    def __init__(self, base_url, sitekey, secret, *, threads=4):
        self.base_url, self.sitekey, self.secret = base_url, sitekey, secret
        self.n_threads = threads
        self.statuses = {name: Counter() for name in ENDPOINTS}
        self.acknowledged = []
        self.acknowledged_at = []
        self.verified = 0
        self.errors = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ips = itertools.count()
        self._threads = []

    def _note(self, endpoint, reply):
        """Count a reply by status; a 503 also by its code (``503 service_unavailable``:
        a backing service is down; anything else is the application's own answer)."""
        key = str(reply.status_code)
        if reply.status_code == 503:
            try:
                body = reply.json()
            except ValueError:
                body = {}
            key += f" {body.get('code') or body.get('error') or 'no-json'}"
        with self._lock:
            self.statuses[endpoint][key] += 1

    def _cycle(self, http):
        n = next(self._ips)
        headers = {"Origin": f"https://{HOST}", "User-Agent": "Mozilla/5.0 (fault test)",
                   "X-Forwarded-For": f"198.51.{n // 250 % 250}.{n % 250 + 1}"}
        reply = http.get(f"{self.base_url}/api/v1/challenge", params={"sitekey": self.sitekey}, headers=headers,
                         timeout=30)
        self._note("challenge", reply)
        if reply.status_code != 200:
            return
        challenge_id = reply.json()["id"]
        body = _with_database(lambda: _solution(challenge_id))
        reply = http.post(f"{self.base_url}/api/v1/challenge/{challenge_id}/answer", json=body, headers=headers,
                          timeout=30)
        self._note("answer", reply)
        if reply.status_code != 200 or not reply.json().get("passed"):
            return
        with self._lock:
            self.acknowledged.append(challenge_id)
            self.acknowledged_at.append(time.time())
        reply = http.post(f"{self.base_url}/api/siteverify", data={"secret": self.secret,
                          "response": reply.json()["token"]}, timeout=30)
        self._note("siteverify", reply)
        if reply.status_code == 200 and reply.json().get("success"):
            with self._lock:
                self.verified += 1

    def _run(self):
        from django.db import connection

        http = requests.Session()
        try:
            while not self._stop.is_set():
                try:
                    self._cycle(http)
                except requests.RequestException as exc:  # a refused or reset connection: counted, not hidden
                    with self._lock:
                        self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    time.sleep(0.2)
        finally:
            connection.close()  # this thread's own database connection

    def start(self):
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(self.n_threads)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def server_errors(self, endpoint, *, allowed=()):
        return {s: n for s, n in self.statuses[endpoint].items() if s.startswith("5") and s not in allowed}

    def report(self):
        return {
            "statuses": {name: dict(counts) for name, counts in self.statuses.items()},
            "acknowledged": self.acknowledged,
            "acknowledged_at": self.acknowledged_at,
            "verified": self.verified,
            "errors": self.errors[:20],
            "n_errors": len(self.errors),
        }


def answers_stored(challenge_ids):
    """For acknowledged challenges: ``(missing, doubled)``, the ids with no stored answer
    and those with an item answered twice."""
    from django.db.models import Count

    from labeling.models import Answer

    refs = [str(pk) for pk in challenge_ids]
    per_ref = Counter()
    doubled = set()
    rows = Answer.objects.filter(task_ref__in=refs).values("task_ref", "item_id").annotate(n=Count("pk"))
    for row in rows:
        per_ref[row["task_ref"]] += 1
        if row["n"] != 1:
            doubled.add(row["task_ref"])
    missing = [ref for ref in refs if per_ref[ref] == 0]
    return missing, sorted(doubled)


def site_setup():
    """A project with gold and unknown items, and a site that serves it."""
    from tests.labeling.widget_support import project_make, site_make

    project = project_make(unknown=3000, gold_per_class=600)  # grids and verify questions retire their control items
    site, secret = site_make(project, min_solve_ms=0)
    return {"project": project.pk, "sitekey": site.sitekey, "secret": secret}


def main(argv):
    import django

    django.setup()
    if argv[0] == "setup":
        print(json.dumps(site_setup()))
        return
    if argv[0] == "traffic":
        base_url, sitekey, secret, seconds = argv[1], argv[2], argv[3], float(argv[4])
        traffic = Traffic(base_url, sitekey, secret).start()
        time.sleep(seconds)
        traffic.stop()
        report = traffic.report()
        missing, doubled = _with_database(lambda: answers_stored(traffic.acknowledged))
        report.update(missing=missing, doubled=doubled)
        print(json.dumps(report))
        return
    raise SystemExit(f"unknown command {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])

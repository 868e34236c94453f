"""What the crowd did, as the crowd saw it."""
from collections import Counter, defaultdict

MAX_ERRORS_KEPT = 50


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

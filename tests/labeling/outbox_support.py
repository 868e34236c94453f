"""A broker double for tests of code that queues tasks through the outbox."""
import pytest


class Broker:
    """Records every task handed to the broker; while ``down`` it refuses them, as a
    broker that cannot be reached does."""

    def __init__(self):
        self.sent = []
        self.down = False

    def send_task(self, name, args=None, kwargs=None, countdown=None, **options):
        if self.down:
            raise ConnectionRefusedError("broker down")
        self.sent.append((name, list(args or []), countdown))

    def args_of(self, task):
        return [args for name, args, _ in self.sent if name == task.name]


@pytest.fixture
def broker(monkeypatch):
    from labeling.celery import app

    fake = Broker()
    monkeypatch.setattr(app, "send_task", fake.send_task)
    return fake

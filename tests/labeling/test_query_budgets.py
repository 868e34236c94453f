"""The answer path's cost, guarded per request, and what runs after its commit.

Budgets count every query a hot request makes through the whole Django stack, with
production's deferred consensus (``CROWDLOOP_CONSENSUS_DEFER_S > 0``) and a warm cache,
leaving out only the ``SAVEPOINT``/``RELEASE`` pairs that the test's own transaction turns
each ``atomic`` block into (in production those are a plain ``BEGIN``/``COMMIT``).
"""
import json
import threading
import traceback
import uuid

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from labeling.models import Answer, Challenge, ChallengeKind, Consensus, Item, ItemStatus, Worker
from labeling.services import control_pool, settling
from tests.labeling.crowd import crowd_project, local_cache, new_key, registered_worker  # noqa: F401
from tests.labeling.outbox_support import broker  # noqa: F401
from tests.labeling.widget_support import HOST, project_make, site_make, solution

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_cache")]

# The answers' budgets include the settling task's outbox row (one INSERT, at most once
# per project per debounce interval, whichever request comes first). A grid or yes/no
# challenge reads its positive and negative control tiles from the pool apart (two reads
# each when the pool's random start wraps around).
BUDGETS = {"next": 10, "worker-answer": 10, "challenge": 20, "widget-answer": 10, "siteverify": 3}


def _queries(call):
    with CaptureQueriesContext(connection) as captured:
        response = call()
    sql = [q["sql"] for q in captured.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]
    return response, sql


@pytest.fixture
def deferred(settings):
    settings.CROWDLOOP_CONSENSUS_DEFER_S = 1.0
    settings.CROWDLOOP_CONTROL_POOL_REFRESH_S = 30  # production's rhythm, not every request


def _visitor():
    return Client(HTTP_ORIGIN=f"https://{HOST}", HTTP_USER_AGENT="Mozilla/5.0 (pytest)", REMOTE_ADDR="203.0.113.9")


def _widget_cycle(http, site, secret):
    response, issue_sql = _queries(lambda: http.get("/api/v1/challenge", {"sitekey": site.sitekey}))
    assert response.status_code == 200, response.content
    body = response.json()
    challenge = Challenge.objects.get(pk=body["id"])
    data = solution(challenge, unknown=True if challenge.kind != ChallengeKind.CHOICE else "1")
    response, answer_sql = _queries(
        lambda: http.post(f"/api/v1/challenge/{body['id']}/answer", json.dumps(data), content_type="application/json")
    )
    assert response.status_code == 200 and response.json()["passed"], response.content
    token = response.json()["token"]
    response, verify_sql = _queries(lambda: http.post("/api/siteverify", {"secret": secret, "response": token}))
    assert response.json()["success"]
    return issue_sql, answer_sql, verify_sql


def test_the_widget_door_stays_within_its_query_budget(deferred):
    project = project_make(unknown=80)
    site, secret = site_make(project, min_solve_ms=0)
    http = _visitor()
    _widget_cycle(http, site, secret)  # warm the caches
    for _ in range(4):
        issue_sql, answer_sql, verify_sql = _widget_cycle(http, site, secret)
        assert len(issue_sql) <= BUDGETS["challenge"], "\n".join(issue_sql)
        assert len(answer_sql) <= BUDGETS["widget-answer"], "\n".join(answer_sql)
        assert len(verify_sql) <= BUDGETS["siteverify"], "\n".join(verify_sql)
    # Answers never write the control rows that every challenge shares.
    assert Answer.objects.filter(is_control=True).exists()
    assert set(Item.objects.filter(known_label__isnull=False).values_list("answer_count", flat=True)) == {0}


def test_the_worker_door_stays_within_its_query_budget(deferred):
    project, truth = crowd_project(n_unknown=60, n_gold=0)
    worker = registered_worker("w1")
    client = Client()
    client.force_login(worker.user)
    url = f"/api/v1/projects/{project.slug}"
    control_pool.pool_pick(project, worker=None, n=1)  # the pool's periodic refresh, done
    for round_ in range(4):
        response, next_sql = _queries(lambda: client.get(f"{url}/next", {"n": 1}))
        task = response.json()["items"][0]
        body = json.dumps({"answers": [{"id": task["id"], "key": uuid.uuid4().hex, "label": "a", "time_ms": 2000}]})
        response, answer_sql = _queries(
            lambda body=body: client.post(f"{url}/answers", body, content_type="application/json")
        )
        assert response.json()["results"][0]["status"] == "stored"
        if round_:
            assert len(next_sql) <= BUDGETS["next"], "\n".join(next_sql)
            assert len(answer_sql) <= BUDGETS["worker-answer"], "\n".join(answer_sql)


def test_deferred_consensus_marks_items_and_one_settling_brings_them_in(deferred, broker):
    """Answers only insert; the items wait, marked, until the debounced settling task,
    queued once per interval, recomputes them; the lag it saw is kept for the dashboard."""
    project, truth = crowd_project(n_unknown=6, n_gold=0)
    labels = {label.name: label for label in project.label_classes.all()}
    items = list(project.items.order_by("id")[:3])
    from labeling.services.answers import AnswerInput, answers_record

    for worker in (registered_worker("a"), registered_worker("b")):
        answers_record(
            worker=worker, source="worker",
            inputs=[AnswerInput(item=item, label_id=labels[truth[item.text]].pk, task_ref=new_key()) for item in items],
        )
    assert not Consensus.objects.filter(item__in=items, n_answers__gt=0).exists()
    marked = Item.objects.filter(project=project, consensus_stale_since__isnull=False)
    assert set(marked) == set(items)
    waiting, _ = settling.consensus_lag(project.pk)
    assert waiting >= 0
    assert settling.consensus_settle(project.pk) == 3
    assert list(marked.values_list("pk", "consensus_stale_since")) == []
    for item in Item.objects.filter(pk__in=[i.pk for i in items]):
        assert item.status == ItemStatus.LABELED
    assert settling.consensus_lag(project.pk)[1] is not None


def test_the_settling_task_is_queued_once_per_interval(deferred, broker, django_capture_on_commit_callbacks):
    from labeling import tasks

    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(5):
            settling.consensus_due(4242, [1, 2, 3])
    assert broker.args_of(tasks.consensus_settle_task) == [[4242]]
    assert 0 < broker.sent[0][2] <= 1.0  # the debounce interval


def test_a_settling_the_broker_refuses_is_sent_when_it_is_back(deferred, broker, django_capture_on_commit_callbacks):
    from labeling import tasks
    from labeling.services.outbox import outbox_flush

    broker.down = True
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            settling.consensus_due(77, [1])
    assert broker.sent == []
    broker.down = False
    assert outbox_flush() == (1, 0)  # one settling for the interval, kept until the broker took it
    assert broker.args_of(tasks.consensus_settle_task) == [[77]]


# --- Both doors at once on PostgreSQL ---------------------------------------------------------


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_visitors_and_workers_at_once_lose_nothing_double_nothing_and_deadlock_never(postgres, settings):
    """Sixteen widget visitors and eight registered workers (threads, each with its own
    connection) answer at once on PostgreSQL, with consensus settled after each commit:
    no request fails (a deadlock would be a 500), every acknowledged answer is stored
    exactly once, and no item passes its answer cap."""
    settings.CROWDLOOP_RATE_LIMITS = {k: (h * 1000, w) for k, (h, w) in settings.CROWDLOOP_RATE_LIMITS.items()}
    project = project_make(unknown=150, gold_per_class=10)
    project.open_to_all_workers = True
    project.save()
    site, secret = site_make(project, min_solve_ms=0, control_items=2)
    workers = [registered_worker(f"w{i}") for i in range(8)]
    acknowledged, errors = [], []
    lock = threading.Lock()
    start = threading.Barrier(24)

    def visitor(index):
        try:
            http = Client(
                HTTP_ORIGIN=f"https://{HOST}", HTTP_USER_AGENT=f"bot {index}", REMOTE_ADDR=f"198.51.100.{index + 1}"
            )
            start.wait(timeout=60)
            for _ in range(6):
                response = http.get("/api/v1/challenge", {"sitekey": site.sitekey})
                if response.status_code == 503:
                    break
                assert response.status_code == 200, response.content
                body = response.json()
                challenge = Challenge.objects.get(pk=body["id"])
                data = solution(challenge, unknown=True if challenge.kind != ChallengeKind.CHOICE else "1")
                answer = http.post(
                    f"/api/v1/challenge/{body['id']}/answer", json.dumps(data), content_type="application/json"
                )
                assert answer.status_code == 200, answer.content
                if answer.json()["passed"]:
                    with lock:
                        acknowledged.append(("widget", body["id"]))
        except Exception:  # noqa: BLE001 -- reported in the main thread
            errors.append(traceback.format_exc()[-3000:])
        finally:
            connection.close()

    def worker_loop(worker):
        try:
            client = Client()
            client.force_login(worker.user)
            url = f"/api/v1/projects/{project.slug}"
            start.wait(timeout=60)
            for _ in range(8):
                tasks_ = client.get(f"{url}/next", {"n": 3}).json()["items"]
                if not tasks_:
                    break
                body = [{"id": t["id"], "key": new_key(), "label": "1", "time_ms": 2500} for t in tasks_]
                response = client.post(f"{url}/answers", json.dumps({"answers": body}), content_type="application/json")
                assert response.status_code == 200, response.content
                with lock:
                    acknowledged.extend(("worker", r["key"]) for r in response.json()["results"] if r["status"] == "stored")
        except Exception:  # noqa: BLE001 -- reported in the main thread
            errors.append(traceback.format_exc()[-3000:])
        finally:
            connection.close()

    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(16)]
    threads += [threading.Thread(target=worker_loop, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not errors, errors[:3]
    assert not any(thread.is_alive() for thread in threads)
    widget_passed = {ref for door, ref in acknowledged if door == "widget"}
    worker_keys = {ref for door, ref in acknowledged if door == "worker"}
    assert widget_passed and worker_keys
    stored_refs = set(Answer.objects.values_list("task_ref", flat=True))
    assert widget_passed <= stored_refs
    assert worker_keys <= stored_refs
    assert Answer.objects.filter(source="worker").count() == len(worker_keys)
    assert Answer.objects.values("worker", "item", "task_ref").distinct().count() == Answer.objects.count()
    for item in Item.objects.filter(project=project, known_label__isnull=True):
        counted = item.answers.filter(is_control=False).count()
        assert counted == item.answer_count <= project.max_answers_per_item
    assert sum(Worker.objects.filter(kind="registered").values_list("answer_total", flat=True)) == len(worker_keys)

"""Query budgets of the hot requests: the answer path's cost is guarded per request,
counting every query the request makes, including work it runs after its commit."""
import json
import uuid

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from labeling.models import Challenge, ChallengeKind
from tests.labeling.crowd import crowd_project, local_cache, registered_worker  # noqa: F401
from tests.labeling.widget_support import HOST, project_make, site_make, solution

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_cache")]


def _count(call):
    with CaptureQueriesContext(connection) as queries:
        response = call()
    return response, len(queries), [q["sql"][:160] for q in queries.captured_queries]


@pytest.mark.parametrize("defer", [0, 1])
def test_probe_widget(settings, defer):
    settings.CROWDLOOP_CONSENSUS_DEFER_S = defer
    project = project_make(unknown=60)
    site, secret = site_make(project, min_solve_ms=0)
    http = Client(HTTP_ORIGIN=f"https://{HOST}", HTTP_USER_AGENT="Mozilla/5.0 (pytest)", REMOTE_ADDR="203.0.113.9")
    for round_ in range(3):
        response, n, sql = _count(lambda: http.get("/api/v1/challenge", {"sitekey": site.sitekey}))
        assert response.status_code == 200, response.content
        print("challenge", n)
        if round_ == 2:
            print("\n".join(sql))
        body = response.json()
        challenge = Challenge.objects.get(pk=body["id"])
        data = solution(challenge, unknown=True if challenge.kind != ChallengeKind.CHOICE else "1")
        response, n, sql = _count(lambda: http.post(f"/api/v1/challenge/{body['id']}/answer", json.dumps(data), content_type="application/json"))
        print("answer", challenge.kind, n, response.status_code)
        if round_ == 2:
            print("\n".join(sql))
        token = response.json().get("token")
        response, n, sql = _count(lambda: http.post("/api/siteverify", {"secret": secret, "response": token}))
        print("siteverify", n, response.json())


@pytest.mark.parametrize("defer", [0, 1])
def test_probe_worker(settings, defer):
    settings.CROWDLOOP_CONSENSUS_DEFER_S = defer
    project, truth = crowd_project(n_unknown=60)
    worker = registered_worker("w1")
    client = Client()
    client.force_login(worker.user)
    for round_ in range(3):
        response, n, sql = _count(lambda: client.get(f"/api/v1/projects/{project.slug}/next", {"n": 1}))
        print("next", n, response.status_code)
        if round_ == 2:
            print("\n".join(sql))
        task = response.json()["items"][0]
        response, n, sql = _count(lambda: client.post(
            f"/api/v1/projects/{project.slug}/answers",
            json.dumps({"answers": [{"id": task["id"], "key": uuid.uuid4().hex, "label": "a", "time_ms": 2000}]}),
            content_type="application/json"))
        print("answer", n, response.status_code, response.content[:200])
        if round_ == 2:
            print("\n".join(sql))

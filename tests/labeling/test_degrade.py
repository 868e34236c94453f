"""Degrade, don't fail: Redis unreachable keeps the widget answering; a database that
cannot be reached answers JSON 503 with Retry-After; the file cache keeps its counters."""
import json
import socket
import threading

import pytest
from django.db import OperationalError
from django.test import Client, RequestFactory

from labeling.cache import REDIS_DOWN, FileCache, ResilientRedisCache
from labeling.models import Answer, Challenge, ChallengeKind
from labeling.outages import server_error
from labeling.services import ratelimit
from labeling.services.ratelimit import ratelimit_hit
from tests.labeling.widget_support import HOST, fresh_cache, project_make, site_make, solution  # noqa: F401


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def redis_unreachable(settings):
    """Every cache alias on a Redis that refuses connections."""
    settings.CACHES = {
        "default": {
            "BACKEND": "labeling.cache.ResilientRedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    REDIS_DOWN._until = 0.0
    ratelimit.LOCAL_COUNTERS.clear()
    yield settings
    REDIS_DOWN._until = 0.0
    ratelimit.LOCAL_COUNTERS.clear()


def test_an_unreachable_redis_reads_as_a_miss_and_skips_writes(redis_unreachable):
    from django.core.cache import caches

    cache = caches["default"]

    assert isinstance(cache, ResilientRedisCache)
    cache.set("k", 1)
    assert cache.get("k", "default") == "default"
    assert cache.get_many(["k"]) == {}
    assert cache.add("k", 1) is False
    with pytest.raises(ValueError, match="not found"):
        cache.incr("k")
    cache.delete("k")
    assert REDIS_DOWN.is_down()  # the next calls skip Redis for a moment


def test_rate_limits_count_per_process_while_redis_is_unreachable(redis_unreachable):
    assert [ratelimit_hit("t", "k", 2, 10, now=100.0) for _ in range(3)] == [True, True, False]
    assert ratelimit_hit("t", "k", 2, 10, now=110.0)  # the window still rolls over


@pytest.mark.services
def test_the_redis_limiter_sets_an_expiry_with_its_count(redis_url, settings):
    import uuid

    from django.core.cache import caches

    settings.CACHES = {
        "default": {"BACKEND": "labeling.cache.ResilientRedisCache", "LOCATION": redis_url, "KEY_PREFIX": uuid.uuid4().hex}
    }
    assert ratelimit_hit("ttl-test", "k", 5, 60, now=1200.0)
    cache = caches["default"]
    client = cache._cache.get_client(write=True)
    keys = client.keys(f"{cache.key_prefix}*ttl-test*")
    assert len(keys) == 1 and 0 < client.ttl(keys[0]) <= 65 and int(client.get(keys[0])) == 1


@pytest.mark.django_db
def test_challenge_answer_and_siteverify_work_while_redis_is_unreachable(redis_unreachable):
    project = project_make(unknown=20)
    site, secret = site_make(project, min_solve_ms=0)
    http = Client(HTTP_ORIGIN=f"https://{HOST}", HTTP_USER_AGENT="Mozilla/5.0 (pytest)", REMOTE_ADDR="203.0.113.9")
    for _ in range(2):
        response = http.get("/api/v1/challenge", {"sitekey": site.sitekey})
        assert response.status_code == 200, response.content
        body = response.json()
        challenge = Challenge.objects.get(pk=body["id"])
        data = solution(challenge, unknown=True if challenge.kind != ChallengeKind.CHOICE else "1")
        response = http.post(f"/api/v1/challenge/{body['id']}/answer", json.dumps(data), content_type="application/json")
        assert response.status_code == 200 and response.json()["passed"], response.content
        token = response.json()["token"]
        verify = http.post("/api/siteverify", {"secret": secret, "response": token})
        assert verify.status_code == 200 and verify.json()["success"], verify.content
        replay = http.post("/api/siteverify", {"secret": secret, "response": token})
        assert replay.json()["error-codes"] == ["timeout-or-duplicate"]  # single use, from the database
    assert Answer.objects.filter(item__project=project, is_control=False).exists()


@pytest.mark.django_db
def test_a_database_error_in_the_widget_answers_503_with_retry_after(monkeypatch):
    def restarting(**kwargs):
        raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr("labeling.widget_api.challenge_issue", restarting)
    monkeypatch.setattr("labeling.widget_api.challenge_verify", lambda **kwargs: restarting())
    http = Client()
    response = http.get("/api/v1/challenge", {"sitekey": "x"})
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response.json()["code"] == "service_unavailable" and response["Access-Control-Allow-Origin"] == "*"
    verify = http.post("/api/siteverify", {"secret": "s", "response": "t"})
    assert verify.status_code == 503 and verify.json()["success"] is False
    assert verify.json()["error-codes"] == ["service-unavailable"]


@pytest.mark.django_db
def test_an_api_view_that_loses_its_database_answers_json_503(monkeypatch):
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    from labeling.services.projects import project_create

    owner = get_user_model().objects.create_user("owner", password="pw-owner-1")
    project = project_create(name="Pets", labels=["cat", "dog"], owner=owner)

    def restarting(**kwargs):
        raise OperationalError("the database system is starting up")

    monkeypatch.setattr("labeling.api.import_job_create", restarting)
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(owner)
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("a.csv", b"text\nhello\n")
    response = client.post(f"/api/v1/projects/{project.slug}/imports", {"file": upload}, format="multipart")
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response["Content-Type"] == "application/json" and response.json()["code"] == "service_unavailable"


def test_an_outage_raised_before_any_view_is_a_503_and_anything_else_a_500():
    request = RequestFactory().get("/projects/")
    try:
        raise OperationalError("connection refused")
    except OperationalError:
        response = server_error(request)
    assert response.status_code == 503 and response["Retry-After"]
    try:
        raise KeyError("a bug")
    except KeyError:
        response = server_error(request)
    assert response.status_code == 500


def file_cache(tmp_path, **options):
    return FileCache(str(tmp_path), {"OPTIONS": options})


def test_the_counter_cache_never_culls_a_live_counter(tmp_path):
    cache = file_cache(tmp_path, MAX_ENTRIES=5, CULL_EVERY_S=0, CULL_EXPIRED_ONLY=True)
    assert cache.count("mine", 60) == 1
    for i in range(50):
        cache.count(f"other-{i}", 60)
    assert cache.count("mine", 60) == 2


def test_the_counter_cache_drops_expired_counters(tmp_path):
    cache = file_cache(tmp_path, CULL_EVERY_S=0, CULL_EXPIRED_ONLY=True)
    cache.count("old", -1)  # born expired
    cache.count("new", 60)
    assert len(cache._list_cache_files()) == 1
    assert cache.count("old", 60) == 1  # an expired counter starts again


def test_a_counter_is_exact_under_concurrent_hits(tmp_path):
    cache = file_cache(tmp_path, CULL_EXPIRED_ONLY=True)
    barrier = threading.Barrier(8)

    def hammer():
        barrier.wait()
        for _ in range(25):
            cache.count("shared", 60)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.count("shared", 60) == 201


def test_the_file_cache_lists_its_folder_at_most_once_per_interval(tmp_path, monkeypatch):
    cache = file_cache(tmp_path, CULL_EVERY_S=3600)
    listings = []
    original = cache._list_cache_files
    monkeypatch.setattr(cache, "_list_cache_files", lambda: listings.append(1) or original())
    for i in range(100):
        cache.set(f"k{i}", i)
        cache.count(f"c{i}", 60)
    assert len(listings) == 1 and cache.get("k99") == 99


def test_the_embedded_default_counts_rate_limits_in_a_cache_of_their_own(settings, tmp_path):
    settings.CACHES = {
        "default": {"BACKEND": "labeling.cache.FileCache", "LOCATION": str(tmp_path / "cache")},
        "ratelimit": {
            "BACKEND": "labeling.cache.FileCache", "LOCATION": str(tmp_path / "rl"), "OPTIONS": {"CULL_EXPIRED_ONLY": True},
        },
    }
    assert [ratelimit_hit("t", "k", 2, 10, now=100.0) for _ in range(3)] == [True, True, False]
    assert len(list((tmp_path / "rl").iterdir())) == 1 and not (tmp_path / "cache").exists()

"""Challenges: what a visitor is shown, how answers are judged, what becomes a label."""
import json
import random
import re
from datetime import timedelta

import pytest
from django.test import Client, RequestFactory
from django.utils import timezone

from labeling.models import (
    Answer,
    Challenge,
    ChallengeItem,
    ChallengeKind,
    ChallengeStatus,
    Item,
    ItemStatus,
    KnownLabel,
    Lease,
    PseudoLabel,
    Site,
    Worker,
    WorkerKind,
    WorkerStatus,
)
from labeling.services import challenges, selection
from labeling.services.challenge_answers import challenge_answer
from labeling.services.challenges import (
    ChallengeRefused,
    ClientInfo,
    challenge_issue,
)
from labeling.services.ratelimit import client_ip, ratelimit_hit
from labeling.services.sites import site_get_by_secret, site_secret_rotate
from tests.labeling.widget_support import (  # noqa: F401
    HOST,
    VISITOR,
    fresh_cache,
    project_make,
    site_make,
    solution,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def project():
    return project_make()


@pytest.fixture
def site(project):
    return site_make(project)[0]


def issue(site, kind=None, client=VISITOR, now=None):
    return challenge_issue(sitekey=site.sitekey, client=client, kind=kind, now=now)


def answer(challenge, body, *, after_s=5, client=VISITOR):
    return challenge_answer(
        challenge_id=str(challenge.pk), data=body, client=client, now=challenge.issued_at + timedelta(seconds=after_s)
    )


def http():
    return Client(HTTP_ORIGIN=f"https://{HOST}", HTTP_USER_AGENT=VISITOR.user_agent, REMOTE_ADDR=VISITOR.ip)


# --- Issuing ---------------------------------------------------------------------------------------


def test_a_grid_has_nine_tiles_and_control_tiles_at_random_positions():
    site = site_make(project_make(unknown=60))[0]
    challenge = issue(site, ChallengeKind.GRID)
    tiles = list(challenge.tiles.all())
    controls = [tile for tile in tiles if tile.is_control]
    assert len(tiles) == 9 and len(controls) == 2
    unknown_ids = {tile.item_id for tile in tiles if not tile.is_control}
    leased = set(Lease.objects.filter(worker=challenge.worker).values_list("item_id", flat=True))
    assert unknown_ids == leased
    assert Worker.objects.get(pk=challenge.worker_id).kind == WorkerKind.VISITOR
    positions = {tuple(tile.is_control for tile in issue(site, ChallengeKind.GRID).tiles.all()) for _ in range(6)}
    assert len(positions) > 1, "control tiles must not sit at fixed positions"


def _grid_positives(site, n, rng):
    """Positive control tiles of ``n`` grids, each issued to a visitor of its own."""
    counts = []
    for i in range(n):
        client = ClientInfo(ip=f"198.18.{i // 200}.{i % 200 + 1}", user_agent="ua", hostname=HOST)
        challenge = challenge_issue(sitekey=site.sitekey, client=client, kind=ChallengeKind.GRID, rng=rng)
        tiles = [tile for tile in challenge.tiles.all() if tile.is_control]
        known = selection.control_label_of([tile.item for tile in tiles])
        counts.append(sum(known[tile.item_id] == challenge.target_label_id for tile in tiles))
    return counts


def test_a_grids_target_is_not_the_label_of_a_control_tile_by_construction():
    project = project_make(gold_per_class=50, unknown=250)  # a grid's controls retire: 2 per grid
    site = site_make(project)[0]
    counts = _grid_positives(site, 60, random.Random(5))
    # Each control tile is a positive with probability 1/2, whatever the target.
    assert len(counts) == 60 and counts.count(0) >= 6, "a grid may have no positive control tile at all"
    assert counts.count(2) >= 6
    assert 0.35 < sum(counts) / (2 * len(counts)) < 0.65


def test_a_grid_without_a_positive_control_is_passed_by_selecting_none_of_them():
    project = project_make(gold_per_class=20, unknown=250)
    site = site_make(project)[0]
    rng = random.Random(11)
    for i in range(40):
        client = ClientInfo(ip=f"198.18.9.{i + 1}", user_agent="ua", hostname=HOST)
        challenge = challenge_issue(sitekey=site.sitekey, client=client, kind=ChallengeKind.GRID, rng=rng)
        tiles = [tile for tile in challenge.tiles.all() if tile.is_control]
        known = selection.control_label_of([tile.item for tile in tiles])
        if all(known[tile.item_id] != challenge.target_label_id for tile in tiles):
            break
    else:
        pytest.fail("no grid without a positive control tile in 40")
    outcome = challenge_answer(
        challenge_id=str(challenge.pk), data={"selected": []}, client=client,
        now=challenge.issued_at + timedelta(seconds=5),
    )
    assert outcome.passed


def test_verify_controls_are_positives_or_negatives_for_the_proposed_label_at_random():
    project = project_make(gold_per_class=60, unknown=100)  # each verify retires its controls
    site = site_make(project)[0]
    label = project.label_classes.get(name="2")
    items = list(Item.objects.filter(project=project, known_label__isnull=True))
    for item in items:
        PseudoLabel.objects.create(item=item, label=label, confidence=0.95, source="propagation")
    Item.objects.filter(pk__in=[item.pk for item in items]).update(status=ItemStatus.PSEUDO_LABELED)
    rng = random.Random(3)
    positives = []
    for i in range(30):
        client = ClientInfo(ip=f"198.18.7.{i + 1}", user_agent="ua", hostname=HOST)
        challenge = challenge_issue(sitekey=site.sitekey, client=client, kind=ChallengeKind.VERIFY, rng=rng)
        tiles = [tile for tile in challenge.tiles.all() if tile.is_control]
        known = selection.control_label_of([tile.item for tile in tiles])
        positives += [known[tile.item_id] == label.pk for tile in tiles]
    assert 0.3 < sum(positives) / len(positives) < 0.7


@pytest.mark.parametrize("kind", [ChallengeKind.GRID, ChallengeKind.CHOICE, ChallengeKind.VERIFY])
def test_the_payload_shows_no_label_gold_flag_database_id_or_file_name(project, site, kind):
    if kind == ChallengeKind.VERIFY:
        pseudo = Item.objects.filter(project=project, known_label__isnull=True)[:4]
        for item in pseudo:
            PseudoLabel.objects.create(
                item=item, label=project.label_classes.first(), confidence=0.9, source="propagation"
            )
        Item.objects.filter(pk__in=[item.pk for item in pseudo]).update(status=ItemStatus.PSEUDO_LABELED)
    challenge = issue(site, kind)
    payload = challenges.challenge_payload(challenge, image_url=lambda c, p: f"https://crowdloop.test/i/{c}/{p}?sig=x")
    response = http().get("/api/v1/challenge", {"sitekey": site.sitekey})
    assert response.status_code == 200
    for data in (payload, response.json()):
        assert set(data) <= {"id", "kind", "prompt", "items", "labels", "expires_at"}
        text = json.dumps(data)
        for tile in ChallengeItem.objects.filter(challenge_id=data["id"]).select_related("item"):
            entry = next(entry for entry in data["items"] if entry["id"] == tile.public_id)
            assert set(entry) == {"id", "image"}
            assert tile.public_id != str(tile.item_id) and not re.fullmatch(r"\d+", tile.public_id)
            assert tile.item.checksum not in text and tile.item.checksum[:16] not in text
            assert tile.item.source_name not in text and tile.item.image.name not in text
            assert not re.search(rf"[/=\"]{tile.item_id}[/?\"&]", entry["image"])
        assert not re.search(r"control|gold|known|correct", data["prompt"], re.IGNORECASE)
    assert ("labels" in payload) == (kind == ChallengeKind.CHOICE)


def test_a_signed_image_url_serves_the_png_only_for_its_challenge_until_it_expires(site):
    response = http().get("/api/v1/challenge", {"sitekey": site.sitekey})
    url = response.json()["items"][0]["image"]
    path = url.split("://", 1)[1].split("/", 1)[1]
    image = http().get("/" + path)
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    assert image.content.startswith(b"\x89PNG")
    assert image["Access-Control-Allow-Origin"] == "*"
    other = http().get("/api/v1/challenge", {"sitekey": site.sitekey}).json()
    forged = "/" + path.replace(response.json()["id"], other["id"])
    assert http().get(forged).status_code == 404
    assert http().get("/" + path.split("?")[0] + "?sig=" + "0" * 32).status_code == 404
    Challenge.objects.filter(pk=response.json()["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert http().get("/" + path).status_code == 404


def test_text_projects_send_short_texts_inline():
    site = site_make(project_make(data_kind="text", name="Reviews"))[0]
    data = http().get("/api/v1/challenge", {"sitekey": site.sitekey}).json()
    assert data["items"] and all(set(entry) == {"id", "text"} for entry in data["items"])
    assert all(entry["text"].startswith("a short text") for entry in data["items"])


def test_verify_is_served_for_pseudo_labeled_items_proposing_their_pseudo_label(project, site):
    label = project.label_classes.get(name="2")
    items = list(Item.objects.filter(project=project, known_label__isnull=True)[:3])
    for item in items:
        PseudoLabel.objects.create(item=item, label=label, confidence=0.95, source="propagation")
    Item.objects.filter(pk__in=[item.pk for item in items]).update(status=ItemStatus.PSEUDO_LABELED)
    challenge = issue(site, ChallengeKind.VERIFY)
    unknown = [tile for tile in challenge.tiles.all() if not tile.is_control]
    assert {tile.item_id for tile in unknown} == {item.pk for item in items}
    assert {tile.proposed_label_id for tile in challenge.tiles.all()} == {label.pk}
    assert "“2”" in challenges.challenge_payload(challenge, image_url=lambda c, p: "")["prompt"]


def test_unknown_or_disallowed_requests_get_clear_errors(site):
    assert http().get("/api/v1/challenge", {"sitekey": "nope"}).json()["error"] == "invalid-sitekey"
    evil = Client(HTTP_ORIGIN="https://evil.example", REMOTE_ADDR="198.51.100.1")
    response = evil.get("/api/v1/challenge", {"sitekey": site.sitekey})
    assert response.status_code == 403 and response.json()["error"] == "hostname-not-allowed"
    empty = site_make(None)[0]
    response = http().get("/api/v1/challenge", {"sitekey": empty.sitekey})
    assert response.status_code == 503 and response.json()["error"] == "no-challenge-available"


# --- Answering ---------------------------------------------------------------------------------------


def test_answers_from_a_failed_challenge_are_kept_as_evidence_but_never_become_labels(site):
    challenge = issue(site, ChallengeKind.GRID)
    outcome = answer(challenge, solution(challenge, right=False, unknown=True))
    assert not outcome.passed and outcome.token is None
    assert Answer.objects.count() == 0
    assert set(Item.objects.values_list("answer_count", flat=True)) == {0}
    assert all(tile.response is not None for tile in challenge.tiles.all())
    challenge.refresh_from_db()
    assert challenge.status == ChallengeStatus.FAILED
    assert not Lease.objects.filter(worker=challenge.worker, expires_at__gt=challenge.answered_at).exists()


def test_a_solve_faster_than_the_sites_minimum_fails(site):
    challenge = issue(site, ChallengeKind.GRID)
    outcome = answer(challenge, solution(challenge), after_s=0.5)
    assert not outcome.passed and outcome.reason == "too-fast" and Answer.objects.count() == 0


def test_a_passed_grid_records_each_unknown_tile_once_and_a_second_post_is_refused(
    site, django_capture_on_commit_callbacks
):
    challenge = issue(site, ChallengeKind.GRID, now=timezone.now() - timedelta(seconds=5))
    body = solution(challenge, unknown=True)
    with django_capture_on_commit_callbacks(execute=True):
        response = http().post(f"/api/v1/challenge/{challenge.pk}/answer", body, content_type="application/json")
    assert response.status_code == 200
    result = response.json()
    assert result["passed"] is True and result["token"] and result["expires_in"] == 120
    tiles = list(challenge.tiles.all())
    answers = Answer.objects.filter(task_ref=str(challenge.pk))
    unknown = answers.filter(is_control=False)
    assert unknown.count() == sum(not tile.is_control for tile in tiles)
    assert set(unknown.values_list("verdict", flat=True)) == {True}
    assert set(unknown.values_list("label_id", flat=True)) == {challenge.target_label_id}
    assert set(answers.filter(is_control=True).values_list("correct", flat=True)) == {True}
    assert set(answers.values_list("source", flat=True)) == {"widget"}
    again = http().post(f"/api/v1/challenge/{challenge.pk}/answer", body, content_type="application/json")
    assert again.status_code == 409 and again.json()["error"] == "already-answered"
    assert Answer.objects.count() == answers.count() == len(tiles)
    site.refresh_from_db()
    assert site.challenges_passed == 1


def test_an_unselected_unknown_grid_tile_is_a_rejection_that_is_not_a_vote(site):
    challenge = issue(site, ChallengeKind.GRID)
    assert answer(challenge, solution(challenge, unknown=False)).passed
    unknown = Answer.objects.filter(is_control=False)
    assert unknown.exists() and set(unknown.values_list("verdict", flat=True)) == {False}


def test_a_passed_choice_records_the_chosen_labels_without_verdict(site):
    challenge = issue(site, ChallengeKind.CHOICE)
    outcome = answer(challenge, solution(challenge, unknown="3"))
    assert outcome.passed
    unknown = Answer.objects.filter(is_control=False).select_related("label")
    assert unknown.count() == 2
    assert {(row.label.name, row.verdict) for row in unknown} == {("3", None)}


def test_a_passed_verify_records_yes_and_no_on_the_proposed_label(project, site):
    label = project.label_classes.get(name="1")
    items = list(Item.objects.filter(project=project, known_label__isnull=True)[:2])
    for item in items:
        PseudoLabel.objects.create(item=item, label=label, confidence=0.95, source="model")
    Item.objects.filter(pk__in=[item.pk for item in items]).update(status=ItemStatus.PSEUDO_LABELED)
    challenge = issue(site, ChallengeKind.VERIFY)
    body = solution(challenge)
    unknown_ids = [tile.public_id for tile in challenge.tiles.all() if not tile.is_control]
    body["answers"][unknown_ids[0]], body["answers"][unknown_ids[1]] = True, False
    assert answer(challenge, body).passed
    rows = {row.verdict for row in Answer.objects.filter(is_control=False)}
    assert rows == {True, False}
    assert set(Answer.objects.filter(is_control=False).values_list("label_id", flat=True)) == {label.pk}


def test_pass_share_lets_a_site_forgive_one_wrong_control(project):
    site = site_make(project, control_items=4, pass_share=0.75)[0]
    challenge = issue(site, ChallengeKind.CHOICE)
    body = solution(challenge)
    control = next(tile for tile in challenge.tiles.select_related("item") if tile.is_control)
    truth = KnownLabel.objects.get(item=control.item).label.name
    body["answers"][control.public_id] = next(name for name in ("1", "2", "3") if name != truth)
    assert answer(challenge, body).passed


@pytest.mark.parametrize(
    "body",
    [[], {"selected": "x"}, {"selected": ["nope"]}, {"selected": [1, 2]}, {"selected": ["a"] * 100}, "text"],
)
def test_malformed_answers_are_refused_and_leave_the_challenge_open(site, body):
    challenge = issue(site, ChallengeKind.GRID)
    with pytest.raises(ChallengeRefused, match="Malformed"):
        answer(challenge, body)
    challenge.refresh_from_db()
    assert challenge.status == ChallengeStatus.ISSUED


@pytest.mark.parametrize("raw", [b"{", b"\xff\xfe", b"[1, 2]", b'{"answers": {"x": 1}}', b"null"])
def test_garbage_answer_bodies_are_4xx_never_5xx(site, raw):
    challenge = issue(site, ChallengeKind.CHOICE)
    for target in (str(challenge.pk), "not-a-challenge", "0" * 32):
        response = http().post(f"/api/v1/challenge/{target}/answer", raw, content_type="application/json")
        assert 400 <= response.status_code < 500


def test_an_expired_challenge_cannot_be_answered(site):
    challenge = issue(site, ChallengeKind.GRID)
    with pytest.raises(ChallengeRefused, match="expired"):
        answer(challenge, solution(challenge), after_s=301)


def test_a_failed_answer_over_http_comes_with_the_next_challenge(site):
    challenge = issue(site, ChallengeKind.GRID)
    Challenge.objects.filter(pk=challenge.pk).update(issued_at=timezone.now() - timedelta(seconds=5))
    response = http().post(
        f"/api/v1/challenge/{challenge.pk}/answer", solution(challenge, right=False), content_type="application/json"
    )
    data = response.json()
    assert data["passed"] is False and data["token"] is None and data["next"]["id"] != str(challenge.pk)
    assert set(data) == {"passed", "token", "reason", "next"}, "a miss is never explained tile by tile"


# --- Abuse ---------------------------------------------------------------------------------------


def test_a_visitor_who_keeps_failing_gets_more_control_tiles_then_none(site, settings):
    settings.CROWDLOOP_VISITOR_MAX_STRIKES = 4
    sizes = []
    for _ in range(4):
        challenge = issue(site, ChallengeKind.CHOICE)
        sizes.append(sum(tile.is_control for tile in challenge.tiles.all()))
        assert not answer(challenge, solution(challenge, right=False)).passed
    assert sizes == [2, 3, 4, 5]
    with pytest.raises(ChallengeRefused, match="Too many failed") as refused:
        issue(site)
    assert refused.value.code == "visitor-blocked"
    other = ClientInfo(ip="198.51.100.9", user_agent=VISITOR.user_agent, hostname=HOST)
    assert issue(site, ChallengeKind.CHOICE, client=other)


def test_answering_faster_than_humans_counts_double(site):
    challenge = issue(site, ChallengeKind.GRID)
    answer(challenge, solution(challenge), after_s=0.2)
    assert challenges.visitor_strikes(challenge.worker, now=timezone.now() + timedelta(seconds=1)) == 2


def test_a_banned_visitor_gets_no_challenge(site):
    challenge = issue(site)
    Worker.objects.filter(pk=challenge.worker_id).update(status=WorkerStatus.BANNED)
    response = http().get("/api/v1/challenge", {"sitekey": site.sitekey})
    assert response.status_code == 403 and response.json()["error"] == "visitor-blocked"


def test_issuing_is_rate_limited_per_ip_with_a_json_429(site, settings):
    settings.CROWDLOOP_RATE_LIMITS = {**settings.CROWDLOOP_RATE_LIMITS, "challenge-issue:ip": (3, 60)}
    codes = [http().get("/api/v1/challenge", {"sitekey": site.sitekey}).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    response = http().get("/api/v1/challenge", {"sitekey": site.sitekey})
    assert response.json()["error"] == "rate-limited" and int(response["Retry-After"]) >= 1
    other = Client(HTTP_ORIGIN=f"https://{HOST}", REMOTE_ADDR="198.51.100.20")
    assert other.get("/api/v1/challenge", {"sitekey": site.sitekey}).status_code == 200


def test_a_challenge_can_be_tried_only_a_few_times(site):
    challenge = issue(site, ChallengeKind.GRID)
    url = f"/api/v1/challenge/{challenge.pk}/answer"
    codes = [http().post(url, b"{", content_type="application/json").status_code for _ in range(4)]
    assert codes == [400, 400, 400, 429]


def test_the_rate_limit_window_rolls_over():
    assert [ratelimit_hit("t", "k", 2, 10, now=100.0) for _ in range(3)] == [True, True, False]
    assert ratelimit_hit("t", "k", 2, 10, now=110.0)
    assert ratelimit_hit("t", "other", 2, 10, now=105.0)


@pytest.mark.services
def test_the_rate_limit_is_exact_across_many_clients_on_redis(redis_url, settings):
    import threading
    import uuid

    from django.core.cache import caches

    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url,
            "KEY_PREFIX": uuid.uuid4().hex,
        }
    }
    results, barrier = [], threading.Barrier(8)

    def hammer():
        barrier.wait()
        for _ in range(25):
            results.append(ratelimit_hit("redis-test", "k", 50, 60, now=1000.0))
        caches["default"].close()

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 200 and sum(results) == 50


@pytest.mark.parametrize(
    "remote, forwarded, proxies, expected",
    [
        ("203.0.113.5", "1.2.3.4", [], "203.0.113.5"),
        ("203.0.113.5", "1.2.3.4", ["10.0.0.0/8"], "203.0.113.5"),
        ("10.0.0.2", "1.2.3.4", ["10.0.0.0/8"], "1.2.3.4"),
        ("10.0.0.2", "6.6.6.6, 1.2.3.4, 10.0.0.3", ["10.0.0.0/8"], "1.2.3.4"),
        ("10.0.0.2", "garbage", ["10.0.0.0/8"], "10.0.0.2"),
        ("::1", "2001:db8::7", ["::1"], "2001:db8::7"),
    ],
)
def test_forwarded_for_is_believed_only_from_trusted_proxies(settings, remote, forwarded, proxies, expected):
    settings.CROWDLOOP_TRUSTED_PROXIES = proxies
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected


def test_the_endpoints_answer_cors_preflights_and_set_no_cookies(site):
    preflight = http().options("/api/v1/challenge/x/answer", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == "*"
    assert "POST" in preflight["Access-Control-Allow-Methods"]
    assert "content-type" in preflight["Access-Control-Allow-Headers"].lower()
    response = http().get("/api/v1/challenge", {"sitekey": site.sitekey})
    assert response["Access-Control-Allow-Origin"] == "*" and not response.cookies
    assert http().put("/api/siteverify").status_code == 405


# --- Sites ---------------------------------------------------------------------------------------


def test_the_admin_shows_a_new_secret_once_and_rotates_it(admin_client, project):
    response = admin_client.post(
        "/admin/labeling/site/add/",
        {"name": "Blog", "projects": [project.pk], "allowed_hostnames": "blog.example\n*.blog.example",
         "mode": "normal", "control_items": 2, "pass_share": 1.0, "min_solve_ms": 1500},
    )
    assert response.status_code == 200, response.content[:500]
    site = Site.objects.get(name="Blog")
    secret = re.search(rb"<code>(0x[0-9a-f]{64})</code>", response.content).group(1).decode()
    assert site.allowed_hostnames == ["blog.example", "*.blog.example"]
    assert secret not in site.secret_hash and site.secret_hash.startswith("sha256$")
    rotated = admin_client.post("/admin/labeling/site/", {"action": "rotate_secret", "_selected_action": [site.pk]})
    new_secret = re.search(rb"<code>(0x[0-9a-f]{64})</code>", rotated.content).group(1).decode()
    assert new_secret != secret and site_get_by_secret(secret) is None and site_get_by_secret(new_secret) == site
    assert admin_client.get("/admin/labeling/site/").status_code == 200


def test_rotating_a_secret_stops_the_old_one_at_once():
    site, secret = site_make(None)
    new = site_secret_rotate(site)
    assert site_get_by_secret(secret) is None and site_get_by_secret(new) == site

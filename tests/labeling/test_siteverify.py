"""Siteverify: a token proves one passed challenge, once, on its site and hostname."""
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client

from labeling.models import Answer, Challenge, ChallengeKind, Site
from labeling.services.challenge_answers import challenge_answer
from labeling.services.challenges import ClientInfo, challenge_issue
from labeling.services.demo import (
    TEST_FAIL_SECRET,
    TEST_FAIL_SITEKEY,
    TEST_PASS_SECRET,
    TEST_PASS_SITEKEY,
    widget_test_keys_create,
)
from labeling.services.tokens import challenge_token_generator, challenge_verify
from tests.labeling.widget_support import (  # noqa: F401
    HOST,
    VISITOR,
    fresh_cache,
    project_make,
    site_make,
    solution,
)

pytestmark = pytest.mark.django_db

HIGH_LIMITS = {"siteverify:ip": (10_000, 60), "siteverify:site": (10_000, 60), "siteverify:challenge": (10_000, 60)}


@pytest.fixture
def high_limits(settings):
    settings.CROWDLOOP_RATE_LIMITS = {**settings.CROWDLOOP_RATE_LIMITS, **HIGH_LIMITS}


@pytest.fixture
def project():
    # A grid names a label, so it retires its control tiles: enough gold for every grid
    # these tests solve.
    return project_make(gold_per_class=60)


@pytest.fixture
def site_and_secret(project):
    return site_make(project)


def passed_token(site, client=VISITOR, answered_from=None):
    """Solve a challenge right, as a person on ``client.hostname`` would (answering from
    ``answered_from`` when given); returns ``(token, challenge)``."""
    challenge = challenge_issue(sitekey=site.sitekey, client=client, kind=ChallengeKind.GRID)
    outcome = challenge_answer(
        challenge_id=str(challenge.pk), data=solution(challenge), client=answered_from or client,
        now=challenge.issued_at + timedelta(seconds=4),
    )
    assert outcome.passed
    challenge.refresh_from_db()
    return outcome.token, challenge


def post(data, **kwargs):
    response = Client().post("/api/siteverify", data, **kwargs)
    assert response.status_code == 200, response.content
    return response.json()


def test_a_token_verifies_once_with_the_solving_hostname_and_time(site_and_secret):
    site, secret = site_and_secret
    token, challenge = passed_token(site)
    result = post({"secret": secret, "response": token, "remoteip": "203.0.113.7", "sitekey": site.sitekey})
    assert result == {
        "success": True,
        "challenge_ts": challenge.answered_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "hostname": HOST,
        "error-codes": [],
        "accessibility_pass": False,
    }


def test_a_replayed_token_succeeds_once_in_a_hundred_verifications(site_and_secret, high_limits):
    site, secret = site_and_secret
    token, _ = passed_token(site)
    results = [challenge_verify(secret=secret, response=token) for _ in range(100)]
    assert sum(result["success"] for result in results) == 1
    assert all(result["error-codes"] == ["timeout-or-duplicate"] for result in results[1:])


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_verifications_of_one_token_succeed_once_on_postgresql(postgres, high_limits):
    site, secret = site_make(project_make())
    token, _ = passed_token(site)
    barrier, results = threading.Barrier(50), []

    def verify():
        try:
            barrier.wait()
            results.append(challenge_verify(secret=secret, response=token)["success"])
        finally:
            connection.close()

    threads = [threading.Thread(target=verify) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 50 and sum(results) == 1


@pytest.mark.parametrize("age_s, success, codes", [(119, True, []), (121, False, ["timeout-or-duplicate"])])
def test_a_token_lives_120_seconds(site_and_secret, monkeypatch, age_s, success, codes):
    site, secret = site_and_secret
    token, challenge = passed_token(site)
    monkeypatch.setattr(challenge_token_generator, "_now", lambda: challenge.answered_at + timedelta(seconds=age_s))
    result = post({"secret": secret, "response": token})
    assert (result["success"], result["error-codes"]) == (success, codes)


def _variants(token):
    cid, ts, sig = token.split(".")
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    other_ts = str(int(ts, 36) + 1)
    return {
        "forged": "0" * 32 + "." + ts + "." + sig,
        "forged-time": f"{cid}.{other_ts}.{sig}",
        "truncated": token[:-1],
        "truncated-half": token[: len(token) // 2],
        "bit-flipped": f"{cid}.{ts}.{flipped}",
        "bit-flipped-id": ("1" if cid[0] != "1" else "2") + token[1:],
        "upper-case": token.upper(),
        "oversized": token + "a" * 5000,
        "huge": "x" * 60_000,
        "padded": f" {token} ",
        "unicode": token[:-1] + "é",
        "nul": token[:-1] + "\x00",
    }


def test_forged_truncated_bit_flipped_and_oversized_tokens_never_succeed(site_and_secret, high_limits):
    site, secret = site_and_secret
    token, _ = passed_token(site)
    for name, variant in _variants(token).items():
        for kwargs in ({}, {"content_type": "application/json"}):
            result = post({"secret": secret, "response": variant}, **kwargs)
            assert result["success"] is False, name
            assert result["error-codes"] in (["invalid-input-response"], ["bad-request"]), (name, result)
    assert post({"secret": secret, "response": token})["success"] is True


@pytest.mark.parametrize(
    "body, content_type",
    [
        (b"{", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'{"secret": 5, "response": ["x"]}', "application/json"),
        (b'{"secret": {"a": 1}, "response": "x"}', "application/json"),
        (b"[" * 60_000, "application/json"),
        (b"\xff\xfe\x00", "application/x-www-form-urlencoded"),
        (b"--b\r\nContent-Disposition: form-data\r\n\r\nx", "multipart/form-data; boundary=b"),
        (b"secret=a&response=b", "text/plain"),
        (b"x" * 70_000, "application/x-www-form-urlencoded"),
    ],
)
def test_garbage_requests_never_get_a_5xx(site_and_secret, body, content_type):
    response = Client().post("/api/siteverify", body, content_type=content_type)
    assert response.status_code < 500
    if response.status_code == 200:
        assert response.json()["success"] is False


def test_missing_and_wrong_inputs_give_the_standard_error_codes(site_and_secret):
    site, secret = site_and_secret
    token, _ = passed_token(site)
    assert post({})["error-codes"] == ["missing-input-secret", "missing-input-response"]
    assert post({"response": token})["error-codes"] == ["missing-input-secret"]
    assert post({"secret": secret})["error-codes"] == ["missing-input-response"]
    assert post({"secret": "0x" + "1" * 64, "response": token})["error-codes"] == ["invalid-input-secret"]
    assert post({"secret": secret, "response": token, "sitekey": "other"})["error-codes"] == ["sitekey-secret-mismatch"]
    assert post({"secret": secret, "response": token, "remoteip": "not an ip"})["error-codes"] == ["bad-request"]
    assert post({"secret": secret, "response": token})["success"] is True


def test_a_token_of_site_a_checked_with_site_bs_secret_is_a_mismatch(project, site_and_secret):
    site_a, secret_a = site_and_secret
    _, secret_b = site_make(project)
    token, _ = passed_token(site_a)
    assert post({"secret": secret_b, "response": token})["error-codes"] == ["sitekey-secret-mismatch"]
    assert post({"secret": secret_a, "response": token})["success"] is True


def test_a_token_solved_on_a_hostname_the_site_does_not_allow_is_refused(site_and_secret):
    site, secret = site_and_secret
    hostless = ClientInfo(ip=VISITOR.ip, user_agent=VISITOR.user_agent)
    elsewhere = ClientInfo(ip=VISITOR.ip, user_agent=VISITOR.user_agent, hostname="evil.example")
    token, _ = passed_token(site, client=hostless, answered_from=elsewhere)
    assert post({"secret": secret, "response": token})["error-codes"] == ["invalid-input-response"]
    token, _ = passed_token(site, client=hostless)
    assert post({"secret": secret, "response": token})["error-codes"] == ["invalid-input-response"]
    token, challenge = passed_token(site)
    Challenge.objects.filter(pk=challenge.pk).update(hostname="evil.example")
    assert post({"secret": secret, "response": token})["error-codes"] == ["invalid-input-response"]
    token, _ = passed_token(site)
    Site.objects.filter(pk=site.pk).update(allowed_hostnames=["other.example"])
    assert post({"secret": secret, "response": token})["error-codes"] == ["invalid-input-response"]


def test_the_hostname_comes_from_the_answer_requests_origin_or_referer(site_and_secret):
    site, secret = site_and_secret
    challenge = challenge_issue(sitekey=site.sitekey, client=VISITOR, kind=ChallengeKind.GRID)
    Challenge.objects.filter(pk=challenge.pk).update(issued_at=challenge.issued_at - timedelta(seconds=5))
    client = Client(HTTP_REFERER=f"https://{HOST.upper()}:8443/signup?x=1", REMOTE_ADDR=VISITOR.ip)
    url = f"/api/v1/challenge/{challenge.pk}/answer"
    response = client.post(url, solution(challenge), content_type="application/json")
    result = post({"secret": secret, "response": response.json()["token"]})
    assert result["success"] is True and result["hostname"] == HOST


def test_siteverify_is_rate_limited_per_token(site_and_secret, settings):
    settings.CROWDLOOP_RATE_LIMITS = {**settings.CROWDLOOP_RATE_LIMITS, "siteverify:challenge": (3, 60)}
    site, secret = site_and_secret
    token, _ = passed_token(site)
    codes = [Client().post("/api/siteverify", {"secret": secret, "response": token}).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    body = Client().post("/api/siteverify", {"secret": secret, "response": token}).json()
    assert body["success"] is False and body["error"] == "rate-limited"


# --- Test keys ----------------------------------------------------------------------------------


def test_the_test_keys_pass_and_fail_as_documented_and_produce_nothing():
    widget_test_keys_create()
    browser = Client(HTTP_ORIGIN="https://anywhere.example", REMOTE_ADDR=VISITOR.ip)
    for sitekey, secret, success, codes in (
        (TEST_PASS_SITEKEY, TEST_PASS_SECRET, True, []),
        (TEST_FAIL_SITEKEY, TEST_FAIL_SECRET, False, ["invalid-input-response"]),
    ):
        challenge = browser.get("/api/v1/challenge", {"sitekey": sitekey}).json()
        assert challenge["kind"] == "test" and challenge["items"] == []
        answer = browser.post(f"/api/v1/challenge/{challenge['id']}/answer", {}, content_type="application/json")
        token = answer.json()["token"]
        assert answer.json()["passed"] is True and token
        result = post({"secret": secret, "response": token, "sitekey": sitekey})
        assert (result["success"], result["error-codes"]) == (success, codes)
    assert post({"secret": TEST_PASS_SECRET, "response": "anything"})["success"] is True
    assert post({"secret": TEST_FAIL_SECRET, "response": "anything"})["success"] is False
    assert post({"secret": TEST_PASS_SECRET, "response": "x", "sitekey": TEST_FAIL_SITEKEY})["error-codes"] == [
        "sitekey-secret-mismatch"
    ]
    assert not Answer.objects.exists() and not Challenge.objects.exists()


@pytest.mark.parametrize(
    "sitekey,secret",
    [
        ("10000000-ffff-ffff-ffff-000000000001", "0x" + "0" * 40),  # hCaptcha's published test pair
        ("6LeIxAcTAAAAAJcZVRqyHh4UMeOx4S5-ooQzEZ6J", "6LeIxAcTAAAAAGG-vFI1TnRWxMZNFuojJ4WifJWe"),  # reCAPTCHA v2's
    ],
)
def test_hcaptcha_and_recaptcha_test_pairs_verify_any_response_on_a_fresh_installation(sitekey, secret):
    assert not Site.objects.exists()
    for response in ("10000000-aaaa-bbbb-cccc-000000000001", "anything", "x" * 150):
        for fields in ({}, {"sitekey": sitekey}):
            result = post({"secret": secret, "response": response, **fields})
            assert (result["success"], result["error-codes"]) == (True, []), result
    assert post({"secret": secret, "response": ""})["error-codes"] == ["missing-input-response"]
    assert post({"secret": secret, "response": "x", "sitekey": TEST_FAIL_SITEKEY})["error-codes"] == [
        "sitekey-secret-mismatch"
    ]

    browser = Client(HTTP_ORIGIN="http://localhost:3000", REMOTE_ADDR=VISITOR.ip)
    challenge = browser.get("/api/v1/challenge", {"sitekey": sitekey}).json()
    assert challenge["kind"] == "test" and challenge["items"] == []
    token = browser.post(f"/api/v1/challenge/{challenge['id']}/answer", {}, content_type="application/json").json()
    assert post({"secret": secret, "response": token["token"], "sitekey": sitekey})["success"] is True
    assert not Answer.objects.exists() and not Challenge.objects.exists()
    assert Site.objects.get(sitekey=sitekey).projects.count() == 0


def test_a_test_key_site_whose_secret_was_changed_gets_the_published_one_back():
    widget_test_keys_create()
    Site.objects.filter(sitekey=TEST_PASS_SITEKEY).update(secret_hash="sha256$changed", mode="normal")
    assert post({"secret": TEST_PASS_SECRET, "response": "anything"})["success"] is True
    assert Site.objects.filter(sitekey=TEST_PASS_SITEKEY).count() == 1


def test_the_readme_lists_the_drop_in_test_keys():
    from django.conf import settings

    readme = (settings.BASE_DIR / "README.md").read_text()
    widget_section = readme.split("## For site owners")[1].split("\n## ")[0]
    for key in (
        "10000000-ffff-ffff-ffff-000000000001", "0x" + "0" * 40,
        "6LeIxAcTAAAAAJcZVRqyHh4UMeOx4S5-ooQzEZ6J", "6LeIxAcTAAAAAGG-vFI1TnRWxMZNFuojJ4WifJWe",
    ):
        assert f"`{key}`" in widget_section

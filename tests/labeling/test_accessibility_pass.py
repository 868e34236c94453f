"""The accessibility pass: earned once by a verified e-mail, limited per address and per
day, refused when forged or expired, adds no label evidence, and siteverify says so."""
import re
import time
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.core import mail, signing
from django.test import Client
from django.utils import timezone
from django.utils.html import escape

from labeling.models import AccessibilityPass, Answer, Challenge, ChallengeKind, ChallengeStatus
from labeling.services import accessibility
from labeling.services.accessibility import (
    COOKIE_NAME,
    accessibility_pass_from_cookie,
    accessibility_pass_request,
)
from labeling.services.challenges import ChallengeRefused, challenge_issue
from tests.labeling.widget_support import HOST, VISITOR, fresh_cache, project_make, site_make  # noqa: F401

pytestmark = pytest.mark.django_db

ORIGIN = f"https://{HOST}"
EMAIL = "Ada@Example.org"


@pytest.fixture
def site_and_secret():
    # Enough gold for every challenge these tests issue: a grid retires its control tiles.
    return site_make(project_make(gold_per_class=60))


def open_challenge(site):
    return challenge_issue(sitekey=site.sitekey, client=VISITOR, kind=ChallengeKind.GRID)


def earn_pass(client, email=EMAIL):
    """Ask for a pass, follow the e-mailed link and activate it in ``client``."""
    response = client.post("/accessibility/", {"email": email})
    assert response.status_code == 200 and b"We sent a link" in response.content
    link = re.search(r"https?://\S+/accessibility/verify/\S+", mail.outbox[-1].body).group(0)
    path = link.split("testserver", 1)[1]
    page = client.get(path)
    assert page.status_code == 200 and b"Activate my pass" in page.content
    assert COOKIE_NAME not in page.cookies  # a mail scanner's GET activates nothing
    activated = client.post(path)
    assert activated.status_code == 302 and COOKIE_NAME in activated.cookies
    return AccessibilityPass.objects.get(pk=accessibility_pass_from_cookie(activated.cookies[COOKIE_NAME].value).pk)


def use(client, challenge, origin=ORIGIN):
    return client.post("/accessibility/use", {"challenge": str(challenge.pk), "origin": origin})


def siteverify(secret, token):
    return Client().post("/api/siteverify", {"secret": secret, "response": token}).json()


def test_a_verified_pass_passes_an_open_challenge_without_label_evidence_and_siteverify_says_so(site_and_secret):
    site, secret = site_and_secret
    browser = Client()
    earned = earn_pass(browser)
    assert mail.outbox[0].to == [EMAIL] and EMAIL.lower() not in earned.email_digest
    challenge = open_challenge(site)

    page = browser.get("/accessibility/", {"challenge": str(challenge.pk), "origin": ORIGIN})
    assert f"Use my pass on {HOST}".encode() in page.content
    response = use(browser, challenge)
    assert response.status_code == 200
    token = re.search(rb'data-token="([^"]+)"', response.content).group(1).decode()
    assert f'data-origin="{ORIGIN}"'.encode() in response.content

    challenge.refresh_from_db()
    assert challenge.status == ChallengeStatus.PASSED and challenge.accessibility_pass_id == earned.pk
    assert challenge.hostname == HOST
    # No tile became an answer, and the challenge cannot be answered afterwards.
    assert Answer.objects.count() == 0
    assert not challenge.tiles.exclude(response=None).exists()
    late = Client().post(
        f"/api/v1/challenge/{challenge.pk}/answer", {"selected": []}, content_type="application/json",
        HTTP_ORIGIN=ORIGIN,
    )
    assert late.status_code == 409 and Answer.objects.count() == 0

    result = siteverify(secret, token)
    assert result["success"] is True and result["accessibility_pass"] is True and result["hostname"] == HOST
    assert siteverify(secret, token)["error-codes"] == ["timeout-or-duplicate"]


def test_an_address_earns_a_limited_number_of_passes_a_day(settings):
    settings.CROWDLOOP_A11Y_PASSES_PER_ADDRESS_PER_DAY = 2
    now = timezone.now()
    for _ in range(2):
        accessibility_pass_request(email=EMAIL, client_ip="198.51.100.1", verify_url=str, now=now)
    # The same address, however it is spelt, from another client address.
    with pytest.raises(ChallengeRefused, match="passes for today") as refused:
        accessibility_pass_request(email=" ada@EXAMPLE.org ", client_ip="198.51.100.2", verify_url=str, now=now)
    assert refused.value.code == "address-limit" and len(mail.outbox) == 2
    accessibility_pass_request(email=EMAIL, client_ip="198.51.100.3", verify_url=str, now=now + timedelta(days=1, seconds=1))
    assert len(mail.outbox) == 3

    page = Client().post("/accessibility/", {"email": EMAIL})
    assert page.status_code == 429 and b"passes for today" in page.content


def test_asking_is_rate_limited_per_client_and_a_bad_address_is_a_form_error(settings):
    settings.CROWDLOOP_RATE_LIMITS = {**settings.CROWDLOOP_RATE_LIMITS, "a11y-request:ip": (2, 3600)}
    browser = Client()
    bad = browser.post("/accessibility/", {"email": "not an address"})
    assert bad.status_code == 200 and b"valid email" in bad.content and mail.outbox == []
    for n in range(2):
        assert browser.post("/accessibility/", {"email": f"p{n}@example.org"}).status_code == 200
    limited = browser.post("/accessibility/", {"email": "p9@example.org"})
    assert limited.status_code == 429 and len(mail.outbox) == 2


def test_a_pass_is_used_a_limited_number_of_times_a_day(settings, site_and_secret):
    settings.CROWDLOOP_A11Y_USES_PER_DAY = 2
    site, _ = site_and_secret
    browser = Client()
    earn_pass(browser)
    assert [use(browser, open_challenge(site)).status_code for _ in range(3)] == [200, 200, 429]
    assert b"used as often as it may today" in use(browser, open_challenge(site)).content
    assert Challenge.objects.filter(accessibility_pass__isnull=False).count() == 2


def test_a_verification_link_works_once_and_a_forged_one_not_at_all():
    browser = Client()
    browser.post("/accessibility/", {"email": EMAIL})
    path = re.search(r"/accessibility/verify/\S+", mail.outbox[-1].body).group(0)
    assert browser.post(path).status_code == 302
    assert Client().post(path).status_code == 400
    forged = signing.dumps({"p": AccessibilityPass.objects.get().pk.hex}, salt="another salt")
    assert Client().post(f"/accessibility/verify/{forged}").status_code == 400


@pytest.mark.parametrize("spoil", ["forged", "other-salt", "signed-too-long-ago", "row-expired", "revoked"])
def test_a_forged_or_expired_cookie_is_refused(settings, site_and_secret, spoil):
    site, _ = site_and_secret
    browser = Client()
    earned = earn_pass(browser)
    value = browser.cookies[COOKIE_NAME].value
    if spoil == "forged":
        value = value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB")
    elif spoil == "other-salt":
        value = signing.dumps({"p": earned.pk.hex}, salt="crowdloop.services.accessibility.verify")
    elif spoil == "signed-too-long-ago":
        signer = signing.TimestampSigner(salt=accessibility._COOKIE_SALT)
        signer.timestamp = lambda: signing.b62_encode(int(time.time()) - settings.CROWDLOOP_A11Y_PASS_TTL_S - 60)
        value = signer.sign_object({"p": earned.pk.hex})
    elif spoil == "row-expired":
        AccessibilityPass.objects.filter(pk=earned.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    else:
        AccessibilityPass.objects.filter(pk=earned.pk).update(revoked=True)
    browser.cookies[COOKIE_NAME] = value
    challenge = open_challenge(site)
    response = use(browser, challenge)
    assert response.status_code == 403 and b"no active accessibility pass" in response.content
    challenge.refresh_from_db()
    assert challenge.status == ChallengeStatus.ISSUED
    assert b"Send me a link" in browser.get("/accessibility/").content


@pytest.mark.parametrize(
    "origin, status", [("https://evil.example", 403), ("javascript:alert(1)", 400), ("", 400)]
)
def test_a_pass_works_only_for_a_page_on_an_allowed_hostname(site_and_secret, origin, status):
    site, _ = site_and_secret
    browser = Client()
    earn_pass(browser)
    challenge = open_challenge(site)
    assert use(browser, challenge, origin=origin).status_code == status
    challenge.refresh_from_db()
    assert challenge.status == ChallengeStatus.ISSUED


def test_a_pass_cannot_take_an_answered_or_expired_challenge(site_and_secret):
    site, _ = site_and_secret
    browser = Client()
    earn_pass(browser)
    answered = open_challenge(site)
    Challenge.objects.filter(pk=answered.pk).update(status=ChallengeStatus.FAILED)
    expired = open_challenge(site)
    Challenge.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert use(browser, answered).status_code == 409
    assert use(browser, expired).status_code == 410


def test_the_window_the_widget_opened_goes_on_once_the_mailed_link_is_opened(site_and_secret):
    site, _ = site_and_secret
    challenge = open_challenge(site)
    browser = Client()
    window = f"/accessibility/?{urlencode({'challenge': str(challenge.pk), 'origin': ORIGIN})}"
    sent = browser.post(window, {"email": EMAIL}).content.decode()
    assert f'<a href="{escape(window)}">continue here</a>' in sent
    path = re.search(r"/accessibility/verify/\S+", mail.outbox[-1].body).group(0)
    assert "challenge" not in path  # the mail's tab has no way back to the widget
    assert browser.post(path)["Location"] == "/accessibility/"
    assert f"Use my pass on {HOST}" in browser.get(window).content.decode()

"""A third-party Django form built on a public hCaptcha client package (django-hCaptcha,
from PyPI) runs against Crowdloop with only its two URLs changed."""
import importlib
from datetime import timedelta

import pytest
from django import forms

from labeling.services.challenge_answers import challenge_answer
from labeling.services.challenges import challenge_issue
from labeling.services.sites import HCAPTCHA_TEST_SECRET, HCAPTCHA_TEST_SITEKEY
from tests.labeling.widget_support import VISITOR, project_make, site_make, solution

hcaptcha = pytest.importorskip("hcaptcha", reason="django-hCaptcha (a test extra) is not installed")
HCAPTCHA_TEST_RESPONSE = "10000000-aaaa-bbbb-cccc-000000000001"


@pytest.fixture
def hcaptcha_form(live_server, settings):
    """``make(sitekey, secret)``: the package's form, configured as a site switched over
    from hCaptcha configures it: the script URL and the verify URL point at Crowdloop,
    and the keys are the site's (the package reads its settings at import)."""

    def make(sitekey=HCAPTCHA_TEST_SITEKEY, secret=HCAPTCHA_TEST_SECRET):
        settings.HCAPTCHA_JS_API_URL = f"{live_server.url}/static/widget/api.js"
        settings.HCAPTCHA_VERIFY_URL = f"{live_server.url}/api/siteverify"
        settings.HCAPTCHA_SITEKEY, settings.HCAPTCHA_SECRET = sitekey, secret
        for module in ("hcaptcha.settings", "hcaptcha.widgets", "hcaptcha.fields"):
            importlib.reload(importlib.import_module(module))
        from hcaptcha.fields import hCaptchaField

        class SignupForm(forms.Form):
            email = forms.EmailField()
            captcha = hCaptchaField()

        return SignupForm

    yield make
    for module in ("hcaptcha.settings", "hcaptcha.widgets", "hcaptcha.fields"):
        importlib.reload(importlib.import_module(module))


def solved_token(site):
    challenge = challenge_issue(sitekey=site.sitekey, client=VISITOR)
    outcome = challenge_answer(
        challenge_id=str(challenge.pk), data=solution(challenge), client=VISITOR,
        now=challenge.issued_at + timedelta(seconds=5),
    )
    assert outcome.passed
    return outcome.token


@pytest.mark.django_db(transaction=True)
def test_the_form_renders_crowdloops_script_with_the_sitekey(hcaptcha_form, live_server, settings):
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "hcaptcha"]  # as the site lists it, for its template
    html = str(hcaptcha_form()()["captcha"])
    assert f'src="{live_server.url}/static/widget/api.js"' in html
    assert f'data-sitekey="{HCAPTCHA_TEST_SITEKEY}"' in html and 'class="h-captcha"' in html


@pytest.mark.django_db(transaction=True)
def test_hcaptchas_test_pair_passes_the_form_as_it_does_on_hcaptcha(hcaptcha_form):
    SignupForm = hcaptcha_form()
    assert SignupForm({"email": "a@example.com", "h-captcha-response": HCAPTCHA_TEST_RESPONSE}).is_valid()


@pytest.mark.django_db(transaction=True)
def test_a_real_site_passes_a_solved_challenge_once_and_refuses_the_rest(hcaptcha_form):
    site, secret = site_make(project_make())
    SignupForm = hcaptcha_form(site.sitekey, secret)
    token = solved_token(site)

    first = SignupForm({"email": "a@example.com", "h-captcha-response": token})
    assert first.is_valid(), first.errors
    replay = SignupForm({"email": "a@example.com", "h-captcha-response": token})
    assert not replay.is_valid() and "hCaptcha could not be verified." in replay.errors["captcha"]
    forged = SignupForm({"email": "a@example.com", "h-captcha-response": "made-up"})
    assert not forged.is_valid()
    missing = SignupForm({"email": "a@example.com"})
    assert not missing.is_valid() and "Please prove you are a human." in missing.errors["captcha"]

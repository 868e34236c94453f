"""The accessibility pass's pages, on Crowdloop's own origin (see
:mod:`labeling.services.accessibility`).

``/accessibility/``                 ask for a pass by e-mail, or see the one this browser has
``/accessibility/verify/<token>``   the link in the e-mail: activates the pass here
``/accessibility/use``              pass the widget's open challenge with it

The widget opens ``/accessibility/?challenge=<id>&origin=<page origin>`` in a small
window; with an active pass, one button passes the challenge and the window hands the
token back to the page that opened it (``postMessage`` to that origin only).
"""
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from labeling.services.accessibility import (
    COOKIE_NAME,
    accessibility_cookie_value,
    accessibility_pass_from_cookie,
    accessibility_pass_request,
    accessibility_pass_use,
    accessibility_pass_verify,
    accessibility_uses_left,
)
from labeling.services.challenges import ChallengeRefused
from labeling.services.ratelimit import RateLimited, client_ip
from labeling.widget_api import REFUSED_STATUS


class PassRequestForm(forms.Form):
    email = forms.EmailField(label="Your e-mail address", max_length=254)


def _origin(value):
    """``(origin, hostname)`` of a page origin given as ``https://host[:port]``, or
    ``("", "")`` when it is not one."""
    if not isinstance(value, str) or len(value) > 300:
        return "", ""
    try:
        parts = urlsplit(value)
        hostname = parts.hostname
    except ValueError:
        return "", ""
    if parts.scheme not in ("http", "https") or not hostname or parts.path not in ("", "/") or parts.query:
        return "", ""
    return f"{parts.scheme}://{parts.netloc}", hostname


def _target(source):
    challenge = str(source.get("challenge", ""))[:64]
    origin, hostname = _origin(source.get("origin", ""))
    return challenge, origin, hostname


@require_http_methods(["GET", "POST"])
def pass_page(request):
    challenge, origin, hostname = _target(request.GET)
    pass_ = accessibility_pass_from_cookie(request.COOKIES.get(COOKIE_NAME))
    form, sent, refused = PassRequestForm(), False, ""
    if request.method == "POST" and pass_ is None:
        form = PassRequestForm(request.POST)
        if form.is_valid():
            try:
                accessibility_pass_request(
                    email=form.cleaned_data["email"],
                    client_ip=client_ip(request),
                    verify_url=lambda token: request.build_absolute_uri(reverse("accessibility-verify", args=[token])),
                )
                sent = True
            except ValidationError as exc:
                form.add_error("email", exc)
            except (ChallengeRefused, RateLimited) as exc:
                refused = str(exc) if isinstance(exc, ChallengeRefused) else "Too many requests; try again later."
    status = 429 if refused else 200
    return render(
        request,
        "accessibility/pass.html",
        {
            "pass": pass_,
            "uses_left": accessibility_uses_left(pass_) if pass_ else 0,
            "form": form,
            "sent": sent,
            "refused": refused,
            "challenge": challenge,
            "origin": origin,
            "hostname": hostname,
            "again": request.get_full_path() if challenge and origin else "",
            "per_address": settings.CROWDLOOP_A11Y_PASSES_PER_ADDRESS_PER_DAY,
            "uses_per_day": settings.CROWDLOOP_A11Y_USES_PER_DAY,
        },
        status=status,
    )


@require_http_methods(["GET", "POST"])
def pass_verify(request, token):
    """A GET only shows a button (mail scanners open links); the POST activates. The
    mail's link opens in a new tab: the visitor then goes on in the window the widget
    opened, which can hand the token back."""
    if request.method == "GET":
        return render(request, "accessibility/verify.html", {"token": token})
    pass_ = accessibility_pass_verify(token)
    if pass_ is None:
        return render(request, "accessibility/verify.html", {"token": token, "invalid": True}, status=400)
    response = redirect(reverse("accessibility-pass"))
    response.set_cookie(
        COOKIE_NAME,
        accessibility_cookie_value(pass_),
        max_age=settings.CROWDLOOP_A11Y_PASS_TTL_S,
        path="/accessibility/",
        secure=request.is_secure(),
        httponly=True,
        samesite="Lax",
    )
    return response


@require_POST
def pass_use(request):
    challenge, origin, hostname = _target(request.POST)
    pass_ = accessibility_pass_from_cookie(request.COOKIES.get(COOKIE_NAME))
    context = {"challenge": challenge, "origin": origin, "hostname": hostname, "pass": pass_}
    if pass_ is None:
        context["error"] = "This browser has no active accessibility pass."
        return render(request, "accessibility/used.html", context, status=403)
    if not challenge or not origin:
        context["error"] = "Open this page from the human check on the site you are visiting."
        return render(request, "accessibility/used.html", context, status=400)
    try:
        token = accessibility_pass_use(
            pass_, challenge_id=challenge, origin_hostname=hostname, client_ip=client_ip(request)
        )
    except ChallengeRefused as exc:
        context["error"] = str(exc)
        return render(request, "accessibility/used.html", context, status=REFUSED_STATUS.get(exc.code, 400))
    except RateLimited:
        context["error"] = "Too many requests; try again later."
        return render(request, "accessibility/used.html", context, status=429)
    context.update(token=token, expires_in=settings.CROWDLOOP_TOKEN_TTL_S)
    return render(request, "accessibility/used.html", context)

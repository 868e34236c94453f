"""A stand-in for a site owner's sign-up page, protected by the widget.

It plays both halves of an integration: the page embeds the widget like any third-party
site, and its form handler verifies the token the way a site's server would, through
the siteverify service (here in-process; a real site POSTs to ``/api/siteverify``).
The page sends a strict Content-Security-Policy, which the widget must live with.
"""
from django.shortcuts import render
from django.templatetags.static import static

from labeling.models import Site
from labeling.services.demo import DEMO_SITEKEY, demo_site_secret
from labeling.services.ratelimit import RateLimited, client_ip
from labeling.services.tokens import challenge_verify

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
RESPONSE_FIELDS = ("crowdloop-response", "h-captcha-response", "g-recaptcha-response")


def signup(request):
    site = Site.objects.filter(sitekey=DEMO_SITEKEY).first()
    if site is None:
        response = render(request, "widget/demo_missing.html", status=404)
    else:
        context = {"sitekey": site.sitekey, "script_url": static("widget/api.js"), "name": ""}
        if request.method == "POST":
            context.update(_signup_submit(request, site))
        response = render(request, "widget/demo_signup.html", context)
    response["Content-Security-Policy"] = CSP
    return response


def _signup_submit(request, site):
    name = request.POST.get("name", "").strip()[:100]
    if not name:
        return {"errors": ["Please give your name."], "name": name}
    token = next((request.POST.get(field) for field in RESPONSE_FIELDS if request.POST.get(field)), "")
    try:
        result = challenge_verify(
            secret=demo_site_secret(), response=token, sitekey=site.sitekey,
            remoteip=client_ip(request), caller_ip=client_ip(request),
        )
    except RateLimited:
        result = {"success": False, "error-codes": ["rate-limited"]}
    if not result["success"]:
        return {"error_codes": result["error-codes"], "name": name}
    return {"welcome": name, "hostname": result["hostname"]}

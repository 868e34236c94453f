"""The widget's public HTTP API and siteverify: no cookies, no login, any origin.

``GET  /api/v1/challenge?sitekey=K``           a challenge for this visitor
``POST /api/v1/challenge/<id>/answer``          judge it; a pass returns a token
``GET  /api/v1/challenge/<id>/image/<tile>``    a tile's image (signed URL, rendered afresh)
``POST /api/siteverify``                        the site's server checks a token

Views validate input, call one service and render JSON. Garbage in gives a 4xx (or,
for siteverify, ``bad-request``), never a 5xx.
"""
import json
from functools import wraps

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from labeling.services.challenge_answers import challenge_answer
from labeling.services.challenges import (
    ChallengeRefused,
    ClientInfo,
    challenge_image,
    challenge_issue,
    challenge_payload,
)
from labeling.services.ratelimit import RateLimited, client_ip, ratelimit_enforce
from labeling.services.sites import hostname_from_headers
from labeling.services.tokens import (
    challenge_verify,
    image_signature,
    image_signature_valid,
)

MAX_BODY_BYTES = 64 * 1024


def public_endpoint(*methods):
    """CSRF-exempt, any origin, no credentials; answers the CORS preflight and refuses
    other methods with 405."""

    def decorate(view):
        @csrf_exempt
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method == "OPTIONS":
                response = HttpResponse(status=204)
                response["Access-Control-Allow-Methods"] = ", ".join([*methods, "OPTIONS"])
                response["Access-Control-Allow-Headers"] = "Content-Type"
                response["Access-Control-Max-Age"] = "86400"
            elif request.method not in methods:
                response = JsonResponse({"error": "method-not-allowed"}, status=405)
                response["Allow"] = ", ".join([*methods, "OPTIONS"])
            else:
                try:
                    response = view(request, *args, **kwargs)
                except RateLimited as exc:
                    response = _rate_limited(request, exc)
            response["Access-Control-Allow-Origin"] = "*"
            response["Cross-Origin-Resource-Policy"] = "cross-origin"
            response.setdefault("Cache-Control", "no-store")
            return response

        return wrapper

    return decorate


def _rate_limited(request, exc):
    body = {"error": "rate-limited", "detail": str(exc), "retry_after": exc.retry_after}
    if request.path.startswith("/api/siteverify"):
        body.update({"success": False, "error-codes": ["rate-limited"]})
    response = JsonResponse(body, status=429)
    response["Retry-After"] = str(exc.retry_after)
    return response


REFUSED_STATUS = {
    "bad-request": 400,
    "invalid-sitekey": 400,
    "visitor-blocked": 403,
    "hostname-not-allowed": 403,
    "challenge-not-found": 404,
    "not-found": 404,
    "already-answered": 409,
    "challenge-expired": 410,
    "test-key": 400,
    "address-limit": 429,
    "pass-limit": 429,
    "no-challenge-available": 503,
}
"""HTTP status of each :class:`ChallengeRefused` code."""


def _refused(exc):
    return JsonResponse({"error": exc.code, "detail": str(exc)}, status=REFUSED_STATUS.get(exc.code, 400))


def _client(request):
    return ClientInfo(
        ip=client_ip(request),
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:512],
        hostname=hostname_from_headers(request.META.get("HTTP_ORIGIN"), request.META.get("HTTP_REFERER")),
    )


def _image_url(request):
    def build(challenge_id, public_id):
        path = reverse("widget-challenge-image", args=[challenge_id, public_id])
        return request.build_absolute_uri(f"{path}?sig={image_signature(challenge_id, public_id)}")

    return build


def _json_body(request):
    if len(request.body) > MAX_BODY_BYTES:
        return None
    try:
        return json.loads(request.body.decode("utf-8") or "{}")
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def _issue(request, client):
    challenge = challenge_issue(sitekey=request.GET.get("sitekey", ""), client=client)
    return challenge_payload(challenge, image_url=_image_url(request))


@public_endpoint("GET")
def challenge_new(request):
    try:
        return JsonResponse(_issue(request, _client(request)))
    except ChallengeRefused as exc:
        return _refused(exc)


@public_endpoint("POST")
def challenge_answer_view(request, challenge_id):
    """``{"selected": [...]}`` for grid, ``{"answers": {tile: label | bool}}`` otherwise.
    A failed challenge returns the next one under ``next`` when the visitor may go on."""
    client = _client(request)
    try:
        outcome = challenge_answer(challenge_id=challenge_id, data=_json_body(request), client=client)
    except ChallengeRefused as exc:
        return _refused(exc)
    body = {"passed": outcome.passed, "token": outcome.token}
    if outcome.passed:
        body["expires_in"] = settings.CROWDLOOP_TOKEN_TTL_S
        return JsonResponse(body)
    body["reason"] = outcome.reason
    try:
        sitekey = outcome.challenge.site.sitekey if outcome.challenge.site_id else ""
        body["next"] = challenge_payload(
            challenge_issue(sitekey=sitekey, client=client), image_url=_image_url(request)
        )
    except ChallengeRefused as exc:
        body.update({"next": None, "error": exc.code, "detail": str(exc)})
    except RateLimited:
        body["next"] = None
    return JsonResponse(body)


@public_endpoint("GET")
def challenge_image_view(request, challenge_id, public_id):
    if not image_signature_valid(str(challenge_id), public_id, request.GET.get("sig")):
        return JsonResponse({"error": "not-found"}, status=404)
    ratelimit_enforce([("challenge-image:ip", client_ip(request))])
    try:
        image = challenge_image(challenge_id=challenge_id, public_id=public_id)
    except ChallengeRefused as exc:
        return _refused(exc)
    response = HttpResponse(image, content_type="image/png")
    response["Cache-Control"] = "private, max-age=300"
    return response


@public_endpoint("POST")
def siteverify(request):
    """Form-encoded or JSON: ``secret``, ``response``, optional ``remoteip``, ``sitekey``."""
    fields = _siteverify_fields(request)
    if fields is None:
        return JsonResponse({"success": False, "challenge_ts": None, "hostname": None, "error-codes": ["bad-request"]})
    result = challenge_verify(
        secret=fields.get("secret"), response=fields.get("response"), sitekey=fields.get("sitekey"),
        remoteip=fields.get("remoteip"), caller_ip=client_ip(request),
    )
    return JsonResponse(result)


def _siteverify_fields(request):
    if len(request.body) > MAX_BODY_BYTES:
        return None
    content_type = request.content_type or ""
    if content_type == "application/json":
        data = _json_body(request)
        return data if isinstance(data, dict) else None
    if content_type in ("application/x-www-form-urlencoded", "multipart/form-data", ""):
        try:
            source = request.POST if request.POST else request.GET
        except (MultiPartParserError, ValueError):
            return None
        return {key: source.get(key) for key in ("secret", "response", "remoteip", "sitekey")}
    return None

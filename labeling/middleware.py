"""HTTP middleware: the Content-Security-Policy of every HTML page.

The policy allows nothing but this origin's own files: no inline script, no inline
style, no framing. It is set on HTML responses only (JSON APIs, images and downloads
are left alone) and never replaces a ``Content-Security-Policy`` header a view set
itself. A view that needs another policy (the widget's embeddable page, a demo page)
says so with :func:`csp_override` or :func:`csp_exempt`, or by setting ``response.csp``
to a policy string, or to ``None`` for no header.
"""

from functools import wraps

DEFAULT_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
HEADER = "Content-Security-Policy"
_UNSET = object()


def csp_override(policy):
    """Decorate a view so that its HTML responses carry ``policy`` instead of the default."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            response = view(request, *args, **kwargs)
            response.csp = policy
            return response

        return wrapped

    return decorator


def csp_exempt(view):
    """Decorate a view whose responses must carry no policy from this middleware."""
    return csp_override(None)(view)


class ContentSecurityPolicyMiddleware:
    """Add the enforced policy to HTML responses that do not bring their own."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if HEADER in response:
            return response
        if not response.get("Content-Type", "").lower().startswith("text/html"):
            return response
        policy = getattr(response, "csp", _UNSET)
        if policy is _UNSET:
            policy = DEFAULT_POLICY
        if policy:
            response[HEADER] = policy
        return response

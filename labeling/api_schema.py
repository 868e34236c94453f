"""What the published OpenAPI schema covers, and the pages that serve it.

The schema documents the owners' API (:mod:`labeling.api`, :mod:`labeling.api_sites`,
:mod:`labeling.api_tokens`, :mod:`labeling.predict_api`).
The widget's and the worker page's endpoints are the public hot path and change with
it; they are documented in the README and left out here.
"""
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from labeling.middleware import csp_override

OWNER_API_MODULES = ("labeling.api", "labeling.api_sites", "labeling.api_tokens", "labeling.predict_api")

# Swagger UI sets inline styles; their scripts come from this origin (the sidecar).
DOCS_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)


class OwnerTokenScheme(OpenApiAuthenticationExtension):
    """``Authorization: Token <token>`` in the schema (found by drf-spectacular when this
    module is imported, as the URL configuration does)."""

    target_class = "labeling.authentication.OwnerTokenAuthentication"
    name = "ownerToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <token>`: a personal token made at /accounts/tokens/ or with manage.py",
        }


def owner_endpoints_only(endpoints, **kwargs):
    """drf-spectacular preprocessing hook: keep the owners' API endpoints only."""
    return [endpoint for endpoint in endpoints if endpoint[3].cls.__module__ in OWNER_API_MODULES]


schema_view = SpectacularAPIView.as_view()
swagger_view = csp_override(DOCS_POLICY)(SpectacularSwaggerSplitView.as_view(url_name="api-schema"))

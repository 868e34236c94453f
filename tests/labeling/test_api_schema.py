"""The published OpenAPI schema: valid, complete for the owners' API, served offline."""
import io
import re

import pytest
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

OPENAPI_JSON = "application/vnd.oai.openapi+json"
# The widget's and the worker page's endpoints: the public hot path, not in the schema.
PUBLIC_ROUTES = {
    "widget-challenge", "widget-challenge-answer", "widget-challenge-image", "widget-siteverify",
    "api-task-next", "api-task-answers", "api-answer-undo", "api-task-image",
    "api-schema", "api-docs",
}
HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def routes(resolver=None, prefix=""):
    """``(name, path, view)`` of every named URL pattern, with ``{param}`` paths."""
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            yield from routes(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern) and entry.name:
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", prefix + str(entry.pattern))
            yield entry.name, "/" + path, entry.callback


def owner_api_routes():
    return [(name, path, view) for name, path, view in routes() if path.startswith("/api/") and name not in PUBLIC_ROUTES]


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    with django_db_blocker.unblock():
        response = APIClient().get("/api/schema/", HTTP_ACCEPT=OPENAPI_JSON)
    assert response.status_code == 200, response.content[:300]
    return response.json()


def test_the_schema_is_valid_openapi(schema):
    validate_schema(schema)
    assert schema["openapi"].startswith("3.")


def test_every_owner_api_route_and_method_is_in_the_schema(schema):
    found = owner_api_routes()
    assert len(found) >= 11
    for name, path, view in found:
        assert path in schema["paths"], f"{name} ({path}) is missing from the schema"
        methods = {method for method in HTTP_METHODS if hasattr(view.cls, method)}
        assert methods and methods <= set(schema["paths"][path]), f"{name}: {methods} vs {set(schema['paths'][path])}"


def test_the_schema_holds_no_public_widget_or_worker_route(schema):
    assert not [path for path in schema["paths"] if re.search(r"/challenge|/siteverify|/next$|/answers|/tasks/", path)]


def test_owner_routes_take_the_owner_token(schema):
    scheme = schema["components"]["securitySchemes"]["ownerToken"]
    assert scheme == {**scheme, "type": "apiKey", "in": "header", "name": "Authorization"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert {"ownerToken": []} in operation["security"], f"{method} {path}"


def test_schema_generation_has_no_warnings():
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=io.StringIO())


def test_the_api_docs_load_only_files_of_this_origin(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "/static/drf_spectacular_sidecar/" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "the docs page loads something from elsewhere"
    assert "script-src 'self'" in response["Content-Security-Policy"]


def test_swagger_ui_initialises_from_a_script_of_this_origin(client):
    page = client.get("/api/docs/").content.decode()
    script = re.search(r'<script src="([^"]+\?script=[^"]*)"', page)
    assert script, page[:2000]
    response = client.get(script.group(1).replace("&amp;", "&"))
    assert response.status_code == 200 and "/api/schema/" in response.content.decode()

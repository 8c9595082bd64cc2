"""Browser-facing headers (SPEC §7): every HTML page has a Content-Security-Policy that forbids framing and
still lets the page load its own styles and scripts; every response is nosniff."""

from __future__ import annotations

import re

import pytest
from flask import Blueprint

from blueprints.security_headers import relax_policy
from tests.conftest import AUTH
from tests.support.admin import PASSWORD, app, cheap_hashing, create_order, fresh_panel_tokens, staff  # noqa: F401

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def policy(response) -> dict[str, list[str]]:
    """The Content-Security-Policy as {directive: sources}."""
    directives = [part.split() for part in response.headers["Content-Security-Policy"].split(";") if part.strip()]
    return {name: sources for name, *sources in directives}


def sources_for(csp: dict[str, list[str]], directive: str) -> list[str]:
    return csp.get(directive, csp.get("default-src", []))


@pytest.fixture
def console(app, client, cheap_hashing):  # noqa: F811
    staff(app)
    token = _TOKEN.search(client.get("/console/login").get_data(as_text=True)).group(1)
    client.post("/console/login", data={"email": "admin@example.test", "password": PASSWORD, "csrf_token": token})
    create_order(client, "order-1", telegramId=7, credit=5)
    return client


HTML_PAGES = ["/console/login", "/console/", "/console/?q=order-1", "/console/orders/order-1",
              "/console/orders/missing", "/api/docs"]


@pytest.mark.parametrize("path", HTML_PAGES)
def test_every_html_page_forbids_framing_and_sniffing(console, path):
    response = console.get(path)
    assert response.mimetype == "text/html"
    assert policy(response)["frame-ancestors"] == ["'none'"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    # same-origin, not no-referrer: Flask-WTF's HTTPS CSRF check compares the Referer of a form post.
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_html_error_pages_and_redirects_carry_the_policy_too(client):
    assert policy(client.get("/console/"))["frame-ancestors"] == ["'none'"]  # the redirect to the login
    assert policy(client.post("/console/login", data={}))["frame-ancestors"] == ["'none'"]  # CSRF refused


@pytest.mark.parametrize("path, headers", [
    ("/api/health", {}), ("/health", {}), ("/api/openapi.json", {}), ("/api/status/none", AUTH),
    ("/api/status/none", {}), ("/no/such/route", {}), ("/static/console.css", {}), ("/api/docs/init.js", {}),
])
def test_every_other_response_is_nosniff(client, path, headers):
    with client.get(path, headers=headers) as response:
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_a_status_read_answered_in_front_of_flask_is_nosniff_too(client):
    create_order(client, "status-1")
    response = client.get("/api/status/status-1", headers=AUTH)
    assert response.status_code == 200 and response.headers["X-Content-Type-Options"] == "nosniff"


def test_svg_qr_images_carry_a_policy_as_documents_do(client):
    create_order(client, "svg-1")
    response = client.get("/api/payment/svg-1/qr.svg")
    assert response.status_code == 200 and policy(response)["frame-ancestors"] == ["'none'"]


@pytest.mark.parametrize("path", HTML_PAGES)
def test_the_pages_own_styles_and_scripts_are_allowed(console, path):
    response = console.get(path)
    csp, page = policy(response), response.get_data(as_text=True)
    for url in re.findall(r'<(?:link|script|img)[^>]+(?:href|src)="([^"]+)"', page):
        assert url.startswith("/") and not url.startswith("//"), url  # same origin: 'self'
    if re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page):
        assert "'unsafe-inline'" in sources_for(csp, "script-src")
    if re.search(r"<style|\sstyle=", page):
        assert "'unsafe-inline'" in sources_for(csp, "style-src")
    assert not re.search(r"\son[a-z]+=", page), "inline event handlers need 'unsafe-inline'"
    assert "'self'" in sources_for(csp, "script-src") and "'self'" in sources_for(csp, "style-src")
    assert "'unsafe-eval'" not in sources_for(csp, "script-src")


def test_docs_page_allows_what_swagger_ui_draws_with(client):
    csp = policy(client.get("/api/docs"))
    assert "'unsafe-inline'" in csp["style-src"]  # Swagger UI sets style attributes on what it renders
    assert "data:" in csp["img-src"]  # its stylesheet's icons are data: URIs
    assert "'unsafe-inline'" not in sources_for(csp, "script-src")


def test_a_blueprint_can_allow_framing_by_named_sites(make_app):
    app = make_app()
    framed = Blueprint("framed", __name__, url_prefix="/framed")
    framed.add_url_rule("/", "page", lambda: "<!doctype html><p>in a frame</p>")
    relax_policy(framed, frame_ancestors="https://web.telegram.org")
    app.register_blueprint(framed)
    response = app.test_client().get("/framed/")
    assert policy(response)["frame-ancestors"] == ["https://web.telegram.org"]
    assert "X-Frame-Options" not in response.headers
    assert policy(app.test_client().get("/console/login"))["frame-ancestors"] == ["'none'"]

"""GET /api/openapi.json and GET /api/docs: the API description, and Swagger UI served from the installed package.

The page loads nothing from the internet: Swagger UI's files come from the
swagger-ui-bundle package, and its online validator badge is switched off.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, send_from_directory, url_for
from markupsafe import escape
from swagger_ui_bundle import swagger_ui_path

from blueprints.security_headers import relax_policy
from services import openapi
from services.errors import NotFound

bp = Blueprint("docs", __name__, url_prefix="/api")
# Swagger UI sets style attributes on what it renders, and its stylesheet's icons are data: URIs.
relax_policy(bp, style_src="'self' 'unsafe-inline'", img_src="'self' data:")

ASSETS = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "favicon-16x16.png"})

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="{css}">
<link rel="icon" type="image/png" href="{icon}">
</head>
<body>
<div id="swagger-ui" data-spec-url="{spec}"><noscript>The API description is at <a href="{spec}">{spec}</a>.</noscript></div>
<script src="{bundle}"></script>
<script src="{init}"></script>
</body>
</html>
"""

# Kept out of the page so a Content-Security-Policy without 'unsafe-inline' still allows it.
INIT = """window.addEventListener("load", function () {
  var node = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: node.getAttribute("data-spec-url"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
});
"""


@bp.get("/openapi.json")
def document():
    # Built once per app: the routes and settings it reflects do not change while the app runs.
    if "openapi" not in current_app.extensions:
        current_app.extensions["openapi"] = openapi.build_spec(current_app)
    return current_app.extensions["openapi"]


@bp.get("/docs")
def page():
    html = PAGE.format(
        title=escape(openapi.TITLE), spec=escape(url_for(".document")),
        css=escape(url_for(".asset", filename="swagger-ui.css")),
        icon=escape(url_for(".asset", filename="favicon-32x32.png")),
        bundle=escape(url_for(".asset", filename="swagger-ui-bundle.js")),
        init=escape(url_for(".init_script")))
    return Response(html, mimetype="text/html")


@bp.get("/docs/init.js")
def init_script():
    return Response(INIT, mimetype="text/javascript")


@bp.get("/docs/<filename>")
def asset(filename: str):
    if filename not in ASSETS:
        raise NotFound(f"No documentation asset {filename!r}.")
    return send_from_directory(swagger_ui_path, filename, max_age=86400)

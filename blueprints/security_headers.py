"""Browser-facing security headers: a Content-Security-Policy on every document, nosniff on every response.

Every HTML page (and SVG image, which a browser runs scripts in when opened directly) gets a policy that
allows only the page's own origin and forbids framing (clickjacking of the console's buttons). A blueprint
whose pages need more says so once with `relax_policy`: the docs page for Swagger UI's inline styles, and
later the Mini App page, which Telegram's web clients show in a frame.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, request

BASE_POLICY = {
    "default-src": "'self'",
    "base-uri": "'none'",
    "object-src": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
# Not no-referrer: the console's form posts keep a same-origin Referer (HTTPS CSRF checks compare it),
# and no other site learns a console address or an orderId from a link.
REFERRER_POLICY = "same-origin"
DOCUMENTS = frozenset({"text/html", "image/svg+xml"})
_POLICIES = "security_headers.policies"


def relax_policy(bp: Blueprint, **directives: str) -> None:
    """Replace directives of the base policy for `bp`'s responses; frame_ancestors=... for frame-ancestors."""
    overrides = {name.replace("_", "-"): value for name, value in directives.items()}

    def record(state) -> None:
        policies = state.app.extensions.setdefault(_POLICIES, {})
        policies[bp.name] = _header({**BASE_POLICY, **overrides})

    bp.record_once(record)


def register_security_headers(app: Flask) -> None:
    app.extensions.setdefault(_POLICIES, {})[None] = _header(BASE_POLICY)

    @app.after_request
    def _security_headers(response: Response) -> Response:
        response.headers["X-Content-Type-Options"] = "nosniff"
        if response.mimetype in DOCUMENTS:
            policies = current_app.extensions[_POLICIES]
            policy = policies.get(request.blueprint) or policies[None]
            response.headers.setdefault("Content-Security-Policy", policy)
            if "frame-ancestors 'none'" in policy:
                # For browsers older than frame-ancestors; a page that may be framed must not send it.
                response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("Referrer-Policy", REFERRER_POLICY)
        return response


def _header(policy: dict[str, str]) -> str:
    return "; ".join(f"{name} {sources}" for name, sources in policy.items())

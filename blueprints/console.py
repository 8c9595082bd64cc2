"""The support console (/console/): server-rendered pages for staff, cookie sessions, CSRF on every form.

CSRF is checked here, for this blueprint only: webhooks and the JSON APIs authenticate by signature or
bearer token and never carry a console token.
"""

from __future__ import annotations

import functools
import logging
import re
from datetime import datetime
from typing import Callable

from flask import Blueprint, Flask, Request, flash, g, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_wtf.csrf import generate_csrf, validate_csrf
from wtforms.validators import ValidationError

from blueprints.http import now, settings
from services import admin, audit, timeline, users
from services.panels import sync as panel
from services.errors import GatewayError
from services.money import normalized

logger = logging.getLogger(__name__)

bp = Blueprint("console", __name__, url_prefix="/console")


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Cookie sessions for the console only: the APIs and webhooks never use one, and opening one
    (a signing serializer per request) was a measurable share of a status request's CPU."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path != bp.url_prefix and not request.path.startswith(bp.url_prefix + "/"):
            return None
        return super().open_session(app, request)


class ConsoleForbidden(GatewayError):
    status = 403
    code = "forbidden"


class CsrfFailed(GatewayError):
    status = 400
    code = "csrf_failed"


@bp.context_processor
def _template_globals():
    return {"csrf_token": generate_csrf, "staff": g.get("staff")}


@bp.before_request
def _load_staff_and_check_csrf():
    g.staff = _session_staff()
    if request.method == "POST":
        try:
            validate_csrf(request.form.get("csrf_token"), time_limit=settings().console_session_seconds)
        except ValidationError as exc:
            raise CsrfFailed(f"The form has expired or was not sent by the console ({exc}). "
                             "Reload the page and try again.") from None
    if g.staff is None and request.endpoint not in ("console.login", "console.logout"):
        return redirect(url_for("console.login", next=request.full_path if request.method == "GET" else None))


def _session_staff() -> users.StaffUser | None:
    """The logged-in account, or None when the session is absent, too old, revoked by a logout, or its
    account is disabled."""
    staff_id, since = session.get("staff_id"), session.get("staff_since")
    if staff_id is None or since is None:
        return None
    if now().timestamp() - since > settings().console_session_seconds:
        session.clear()
        return None
    staff = users.get_active(staff_id)
    if staff is None or staff.session_version != session.get("staff_version"):
        session.clear()
        return None
    return staff


@bp.errorhandler(GatewayError)
def _error_page(exc: GatewayError):
    if request.endpoint == "console.login":
        # A refused login form (bad characters, expired CSRF token) is shown again, with the reason.
        return _login_form(exc.message, exc.status)
    return render_template("console/error.html", status=exc.status, message=exc.message), exc.status


def _login_form(error: str, status: int):
    return render_template("console/login.html", error=error, email=request.form.get("email", ""),
                           next=request.form.get("next", "")), status


def admin_only(view: Callable):
    """Support staff may read and resend; every other action needs the admin role."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if not g.staff.is_admin:
            raise ConsoleForbidden("This action needs the admin role.")
        return view(*args, **kwargs)
    return wrapper


def actor() -> str:
    return audit.staff_actor(g.staff.email)


# A console page: no scheme or host, and no control character, space or backslash (CR/LF would break the
# Location header; browsers read a backslash as a slash).
_LOCAL_TARGET = re.compile(r"/console/[^\x00-\x20\x7f\\]*")


def _back():
    """Where an action returns: the console page it was posted from, never another site."""
    target = request.form.get("next", "")
    if not _LOCAL_TARGET.fullmatch(target):
        target = url_for("console.index")
    return redirect(target, code=303)


def _act(action: Callable[[], str]):
    """Run a form action; its outcome is flashed on the page the form came from."""
    try:
        flash(action(), "ok")
    except GatewayError as exc:
        flash(exc.message, "error")
    return _back()


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        return render_template("console/login.html", next=request.args.get("next", ""))
    try:
        staff = users.authenticate(request.form.get("email", ""), request.form.get("password", ""),
                                   request.remote_addr or "", settings(), now())
    except users.LoginFailed as exc:
        return _login_form(exc.message, 401)
    # A fresh session on login, so nothing set before it (a planted id, an old CSRF token) carries over.
    session.clear()
    session.update(staff_id=staff.id, staff_since=int(now().timestamp()), staff_version=staff.session_version)
    logger.info("staff logged in", extra={"staff_id": staff.id})
    return _back()


@bp.post("/logout")
def logout():
    # Clearing the cookie is not enough: a copy of it (another device, a stolen one) must stop working too.
    if g.staff is not None:
        users.revoke_sessions(g.staff.id)
    session.clear()
    return redirect(url_for("console.login"), code=303)


@bp.get("/")
def index():
    query = request.args.get("q", "").strip()
    results = timeline.search_orders(query) if query else []
    if len(results) == 1 and results[0].order_id == query:
        return redirect(url_for("console.order", order_id=query))
    review = [] if query else timeline.needs_review()
    return render_template("console/index.html", query=query, results=results, review=review)


@bp.get("/orders/<order_id>")
def order(order_id: str):
    return render_template("console/order.html", **timeline.order_timeline(order_id))


@bp.post("/outbox/<row_id:outbox_id>/resend")
def resend(outbox_id: int):
    return _act(lambda: f"Queued again as message {admin.resend_notification(outbox_id, actor(), now())}.")


@bp.post("/outbox/<row_id:outbox_id>/replay")
@admin_only
def replay_delivery(outbox_id: int):
    return _act(lambda: f"Delivery {admin.replay_delivery(outbox_id, actor(), now()).id} is queued again.")


@bp.post("/events/<row_id:event_id>/assign")
@admin_only
def assign(event_id: int):
    def action() -> str:
        result = admin.assign_event(event_id, request.form.get("order_id", "").strip(),
                                    request.form.get("force") == "yes", actor(), settings(), now())
        forced = f" (accepted despite: {result.forced})" if result.forced else ""
        return f"Payment {result.event_id} {result.outcome.replace('_', ' ')} to {result.order_id}{forced}."
    return _act(action)


@bp.post("/purchases/<row_id:purchase_id>/refresh")
@admin_only
def refresh(purchase_id: int):
    return _act(lambda: "New subscription link: "
                        f"{panel.refresh_purchase(purchase_id, actor(), settings(), now())}")


@bp.post("/orders/<order_id>/replay")
@admin_only
def replay_order(order_id: str):
    def action() -> str:
        result = admin.replay_order(order_id, actor(), settings(), now())
        return f"Replayed {len(result.events)} failed event(s); {result.queued} message(s) queued."
    return _act(action)


@bp.app_template_filter("money")
def _money(value) -> str:
    return "" if value is None else str(normalized(value))


@bp.app_template_filter("when")
def _when(value) -> str:
    """Times as support reads them; other detail values as they are."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return "" if value is None else str(value)

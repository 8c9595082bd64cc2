"""Repeated provider webhooks answered in front of Flask: a repeat is a signature check and one read.

Providers retry every delivery they are unsure of, so repeats are frequent, and Flask's request context,
routing, hooks and response object cost more than the check and the read themselves (docs/performance.md).
A provider's blueprint module declares its webhook route (`REPEAT = RepeatRoute(...)`, collected by
blueprints.repeat_routes) with two pieces of its own receipt: the event key of an authentic delivery, and the
route's answer; providers that declare none (Telegram, YooKassa, the panels) are left to Flask. This layer answers a delivery whose
event is stored and settled with what the route would send — the same body, headers, request log line and
metrics — and hands everything else to Flask: a refused signature, a malformed or stale body, any body the
NUL guard reads, an unknown length. A new event goes on to the route with what the look-up found (nothing,
or the database's failure) handed to services/events.py, so the database is asked once either way.

tests/blueprints/test_repeat_reader.py holds the two paths together, provider by provider.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable

from flask import Flask

from blueprints.front_answer import answer, json_body
from blueprints.http import now, settings
from blueprints.input_guard import FORM, MULTIPART, headers_hold_nul
from blueprints.webhooks import environ_key
from services import events
from services.notices import IngestResult
from webhook_config import Settings

HeaderReader = Callable[[str], "str | None"]


@dataclass(frozen=True)
class RepeatRoute:
    """A provider webhook route whose repeats this layer may answer.

    key: the event key the route stores an authentic delivery under, given the raw body, a header reader, the
        settings and the time; it raises (or returns None) for anything the route must decide itself — a
        refused signature, a malformed body, a delivery the route flags — and the route then does it all, once.
    acknowledgement: the route's answer to a repeat: a dict (JSON) or a str (plain text).
    """

    path: str
    provider: str
    key: Callable[[bytes, HeaderReader, Settings, datetime], str | None]
    acknowledgement: Callable[[IngestResult], dict[str, Any] | str]


class RepeatReader:
    """WSGI middleware: `app.wsgi_app = RepeatReader(app, app.wsgi_app, routes)`, inside any ProxyFix."""

    def __init__(self, app: Flask, inner: Callable, routes: Iterable[RepeatRoute]):
        self.app, self.inner = app, inner
        self.routes = {route.path: route for route in routes}

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        route = self._route(environ)
        raw = self._body(environ) if route is not None else None
        if raw is None:
            return self.inner(environ, start_response)
        # Flask runs outside this app context: inside it, Flask would share this context's `g`.
        with self.app.app_context():
            found = self._look_up(route, raw, environ)
        if found is None:
            return self.inner(environ, start_response)
        if not isinstance(found, IngestResult):
            with events.looked_up(*found):
                return self.inner(environ, start_response)
        content_type, body = self._render(route.acknowledgement(found))
        return answer(environ, start_response, route.path, started, content_type, body, found.order_id or None)

    def _route(self, environ: dict[str, Any]) -> RepeatRoute | None:
        """The route of a plain webhook delivery this layer may answer; None sends the request to Flask."""
        route = self.routes.get(environ.get("PATH_INFO", ""))
        if route is None or environ.get("REQUEST_METHOD") != "POST" or environ.get("QUERY_STRING") \
                or self.app.debug:
            return None
        # Flask's NUL guard (blueprints/input_guard.py) reads form bodies and every header.
        mimetype = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
        if mimetype in (FORM, MULTIPART) or headers_hold_nul(environ):
            return None
        return route

    def _body(self, environ: dict[str, Any]) -> bytes | None:
        """The body, read here and put back for Flask; None (left unread) unless its length is given and allowed."""
        try:
            length = int(environ.get("CONTENT_LENGTH", ""))
        except ValueError:
            return None
        limit = self.app.config["MAX_CONTENT_LENGTH"]
        if length <= 0 or (limit is not None and length > limit):
            return None
        raw = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(raw)
        # A client gone before its body ended gets Flask's answer, which reads the same short body.
        return raw if len(raw) == length else None

    def _look_up(self, route: RepeatRoute, raw: bytes,
                 environ: dict[str, Any]) -> IngestResult | tuple[str, str, Exception | None] | None:
        """The stored event's answer; else what the look-up found for the route's ingest (nothing, or a
        failure); None when the route must receive the delivery itself."""
        try:
            key = route.key(raw, _header_reader(environ), settings(), now())
        except Exception:
            return None
        if key is None:
            return None
        try:
            return events.settled_repeat(route.provider, key) or (route.provider, key, None)
        except Exception as exc:
            return route.provider, key, exc

    def _render(self, acknowledgement: dict[str, Any] | str) -> tuple[str, bytes]:
        """As Flask renders a view's dict (jsonify) or str (text/plain)."""
        if isinstance(acknowledgement, str):
            return "text/plain; charset=utf-8", acknowledgement.encode()
        return "application/json", json_body(self.app, acknowledgement)


def _header_reader(environ: dict[str, Any]) -> HeaderReader:
    return lambda name: environ.get(environ_key(name))

"""Provider webhooks received in front of Flask: an authentic, plain delivery is read, looked up, stored and
answered here; everything the route must decide itself goes on to Flask.

Flask's request context, routing, hooks and response object cost more than a repeat's signature check and read,
and a fifth of a new webhook's CPU (docs/performance.md). A provider's blueprint module declares its webhook
route (`FRONT = FrontRoute(...)`, collected by blueprints.front_routes) with the pieces of its own receipt: how an
authentic delivery reads (its notice, and the provider's step that stores and applies it), the headers the inbox
keeps, and the route's answer; providers that declare none (Telegram, YooKassa, the panels) are left to Flask.

This layer answers with what the route would send — the same body, headers, log lines and metrics:
- an event stored and settled before: the duplicate answer, after one read (on PostgreSQL the event's claim,
  which finds it without writing: services/driver.py insert_or_find);
- a new event (or one whose processing failed): received by the provider's own step, as the route receives it.
It hands to Flask, untouched: a refused signature, a malformed or stale body (each read raises or says None, and
the route then logs and answers it, once), any body the NUL guard reads, an unknown length, debug mode. When the
look-up or the receipt raises (the database down), the request goes to the route with that failure handed to
services/events.py, which raises it again instead of asking the database twice: the route answers it (503).

tests/blueprints/test_webhook_reader.py holds the two paths together, provider by provider.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable

from flask import Flask, g

from blueprints.front_answer import answer, json_body
from blueprints.http import now, settings
from blueprints.input_guard import FORM, MULTIPART, headers_hold_nul
from blueprints.requests_log import REQUEST_ID_KEY, request_id_of
from blueprints.webhooks import delivery_of, environ_key
from services import events
from services.notices import Delivery, IngestResult, Notice
from webhook_config import Settings

HeaderReader = Callable[[str], "str | None"]


@dataclass(frozen=True)
class Receipt:
    """An authentic delivery as its route reads it: the notice, and the provider's step that stores and applies
    it (events.ingest itself, unless the provider does more first, as Buy Me a Coffee matches the order)."""

    notice: Notice
    receive: Callable[[Delivery, Notice, Settings, datetime], IngestResult] = events.ingest


@dataclass(frozen=True)
class FrontRoute:
    """A provider webhook route this layer may receive.

    read: the receipt of a delivery, given the raw body, a header reader, the settings and the time, made of the
        calls the route makes; it raises (or returns None) for anything the route must decide itself — a refused
        signature, a malformed body, a delivery the route flags — and the route then does it all, once.
    headers: the provider's headers the inbox keeps beside the common ones (blueprints/webhooks.py).
    acknowledgement: the route's answer: a dict (JSON) or a str (plain text).
    """

    path: str
    provider: str
    read: Callable[[bytes, HeaderReader, Settings, datetime], Receipt | None]
    headers: tuple[str, ...]
    acknowledgement: Callable[[IngestResult], dict[str, Any] | str]


class WebhookReader:
    """WSGI middleware: `app.wsgi_app = WebhookReader(app, app.wsgi_app, routes)`, inside any ProxyFix."""

    def __init__(self, app: Flask, inner: Callable, routes: Iterable[FrontRoute]):
        self.app, self.inner = app, inner
        self.routes = {route.path: route for route in routes}

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        route = self._route(environ)
        raw = self._body(environ) if route is not None else None
        if raw is None:
            return self.inner(environ, start_response)
        request_id = environ[REQUEST_ID_KEY] = request_id_of(environ)
        # Flask runs outside this app context: inside it, Flask would share this context's `g`.
        with self.app.app_context():
            # The log lines the receipt writes carry the request's id, as under Flask (services/logs.py).
            g.request_id = request_id
            found = self._receive(route, raw, environ)
        if found is None:
            return self.inner(environ, start_response)
        if not isinstance(found, IngestResult):
            with events.looked_up(*found):
                return self.inner(environ, start_response)
        content_type, body = self._render(route.acknowledgement(found))
        return answer(environ, start_response, route.path, started, content_type, body, request_id,
                      found.order_id or None)

    def _route(self, environ: dict[str, Any]) -> FrontRoute | None:
        """The route of a plain webhook delivery this layer may receive; None sends the request to Flask."""
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

    def _receive(self, route: FrontRoute, raw: bytes,
                 environ: dict[str, Any]) -> IngestResult | tuple[str, str, Exception] | None:
        """What came of the delivery; else the failure to hand to the route's receipt, or None when the route
        must read the delivery itself."""
        config, at = settings(), now()
        try:
            receipt = route.read(raw, _header_reader(environ), config, at)
        except Exception:
            return None
        if receipt is None:
            return None
        key = receipt.notice.event_key
        try:
            settled = events.settled_repeat(route.provider, key)
            if settled is not None:
                return settled
            with events.looked_up(route.provider, key):
                return receipt.receive(delivery_of(environ, raw, route.provider, route.headers), receipt.notice,
                                       config, at)
        except Exception as exc:
            return route.provider, key, exc

    def _render(self, acknowledgement: dict[str, Any] | str) -> tuple[str, bytes]:
        """As Flask renders a view's dict (jsonify) or str (text/plain)."""
        if isinstance(acknowledgement, str):
            return "text/plain; charset=utf-8", acknowledgement.encode()
        return "application/json", json_body(self.app, acknowledgement)


def _header_reader(environ: dict[str, Any]) -> HeaderReader:
    return lambda name: environ.get(environ_key(name))

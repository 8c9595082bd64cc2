"""The application factory: the one place that wires settings, extensions, blueprints and commands."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Callable, Mapping

import simplejson
from flask import Flask
from flask.json.provider import DefaultJSONProvider
from werkzeug.middleware.proxy_fix import ProxyFix

from blueprints import front_routes, register_blueprints
from blueprints.bounded_request import BoundedRequest
from blueprints.console import ConsoleSessionInterface
from blueprints.errors import register_error_handlers
from blueprints.input_guard import register_input_guard
from blueprints.requests_log import register_request_hooks
from blueprints.security_headers import register_security_headers
from blueprints.status_reader import StatusReader
from blueprints.webhook_reader import WebhookReader
from commands import register_commands
from services.db import db, migrate
from services.db_engine import configure_engine, engine_options
from services.logs import configure_logging
from webhook_config import default_database_url, load_settings, read_environment

ROOT = Path(__file__).resolve().parent


class GatewayFlask(Flask):
    """Flask, deciding once per view or hook whether it is a coroutine function: Flask's ensure_sync asks
    inspect on every call, six times per request."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._synced: dict[Callable, Callable] = {}

    def ensure_sync(self, func: Callable) -> Callable:
        synced = self._synced.get(func)
        if synced is None:
            synced = self._synced[func] = super().ensure_sync(func)
        return synced


class DecimalJSONProvider(DefaultJSONProvider):
    """JSON with Decimal emitted as an exact number (the stdlib would need float)."""

    def dumps(self, obj, **kwargs):
        kwargs.setdefault("use_decimal", True)
        kwargs.setdefault("ensure_ascii", False)
        kwargs.setdefault("default", self.default)
        return simplejson.dumps(obj, **kwargs)

    def loads(self, s, **kwargs):
        return simplejson.loads(s, use_decimal=True, **kwargs)


def create_app(environ: Mapping[str, str] | None = None) -> Flask:
    """Build the app from `environ` (default: the process environment over `.env`)."""
    app = GatewayFlask(__name__, instance_path=str(ROOT / "instance"))
    app.request_class = BoundedRequest
    env = read_environment(ROOT / ".env") if environ is None else dict(environ)
    settings = load_settings(env, Path(app.instance_path))
    configure_logging(settings.log_level)
    app.config.update(
        SETTINGS=settings,
        SECRET_KEY=settings.secret_key or _development_secret(Path(app.instance_path)),
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(settings.database_url, settings.database_pool_size,
                                                 settings.database_lock_timeout),
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.server_url.startswith("https://"),
    )
    if settings.database_url == default_database_url(Path(app.instance_path)):
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.json = DecimalJSONProvider(app)
    app.session_interface = ConsoleSessionInterface()
    # Inside ProxyFix, so both readers see the client's address as Flask does.
    app.wsgi_app = StatusReader(app, WebhookReader(app, app.wsgi_app, front_routes()))
    if settings.proxy_hops:
        hops = settings.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    with app.app_context():
        configure_engine(db.engine)
    register_request_hooks(app)
    register_input_guard(app)
    register_security_headers(app)
    register_error_handlers(app)
    register_blueprints(app)
    register_commands(app)
    return app


def _development_secret(instance: Path) -> str:
    """Outside production a missing SECRET_KEY is generated once and kept, so all workers share it."""
    instance.mkdir(parents=True, exist_ok=True)
    path = instance / "secret_key"
    try:
        with open(path, "x", encoding="ascii", opener=lambda name, flags: os.open(name, flags, 0o600)) as file:
            file.write(secrets.token_urlsafe(48))
    except FileExistsError:
        pass
    return path.read_text().strip()


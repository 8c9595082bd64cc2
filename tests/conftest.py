"""Fixtures: the app on the test database (SQLite, or PostgreSQL via TEST_DATABASE_URL), client, runner, fakes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest
from flask_migrate import upgrade

from services.db import db
from tests.fakes.conftest import (cryptopay, marzban, merchant, remnawave, sink, tbank, telegram,  # noqa: F401
                                  xui, xui_legacy, yookassa)
from tests.support.database import empty_tables, reset_schema, test_database_url
from tests.support.transactions import ConnectionHeldAcrossRequest
from webhook_app import create_app

API_TOKEN = "test-api-token-0123456789abcdef0123456789"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    """Migrated once per session with the real migrations."""
    url = test_database_url(tmp_path_factory.mktemp("db"))
    reset_schema(url)
    app = create_app({"DATABASE_URL": url, "APP_ENV": "testing", "LOG_LEVEL": "warning"})
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return url


@pytest.fixture(autouse=True)
def no_connection_across_http() -> Iterator[ConnectionHeldAcrossRequest]:
    """Fail any test in which an outbound request left while its thread held a database connection."""
    with ConnectionHeldAcrossRequest() as guard:
        yield guard
    if guard.violations:
        pytest.fail("\n\n".join(guard.violations), pytrace=False)


@pytest.fixture
def base_env(database_url) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "APP_ENV": "testing", "WEBHOOK_API_TOKEN": API_TOKEN,
            "LOG_LEVEL": "warning", "SERVER_URL": "https://pay.example.test"}


@pytest.fixture
def make_app(base_env):
    """Build an app with extra settings; every row is deleted afterwards."""
    apps = []

    def build(**overrides: str):
        app = create_app({**base_env, **overrides})
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield build
    cleaned = False
    for app in apps:
        with app.app_context():
            db.session.remove()
            if not cleaned and app.config["SETTINGS"].database_url == base_env["DATABASE_URL"]:
                empty_tables()
                cleaned = True
            db.engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class FrozenClock:
    """An injectable clock for tests: app.config["CLOCK"] = clock."""

    def __init__(self, start: datetime | None = None):
        self.now = start or datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock(app) -> FrozenClock:
    frozen = FrozenClock()
    app.config["CLOCK"] = frozen
    return frozen


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]

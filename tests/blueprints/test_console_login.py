"""Console sessions and logins (SPEC §7): logout revokes on the server; failed logins look and cost the same
for known, unknown, disabled and locked-out accounts; a lock-out holds one address, with backoff."""

from __future__ import annotations

import re

import pytest
from argon2 import PasswordHasher, profiles

from services import users
from services.audit import AuditLog
from services.db import db, transaction
from tests.support.admin import PASSWORD, app, fresh_panel_tokens, staff  # noqa: F401

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
ATTACKER, OFFICE = "203.0.113.7", "198.51.100.20"
WRONG = "wrong password!"


class CountingHasher:
    """argon2 at its cheapest, counting verify calls: the cost of a login, measured without a stopwatch."""

    def __init__(self):
        self.inner = PasswordHasher.from_parameters(profiles.CHEAPEST)
        self.verifies = 0

    def hash(self, password: str) -> str:
        return self.inner.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        self.verifies += 1
        return self.inner.verify(password_hash, password)

    def check_needs_rehash(self, password_hash: str) -> bool:
        return self.inner.check_needs_rehash(password_hash)


@pytest.fixture
def hasher(monkeypatch) -> CountingHasher:
    counting = CountingHasher()
    monkeypatch.setattr(users, "_hasher", counting)
    users._dummy_hash.cache_clear()
    yield counting
    users._dummy_hash.cache_clear()


def login(client, email: str = "admin@example.test", password: str = PASSWORD, address: str = ATTACKER):
    form = client.get("/console/login", environ_base={"REMOTE_ADDR": address}).get_data(as_text=True)
    return client.post("/console/login", environ_base={"REMOTE_ADDR": address}, data={
        "email": email, "password": password, "csrf_token": _TOKEN.search(form).group(1)})


def answer(response, email: str) -> tuple[int, str]:
    """What the person at the keyboard sees, less the per-request CSRF token and the e-mail they typed."""
    return response.status_code, _TOKEN.sub("", response.get_data(as_text=True)).replace(email, "EMAIL")


def logout(client):
    form = client.get("/console/").get_data(as_text=True)
    return client.post("/console/logout", data={"csrf_token": _TOKEN.search(form).group(1)})


# --- logout revokes the session -----------------------------------------------------------------------------

def test_logout_revokes_the_session_cookie_on_the_server(app, client, hasher):
    staff(app)
    assert login(client).status_code == 303
    stolen = client.get_cookie("session").value
    assert logout(client).status_code == 303
    client.set_cookie("session", stolen)
    response = client.get("/console/")
    assert response.status_code == 302 and response.location.startswith("/console/login")


def test_logout_ends_the_accounts_other_sessions_too(app, hasher):
    staff(app)
    laptop, phone = app.test_client(), app.test_client()
    assert login(laptop).status_code == 303 and login(phone, address=OFFICE).status_code == 303
    logout(laptop)
    assert phone.get("/console/").status_code == 302


def test_a_new_login_after_logout_works(app, client, hasher):
    staff(app)
    login(client)
    logout(client)
    assert login(client).status_code == 303 and client.get("/console/").status_code == 200


# --- failed logins: same answer, same cost -----------------------------------------------------------------

def failing_answers(app, hasher) -> dict[str, tuple[tuple[int, str], int]]:
    """Each kind of failure: what it answers and how many argon2 verifications it cost."""
    staff(app)
    staff(app, "gone@example.test", "support")
    app.test_cli_runner().invoke(args=["users", "disable", "--email", "gone@example.test"])
    outcomes = {}
    for kind, email in (("known", "admin@example.test"), ("unknown", "nobody@example.test"),
                        ("disabled", "gone@example.test")):
        before = hasher.verifies
        outcomes[kind] = (answer(login(app.test_client(), email, WRONG), email), hasher.verifies - before)
    return outcomes


def test_wrong_password_unknown_and_disabled_accounts_answer_alike_at_one_hash_each(app, hasher):
    outcomes = failing_answers(app, hasher)
    assert outcomes["known"][0][0] == 401
    assert {answer_ for answer_, _ in outcomes.values()} == {outcomes["known"][0]}
    assert [cost for _, cost in outcomes.values()] == [1, 1, 1]


def test_locked_out_known_and_unknown_emails_answer_alike_at_one_hash_each(app, client, hasher):
    staff(app)
    for email in ("admin@example.test", "nobody@example.test"):
        for _ in range(5):
            login(client, email, WRONG)
    locked = {}
    for email in ("admin@example.test", "nobody@example.test"):
        before = hasher.verifies
        locked[email] = (answer(login(client, email, PASSWORD), email), hasher.verifies - before)
    assert locked["admin@example.test"] == locked["nobody@example.test"]
    (status, page), cost = locked["admin@example.test"]
    assert status == 401 and "Too many failed logins" in page and cost == 1


# --- lock-out per address, with backoff -------------------------------------------------------------------

def test_lock_out_holds_the_address_that_failed_not_the_account(app, client, hasher):
    staff(app)
    for _ in range(5):
        assert login(client, password=WRONG).status_code == 401
    assert "Too many failed logins" in login(client).get_data(as_text=True)
    assert login(app.test_client(), address=OFFICE).status_code == 303


def test_lock_out_backs_off(app, client, hasher, clock):
    staff(app)
    for _ in range(5):
        login(client, password=WRONG)
    clock.advance(seconds=901)
    assert login(client, password=WRONG).status_code == 401  # the sixth failure: locked twice as long
    clock.advance(seconds=1799)
    assert "Too many failed logins" in login(client).get_data(as_text=True)
    clock.advance(seconds=2)
    assert login(client).status_code == 303
    with app.app_context(), transaction():
        assert db.session.execute(db.select(db.func.count()).select_from(AuditLog)
                                  .where(AuditLog.action == "users.lock")).scalar_one() == 2


def test_a_success_clears_the_addresses_failures(app, client, hasher):
    staff(app)
    for _ in range(4):
        login(client, password=WRONG)
    assert login(client).status_code == 303
    logout(client)
    for _ in range(4):
        login(client, password=WRONG)
    assert login(client).status_code == 303


def test_failures_are_forgotten_after_a_day(app, client, hasher, clock):
    staff(app)
    for _ in range(4):
        login(client, password=WRONG)
    clock.advance(days=1, seconds=1)
    login(client, password=WRONG)
    assert login(client).status_code == 303

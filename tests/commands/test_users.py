"""`flask users create/disable`: staff accounts with argon2 hashes."""

from __future__ import annotations

import pytest

from services import users
from services.audit import AuditLog
from services.db import db, transaction, utcnow
from tests.support.admin import cheap_hashing  # noqa: F401
from tests.support.admin import PASSWORD

pytestmark = pytest.mark.usefixtures("cheap_hashing")


def account(app, email: str) -> users.StaffUser | None:
    with app.app_context(), transaction():
        return db.session.execute(db.select(users.StaffUser).where(users.StaffUser.email == email)
                                  .execution_options(populate_existing=True)).scalar_one_or_none()


def test_create_with_password_from_stdin(app, runner):
    result = runner.invoke(args=["users", "create", "--email", "Ann@Example.test", "--role", "support",
                                 "--password-stdin"], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert "Created support account ann@example.test" in result.output
    user = account(app, "ann@example.test")
    assert user.role == "support" and user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash and PASSWORD not in result.output
    with app.app_context():
        staff = users.authenticate("ann@example.test", PASSWORD, "127.0.0.1", app.config["SETTINGS"], utcnow())
        assert staff.id == user.id
        with transaction():
            [entry] = db.session.execute(db.select(AuditLog)).scalars()
    assert (entry.action, entry.target, entry.actor.startswith("cli:")) == ("users.create", "staff:ann@example.test",
                                                                           True)


def test_create_prompts_twice_for_the_password(app, runner):
    result = runner.invoke(args=["users", "create", "--email", "bo@example.test", "--role", "admin"],
                           input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert account(app, "bo@example.test").role == "admin"


def test_create_refuses_a_mismatched_confirmation(app, runner):
    result = runner.invoke(args=["users", "create", "--email", "bo@example.test", "--role", "admin"],
                           input=f"{PASSWORD}\nsomething else entirely\n")
    assert result.exit_code != 0 and account(app, "bo@example.test") is None


@pytest.mark.parametrize("args, stdin, message", [
    (["--email", "x@example.test", "--role", "root"], PASSWORD, "Invalid value for '--role'"),
    (["--email", "not-an-email", "--role", "admin"], PASSWORD, "e-mail address is not valid"),
    (["--email", "x@example.test", "--role", "admin"], "short", "at least 12 characters"),
])
def test_create_refuses_bad_input(runner, args, stdin, message):
    result = runner.invoke(args=["users", "create", *args, "--password-stdin"], input=stdin + "\n")
    assert result.exit_code != 0 and message in result.output


def test_create_twice_is_refused(runner):
    args = ["users", "create", "--email", "ann@example.test", "--role", "support", "--password-stdin"]
    runner.invoke(args=args, input=PASSWORD + "\n")
    result = runner.invoke(args=args, input=PASSWORD + "\n")
    assert result.exit_code != 0 and "already exists" in result.output


def test_disable_blocks_login(app, runner):
    runner.invoke(args=["users", "create", "--email", "ann@example.test", "--role", "support", "--password-stdin"],
                  input=PASSWORD + "\n")
    result = runner.invoke(args=["users", "disable", "--email", "ANN@example.test"])
    assert result.exit_code == 0 and "Disabled ann@example.test" in result.output
    assert account(app, "ann@example.test").disabled
    with app.app_context(), pytest.raises(users.LoginFailed):
        users.authenticate("ann@example.test", PASSWORD, "127.0.0.1", app.config["SETTINGS"], utcnow())


def test_disable_unknown_account_fails(runner):
    result = runner.invoke(args=["users", "disable", "--email", "ghost@example.test"])
    assert result.exit_code != 0 and "No staff account" in result.output

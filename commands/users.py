"""`flask --app wsgi users …`: staff accounts of the support console."""

from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import AppGroup

from services import audit, users
from services.db import utcnow
from services.errors import GatewayError

def now():
    """The current time; tests replace the clock through app.config["CLOCK"]."""
    return current_app.config.get("CLOCK", utcnow)()


group = AppGroup("users", help="Staff accounts of the support console.")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        # One line, so `printf '%s\n' "$PASSWORD" | flask users create …` works; only the newline is dropped.
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@group.command("create")
@click.option("--email", required=True, help="The staff member's e-mail (their login).")
@click.option("--role", required=True, type=click.Choice(users.ROLES),
              help="support: read and resend notifications; admin: every action.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input instead of a prompt.")
def create(email: str, role: str, password_stdin: bool) -> None:
    """Create a console account; the password is stored as an argon2id hash."""
    try:
        user = users.create_user(email, role, _password(password_stdin), audit.cli_actor(), now())
    except GatewayError as exc:
        raise click.ClickException(_reason(exc)) from None
    click.echo(f"Created {user.role} account {user.email}.")


@group.command("disable")
@click.option("--email", required=True, help="The account to disable.")
def disable(email: str) -> None:
    """Disable an account: it can no longer log in, and its open sessions end."""
    try:
        user = users.disable_user(email, audit.cli_actor(), now())
    except GatewayError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"Disabled {user.email}.")


def _reason(exc: GatewayError) -> str:
    problems = "; ".join(f"{name} {', '.join(messages)}" for name, messages in (exc.fields or {}).items())
    return f"{exc.message} ({problems})" if problems else exc.message

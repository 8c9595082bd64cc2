"""`flask --app wsgi …` command groups: thin adapters over the same services the HTTP routes call."""

from __future__ import annotations

from importlib import import_module

from flask import Flask

# One module per area, each exposing `group` (a flask.cli.AppGroup).
COMMAND_MODULES: tuple[str, ...] = (
    "commands.orders",
    "commands.outbox",
    "commands.telegram",
    "commands.users",
    "commands.webhooks",
    "commands.worker",
)


def register_commands(app: Flask) -> None:
    for name in COMMAND_MODULES:
        app.cli.add_command(import_module(name).group)

"""`flask --app wsgi …` command groups: thin adapters over the same services the HTTP routes call."""

from __future__ import annotations

from importlib import import_module

from flask import Flask

from services.providers import registry

# One module per area, each exposing `group` (a flask.cli.AppGroup).
COMMAND_MODULES: tuple[str, ...] = (
    "commands.orders",
    "commands.outbox",
    "commands.users",
    "commands.webhooks",
    "commands.worker",
)


def register_commands(app: Flask) -> None:
    """The core's command groups, then each provider's own (e.g. `telegram set-webhook`)."""
    for name in COMMAND_MODULES:
        app.cli.add_command(import_module(name).group)
    for plugin in registry.plugins():
        if plugin.commands is not None:
            app.cli.add_command(plugin.commands)

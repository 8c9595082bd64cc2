"""HTTP adapters: parse, authenticate, call one service, render."""

from __future__ import annotations

from importlib import import_module

from flask import Flask
from werkzeug.routing import IntegerConverter

from blueprints.webhook_reader import FrontRoute
from services.db import ROW_ID_MAX

# One module per area or provider, each exposing `bp`.
BLUEPRINT_MODULES = (
    "blueprints.admin",
    "blueprints.api",
    "blueprints.bmc",
    "blueprints.console",
    "blueprints.cryptobot",
    "blueprints.docs",
    "blueprints.health",
    "blueprints.metrics",
    "blueprints.miniapp",
    "blueprints.pages",
    "blueprints.remnawave",
    "blueprints.sandbox",
    "blueprints.sbp",
    "blueprints.telegram",
    "blueprints.yookassa",
)


class RowIdConverter(IntegerConverter):
    """A table's integer id: larger numbers match no route (404) instead of overflowing the column."""

    def __init__(self, url_map, *args, **kwargs):
        super().__init__(url_map, max=ROW_ID_MAX)


def front_routes() -> list[FrontRoute]:
    """The provider webhook routes received in front of Flask: each module's FRONT, if any."""
    modules = (import_module(name) for name in BLUEPRINT_MODULES)
    return [module.FRONT for module in modules if hasattr(module, "FRONT")]


def register_blueprints(app: Flask) -> None:
    app.url_map.converters["row_id"] = RowIdConverter
    for name in BLUEPRINT_MODULES:
        app.register_blueprint(import_module(name).bp)

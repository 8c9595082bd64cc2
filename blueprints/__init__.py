"""HTTP adapters: parse, authenticate, call one service, render."""

from __future__ import annotations

from importlib import import_module

from flask import Flask

# One module per area or provider, each exposing `bp`.
BLUEPRINT_MODULES = (
    "blueprints.api",
    "blueprints.health",
    "blueprints.sandbox",
    "blueprints.sbp",
)


def register_blueprints(app: Flask) -> None:
    for name in BLUEPRINT_MODULES:
        app.register_blueprint(import_module(name).bp)

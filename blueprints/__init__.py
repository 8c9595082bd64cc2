"""HTTP adapters: parse, authenticate, call one service, render."""

from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from blueprints import api, health, sandbox, sbp

    for module in (api, health, sandbox, sbp):
        app.register_blueprint(module.bp)

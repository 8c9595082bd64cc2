"""The Flask hooks a request passes through, for the tests of the layers that answer in front of Flask."""

from __future__ import annotations

from flask import Flask

# What blueprints/status_reader.py and blueprints/webhook_reader.py do in place of Flask's hooks.
REPRODUCED = {
    "before_request_funcs": ["blueprints.input_guard.register_input_guard.<locals>._refuse_nul",
                             "blueprints.requests_log.register_request_hooks.<locals>._start"],
    "after_request_funcs": ["blueprints.requests_log.register_request_hooks.<locals>._finish",
                            "blueprints.security_headers.register_security_headers.<locals>._security_headers"],
    "teardown_request_funcs": [],
    "url_value_preprocessors": [],
}


def hooks_on(app: Flask, blueprint: str) -> dict[str, list[str]]:
    """Every request hook a request to `blueprint`'s routes passes through, by kind, as module.qualname."""
    return {kind: names(getattr(app, kind).get(None, []) + getattr(app, kind).get(blueprint, []))
            for kind in REPRODUCED}


def names(functions) -> list[str]:
    return sorted(f"{function.__module__}.{function.__qualname__}" for function in functions)

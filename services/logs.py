"""JSON logging: one object per line on stdout, with the request id and orderId where known."""

from __future__ import annotations

import logging
import sys
from typing import IO

from flask import g, has_app_context
from pythonjsonlogger.json import JsonFormatter

_SECRET_HINTS = ("token", "secret", "password", "signature", "authorization", "api_key")
# What every LogRecord has (none of them named like a secret), and the verdict on each other name seen so far.
_STANDARD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
assert not any(hint in name.lower() for name in _STANDARD_FIELDS for hint in _SECRET_HINTS)
_SECRET_NAMES: dict[str, bool] = {}


class RequestContextFilter(logging.Filter):
    """Adds request_id and order_id from the current request to every record.

    Read from `g`, where Flask's request hooks put them, and so does blueprints/webhook_reader.py, which receives
    webhooks in an app context of its own, in front of Flask.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if has_app_context():
            context = g._get_current_object()
            if not hasattr(record, "request_id") and "request_id" in context:
                record.request_id = context.request_id
            if not getattr(record, "order_id", None) and context.get("order_id"):
                record.order_id = context.get("order_id")
        # Only the fields a caller added can hold a secret; whether a name is one is decided once per name
        # (the scan of every attribute on every record cost more than formatting the line: bench/README.md).
        for key in vars(record).keys() - _STANDARD_FIELDS:
            secret = _SECRET_NAMES.get(key)
            if secret is None:
                secret = _SECRET_NAMES[key] = any(hint in key.lower() for hint in _SECRET_HINTS)
            if secret:
                setattr(record, key, "[redacted]")
        return True


def configure_logging(level: str) -> None:
    """Install the JSON handler on the root logger once per process."""
    # urllib3's debug lines show request paths, and Telegram's holds the bot token (/bot<token>/sendMessage).
    logging.getLogger("urllib3").setLevel(max(logging.getLevelName(level), logging.WARNING))
    root = logging.getLogger()
    if any(getattr(handler, "_webhook_json", False) for handler in root.handlers):
        root.setLevel(level)
        return
    root.addHandler(json_handler(sys.stdout))
    root.setLevel(level)


def json_handler(stream: IO[str]) -> logging.Handler:
    """One JSON object per line on `stream`, with the request id and orderId where known."""
    handler = logging.StreamHandler(stream)
    handler._webhook_json = True
    handler.setFormatter(JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    ))
    handler.addFilter(RequestContextFilter())
    return handler

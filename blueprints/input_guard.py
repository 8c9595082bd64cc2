"""The edge guard against bytes no column can hold: NUL in the path, query, headers, form or JSON body.

PostgreSQL refuses NUL in any text value (DataError), SQLite stores it and later comparisons misbehave; no
orderId, e-mail, plan or description needs one. Refusing it once here, before any view runs, covers every
route (SPEC §7) instead of each query. Provider webhook bodies are not checked: a signed event is stored as
raw bytes whatever it contains, and is flagged for support rather than refused.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request

from services.errors import GatewayError, InvalidRequest

FORM, MULTIPART = "application/x-www-form-urlencoded", "multipart/form-data"
# The two request headers a WSGI environ keeps without the HTTP_ prefix.
UNPREFIXED_HEADERS = frozenset({"CONTENT_TYPE", "CONTENT_LENGTH"})
NUL_MESSAGE = "must not contain NUL characters"


class InvalidCharacters(GatewayError):
    status = 400
    code = "invalid_characters"


def register_input_guard(app: Flask) -> None:
    @app.before_request
    def _refuse_nul():
        if _has_nul():
            raise InvalidCharacters("The request contains a NUL character, which no field may hold.")


def _has_nul() -> bool:
    current = request._get_current_object()
    # Percent-encoding can only spell NUL as %00, so the raw query and form bytes are enough: no parsing
    # on the hot webhook and status paths.
    if "\x00" in current.path or _encodes_nul(current.query_string):
        return True
    if headers_hold_nul(current.environ):
        return True
    mimetype = current.mimetype
    if mimetype == FORM:
        return _encodes_nul(current.get_data(cache=True))
    # Flask reads the console's form fields from a multipart body just the same.
    return mimetype == MULTIPART and any(
        "\x00" in name or "\x00" in value for name, value in current.form.items(multi=True))


def headers_hold_nul(environ: dict[str, Any]) -> bool:
    """Any request header holding NUL, read as the WSGI server gave it (request.headers would rebuild every name)."""
    return any("\x00" in value for key, value in environ.items()
               if isinstance(value, str) and (key.startswith("HTTP_") or key in UNPREFIXED_HEADERS))


def _encodes_nul(raw: bytes) -> bool:
    return b"%00" in raw or b"\x00" in raw


def refuse_nul_in_json(payload: dict[str, Any]) -> None:
    """422 naming each top-level field whose value (or any key or string nested in it) holds a NUL."""
    bad = [key for key, value in payload.items() if "\x00" in key or _nested_nul(value)]
    if bad:
        raise InvalidRequest("The request is not valid.", {key: [NUL_MESSAGE] for key in bad})


def _nested_nul(value: Any) -> bool:
    # Iterative: the JSON parser already bounds nesting, but a recursive walk would add its own limit.
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False

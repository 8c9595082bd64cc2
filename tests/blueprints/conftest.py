"""Fixtures shared by the HTTP adapters' tests."""

from __future__ import annotations

import io
import json
import logging

import pytest

from services.logs import json_handler


@pytest.fixture
def request_log():
    """The request log lines as the production handler writes them, parsed."""
    stream, logger = io.StringIO(), logging.getLogger("webhook.request")
    handler, level = json_handler(stream), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.setLevel(level)

"""Schemathesis against the app's own OpenAPI document: no 5xx, and every answer is one the document describes."""

from __future__ import annotations

import time

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from services.openapi import build_spec, operations
from tests.conftest import API_TOKEN, AUTH
from tests.helpers import assert_error
from tests.support.miniapp import buyer_init_data, write_catalog
from webhook_app import create_app

ADMIN_KEY = "test-admin-key-0123456789abcdef0123456789"
# positive_data_acceptance is left out: whether an amount's precision fits depends on the currency,
# and credit needs a telegramId; a JSON schema cannot say either, so valid-looking bodies get 422.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection, missing_required_header, ignored_auth,
          unsupported_method, allow_header_conformance]


class CurrentApp:
    """The WSGI app schemathesis calls: whichever `fuzz_app` the running test built (checks re-send requests too)."""

    app = None

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


CURRENT = CurrentApp()
# The document comes from an app that never touches its (in-memory) database; requests go to CURRENT.
schema = schemathesis.openapi.from_dict(build_spec(create_app({
    "DATABASE_URL": "sqlite://", "APP_ENV": "testing", "SECRET_KEY": "fuzz", "LOG_LEVEL": "warning"})))
schema.app = CURRENT


@pytest.fixture
def fuzz_app(make_app, cryptopay, telegram, marzban, yookassa, tmp_path):
    """Every provider configured (fakes on 127.0.0.1), so webhooks answer 401 to unsigned bodies rather than 503."""
    app = make_app(
        CATALOG_FILE=write_catalog(tmp_path),
        ADMIN_API_KEY=ADMIN_KEY, TBANK_TERMINAL_KEY="TinkoffBankTest", TBANK_PASSWORD="TinkoffBankTest",
        CRYPTOBOT_TOKEN=cryptopay.token, CRYPTOBOT_API_URL=cryptopay.api_url,
        TELEGRAM_BOT_TOKEN=telegram.bot_token, TELEGRAM_API_URL=telegram.api_url,
        TELEGRAM_WEBHOOK_SECRET="telegram-secret-0123456789abcdef0123",
        BMC_WEBHOOK_SECRET="bmc_test_secret_0123456789abcdef0123456789", BMC_PAGE_URL="https://buymeacoffee.test/x",
        PANEL_TYPE="marzban", MARZBAN_URL=marzban.url, MARZBAN_USERNAME=marzban.username,
        MARZBAN_PASSWORD=marzban.password, REMNAWAVE_WEBHOOK_SECRET="remnawaveSecret0123456789abcdef0123",
        YOOKASSA_SHOP_ID=yookassa.shop_id, YOOKASSA_SECRET_KEY=yookassa.secret_key, YOOKASSA_API_URL=yookassa.api_url)
    CURRENT.app = app
    yield app
    CURRENT.app = None


def credentials(case) -> dict[str, str]:
    """What the operation asks for: the API token, the admin key, or Mini App init data signed for the bot."""
    security = case.operation.definition.raw.get("security") or [{}]
    if "miniAppInitData" in security[0]:
        bot_token = CURRENT.app.config["SETTINGS"].telegram_bot_token
        return {"Authorization": f"tma {buyer_init_data(4242, int(time.time()), bot_token)}"}
    token = ADMIN_KEY if "adminKey" in security[0] else API_TOKEN
    return {"Authorization": f"Bearer {token}"}


@schema.parametrize()
@settings(max_examples=25, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_answers_only_what_it_documents(case, fuzz_app):
    case.call_and_validate(headers=credentials(case), checks=CHECKS)


# What the fuzzer found, pinned as plain examples.

@pytest.mark.parametrize("body", [
    '{"amount": 1, "orderId": "o-1", "description": "\\ud800"}',
    '{"amount": 1, "orderId": "o-1", "metadata": {"\\udfff": 1}}',
    "[" * 30000 + "]" * 30000,
])
def test_lone_surrogates_and_absurd_nesting_are_400_not_500(client, body):
    response = client.post("/api/payment", data=body, content_type="application/json", headers=AUTH)
    assert_error(response, 400, "malformed_payload")


def test_tbank_token_with_non_ascii_text_is_401_not_500(make_app):
    client = make_app(TBANK_TERMINAL_KEY="TinkoffBankTest", TBANK_PASSWORD="TinkoffBankTest").test_client()
    response = client.post("/webhook/sbp/tbank", json={"Token": "é", "TerminalKey": "TinkoffBankTest"})
    assert_error(response, 401, "invalid_signature")


def test_the_run_covers_every_admin_operation_with_the_admin_key():
    fuzzed = {(operation.method.upper(), operation.path): operation
              for operation in (result.ok() for result in schema.get_all_operations())}
    admin = [key for key in operations() if key[1].startswith("/admin/")]
    assert admin and set(admin) <= set(fuzzed)
    for key in admin:
        case = fuzzed[key].Case()
        assert credentials(case) == {"Authorization": f"Bearer {ADMIN_KEY}"}, key

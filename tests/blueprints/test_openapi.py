"""The OpenAPI document and the offline docs page: every JSON route described, errors and auth documented."""

from __future__ import annotations

import re

import pytest

from services import openapi
from services.schemas import ORDER_ID_PATTERN
from tests.helpers import assert_error


@pytest.fixture
def document(client) -> dict:
    response = client.get("/api/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


def operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def resolve(document: dict, node: dict) -> dict:
    while "$ref" in node:
        _, section, kind, name = node["$ref"].split("/")
        node = document[section][kind][name]
    return node


def test_every_json_route_is_described(app):
    assert openapi.undescribed_routes(app) == [], "describe them in CORE_OPERATIONS or the provider plugin"


def test_every_description_matches_a_route(app):
    served = {(method, openapi.openapi_path(rule)) for rule in app.url_map.iter_rules() for method in rule.methods}
    assert sorted(set(openapi.operations()) - served) == []


def test_document_lists_every_described_route(app, document):
    listed = {(method, path) for method, path, _ in operations(document)}
    assert listed == set(openapi.operations())


def test_document_header_and_security_schemes(document):
    assert document["openapi"].startswith("3.0")
    assert document["servers"] == [{"url": "https://pay.example.test"}]
    schemes = document["components"]["securitySchemes"]
    assert schemes["apiToken"] == {**schemes["apiToken"], "type": "http", "scheme": "bearer"}
    assert schemes["adminKey"] == {**schemes["adminKey"], "type": "http", "scheme": "bearer"}


def test_every_reference_resolves(document):
    text = str(document)
    for ref in set(re.findall(r"'\$ref': '([^']+)'", text)):
        _, section, kind, name = ref.split("/")
        assert name in document[section][kind], ref


def test_payment_creation_is_described_from_the_marshmallow_schemas(document):
    operation = document["paths"]["/api/payment"]["post"]
    assert operation["security"] == [{"apiToken": []}]
    body = resolve(document, operation["requestBody"]["content"]["application/json"]["schema"])
    assert body["required"] == ["amount", "orderId"] and body["additionalProperties"] is False
    assert body["properties"]["orderId"]["pattern"] == ORDER_ID_PATTERN
    assert body["properties"]["amount"] == {"type": "number", "minimum": 0, "exclusiveMinimum": True}
    assert body["properties"]["provider"]["enum"] == ["sbp", "cryptobot", "telegram", "bmc", "yookassa"]
    assert set(operation["responses"]) == {"200", "201", "400", "401", "409", "413", "415", "422", "502", "503"}
    created = resolve(document, operation["responses"]["201"]["content"]["application/json"]["schema"])
    assert {"qrcId", "qr", "qrImage", "payUrl", "invoiceLink", "paymentId", "expiresAt"} <= set(created["properties"])
    assert created["properties"]["success"] == {"type": "boolean", "enum": [True], "default": True}


@pytest.mark.parametrize("status", [400, 401, 404, 409, 413, 415, 422, 503])
def test_error_statuses_use_the_one_error_shape(document, status):
    response = document["components"]["responses"][f"Error{status}"]
    error = resolve(document, response["content"]["application/json"]["schema"])
    assert error["required"] == ["error"]
    detail = resolve(document, error["properties"]["error"])
    assert set(detail["properties"]) == {"code", "message", "fields"}
    assert response["headers"]["X-Request-ID"] == {"$ref": "#/components/headers/RequestId"}
    if status == 401:
        assert response["headers"]["WWW-Authenticate"]["required"] is True


def test_secured_operations_document_401_and_503(document):
    for method, path, operation in operations(document):
        if operation["security"]:
            assert {"401", "503"} <= set(operation["responses"]), f"{method} {path}"


def test_operations_with_path_parameters_document_404(document):
    for method, path, operation in operations(document):
        if "{" in path:
            assert "404" in operation["responses"], f"{method} {path}"
            names = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert names == set(re.findall(r"\{(\w+)\}", path))


@pytest.mark.parametrize("path, header", [
    ("/webhook/cryptobot", "Crypto-Pay-Api-Signature"),
    ("/bmc-webhook", "X-Signature-Sha256"),
    ("/webhook/telegram", "X-Telegram-Bot-Api-Secret-Token"),
])
def test_webhooks_document_their_signature_header_and_401(document, path, header):
    operation = document["paths"][path]["post"]
    assert operation["security"] == []
    assert {"in": "header", "name": header, "required": True}.items() <= operation["parameters"][0].items()
    assert {"200", "400", "401", "503"} <= set(operation["responses"])


def test_yookassa_notification_documents_the_address_check_not_a_signature(document):
    operation = document["paths"]["/webhook/yookassa"]["post"]
    assert operation["security"] == [] and "parameters" not in operation
    assert {"200", "400", "403", "502", "503"} <= set(operation["responses"]) and "401" not in operation["responses"]
    assert "YOOKASSA_ALLOWED_IPS" in operation["description"]
    assert resolve(document, operation["responses"]["403"])["description"].startswith("The client address")


def test_refund_and_payment_method_are_described(document):
    operation = document["paths"]["/admin/orders/{order_id}/refund"]["post"]
    assert {"200", "401", "404", "409", "422", "502", "503"} <= set(operation["responses"])
    result = resolve(document, operation["responses"]["200"]["content"]["application/json"]["schema"])
    assert {"orderId", "status", "refundId", "refundStatus", "outcome", "eventId"} <= set(result["properties"])
    payment = document["paths"]["/api/payment"]["post"]
    body = resolve(document, payment["requestBody"]["content"]["application/json"]["schema"])
    assert body["properties"]["paymentMethod"]["type"] == "string"
    created = resolve(document, payment["responses"]["201"]["content"]["application/json"]["schema"])
    assert {"paymentId", "paymentMethod"} <= set(created["properties"])


def test_tbank_notification_answers_plain_ok(document):
    operation = document["paths"]["/webhook/sbp/tbank"]["post"]
    assert operation["responses"]["200"]["content"] == {"text/plain": {"schema": {"type": "string", "enum": ["OK"]}}}
    assert "401" in operation["responses"]


def test_admin_operations_need_the_admin_key(document):
    admin = [operation for _, path, operation in operations(document) if path.startswith("/admin/")]
    assert admin and all(operation["security"] == [{"adminKey": []}] for operation in admin)


def test_public_operations_need_no_token(document):
    for path in ("/health", "/api/health", "/api/openapi.json", "/api/payment/{order_id}/qr.{fmt}"):
        assert document["paths"][path]["get"]["security"] == []


def test_schemas_of_extra_schema_modules_are_picked_up():
    assert "services.schemas" in openapi.schema_modules()
    assert all(name.endswith("_schemas") for name in openapi.schema_modules()[1:])


def test_docs_page_loads_nothing_from_outside(client):
    response = client.get("/api/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert 'data-spec-url="/api/openapi.json"' in page
    links = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert links and all(link.startswith("/api/") for link in links)
    for link in links:
        with client.get(link) as asset:
            assert asset.status_code == 200, link
            if link.endswith(".css"):
                assert not re.search(rb"url\(['\"]?(https?:)?//", asset.data)
    init = client.get("/api/docs/init.js").get_data(as_text=True)
    assert "validatorUrl: null" in init and "http" not in init


def test_unknown_docs_asset_is_json_404(client):
    assert_error(client.get("/api/docs/index.j2"), 404)
    assert_error(client.get("/api/docs/..%2Fswagger_ui_bundle%2F__init__.py"), 404)

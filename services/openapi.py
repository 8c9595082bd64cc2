"""The OpenAPI 3 document: the app's routes, described by one registry here, with the marshmallow schemas.

Views carry no documentation of their own. Each (method, path) the app serves is
described once in CORE_OPERATIONS or in its provider's plugin; request and response bodies name marshmallow
schemas (from services/schemas.py or any services/*_schemas.py) and apispec's
marshmallow plugin turns them into components. A route missing from the
registry is left out of the document, and `undescribed_routes` lists it so a
test can fail until someone describes it.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import re
from dataclasses import dataclass, field
from typing import Any

import marshmallow
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask
from werkzeug.routing import Rule

import services
from services.db import ROW_ID_MAX
from services.panels import registry as panels
from services.providers import registry
from services.schemas import MAX_TELEGRAM_ID, ORDER_ID_PATTERN, Amount

TITLE = "Payment webhook gateway"
VERSION = "1.0.0"
OPENAPI_VERSION = "3.0.3"
API_TOKEN, ADMIN_KEY, INIT_DATA = "apiToken", "adminKey", "miniAppInitData"
IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})
# Row ids are INTEGER columns.

# Routes that are not JSON endpoints and need no description.
NOT_JSON = (
    re.compile(r"^/console(/|$)"),
    re.compile(r"^/static/"),
    re.compile(r"^/api/docs(/|$)"),
    re.compile(r"^/metrics$"),
    re.compile(r"^/miniapp/$"),
    re.compile(r"^/paid$"),
    re.compile(r"/qr\.(png|svg|\{fmt\})$"),
)

ERRORS: dict[int, str] = {
    400: "The body is not valid JSON, or not the JSON object the endpoint expects; or the path, query or a "
         "header holds a NUL character.",
    401: "Missing or wrong credentials: the bearer token, the provider's signature, or the Mini App's init data.",
    403: "The client address is not one the provider sends from (a provider without signatures).",
    404: "No such resource (or a path parameter of the wrong form).",
    409: "The orderId already exists with different terms.",
    413: "The body is larger than MAX_BODY_BYTES.",
    415: "The body is not application/json.",
    422: "Valid JSON that fails validation; `error.fields` names each bad field.",
    502: "The provider refused the request; repeating it will not help.",
    503: "Not configured on this server, the database is unavailable, or a provider is unreachable; retry later.",
}

# Path parameters by name, wherever they appear.
PARAMETERS: dict[str, dict[str, Any]] = {
    "order_id": {"description": "The caller's orderId.", "schema": {"type": "string", "pattern": ORDER_ID_PATTERN}},
    "telegram_id": {"description": "The buyer's Telegram user id.",
                    "schema": {"type": "integer", "minimum": 0, "maximum": MAX_TELEGRAM_ID}},
    "qrc_id": {"description": "The sandbox SBP payment's qrcId.", "schema": {"type": "string"}},
    "fmt": {"description": "Image format.", "schema": {"type": "string", "enum": ["png", "svg"]}},
    "purchase_id": {"description": "A purchase id (`purchaseId` in the order status).",
                    "schema": {"type": "integer", "minimum": 0, "maximum": ROW_ID_MAX}},
    "event_id": {"description": "A stored provider event's id (`eventId` in acknowledgements and the console).",
                 "schema": {"type": "integer", "minimum": 0, "maximum": ROW_ID_MAX}},
}

# Inline bodies for what no marshmallow schema describes: provider payloads and webhook acknowledgements.
ACKNOWLEDGEMENT = {
    "type": "object", "required": ["success", "eventId", "outcome", "duplicate"],
    "properties": {
        "success": {"type": "boolean", "enum": [True]},
        "eventId": {"type": "integer"},
        "outcome": {"type": "string", "description": "processed, duplicate, ignored, unmatched, mismatch, "
                                                     "conflict, failed or assigned."},
        "duplicate": {"type": "boolean"},
    },
}
PROVIDER_PAYLOAD = {"type": "object", "additionalProperties": True}
OPENAPI_DOCUMENT = {"type": "object", "required": ["openapi", "info", "paths"],
                    "properties": {"openapi": {"type": "string"}}}


@dataclass(frozen=True)
class Operation:
    """How one route is documented. `body`/`response` name a marshmallow schema class or give a JSON schema."""

    summary: str
    tag: str
    response: str | dict[str, Any] | None
    description: str = ""
    security: str | None = None
    body: str | dict[str, Any] | None = None
    query: str | None = None
    status: int = 200
    also: tuple[int, ...] = ()
    errors: tuple[int, ...] = ()
    signature: tuple[str, str] | None = None
    text_response: str | None = None
    media: tuple[str, ...] = ()
    bodies: dict[int, str] = field(default_factory=dict)


def webhook(summary: str, header: str, explain: str, response: str | dict = ACKNOWLEDGEMENT) -> Operation:
    return Operation(
        summary, "webhooks", response, signature=(header, explain), body=PROVIDER_PAYLOAD, errors=(400, 413),
        description="Verified over the raw body before parsing, stored, and applied in one transaction; "
                    "a repeated event is acknowledged with 200 and changes nothing. 503 makes the provider retry.")


CORE_OPERATIONS: dict[tuple[str, str], Operation] = {
    ("POST", "/api/payment"): Operation(
        "Create a payment for an order", "payments", "PaymentResponseSchema", security=API_TOKEN,
        body="PaymentRequestSchema", status=201, also=(200,), errors=(409, 502),
        description="Idempotent by orderId: 201 when created, 200 with the same payment when repeated; "
                    "the same orderId with other terms is 409. The fields for paying depend on the provider."),
    ("GET", "/api/status/{order_id}"): Operation(
        "An order's status", "payments", "OrderStatusSchema", security=API_TOKEN),
    ("GET", "/api/balance/{telegram_id}"): Operation(
        "A buyer's credit balance", "payments", "BalanceSchema", security=API_TOKEN, errors=(422,),
        description="0 for a buyer never seen; 422 for an id beyond the documented maximum."),
    ("GET", "/api/payment/{order_id}/qr.{fmt}"): Operation(
        "The QR image of an SBP payment", "payments", None, media=("image/png", "image/svg+xml"),
        description="No token: the buyer's browser loads it. Served only while the order is pending and before "
                    "its expiresAt; 404 otherwise, the same as for an unknown orderId. Cacheable by the browser "
                    "until then (ETag, Cache-Control)."),
    ("GET", "/api/health"): Operation(
        "Health, with a database check", "health", "ApiHealthSchema", bodies={503: "ApiHealthSchema"}),
    ("GET", "/health"): Operation(
        "Health (Unix timestamp)", "health", "HealthSchema", bodies={503: "HealthSchema"}),
    ("GET", "/api/openapi.json"): Operation("This OpenAPI document", "meta", OPENAPI_DOCUMENT),
    ("POST", "/admin/update_configs/{purchase_id}"): Operation(
        "Refresh one purchase's subscription links", "admin", "RefreshResultSchema", security=ADMIN_KEY,
        errors=(502,), description="Refreshes the links on the panel and notifies the buyer. 502: the panel "
                                   "refused; 503: the panel is unreachable or PANEL_TYPE is not set."),
    ("POST", "/admin/update_configs"): Operation(
        "Refresh every active purchase's subscription links", "admin", "RefreshSummarySchema", security=ADMIN_KEY),
    ("POST", "/admin/orders/{order_id}/replay"): Operation(
        "Re-run an order's failed events, fulfilment and announcements", "admin", "ReplayResultSchema",
        security=ADMIN_KEY, description="Idempotent: only what is missing is added."),
    ("GET", "/admin/events"): Operation(
        "The events that need support", "admin", "SupportEventsSchema", security=ADMIN_KEY,
        query="EventsQuerySchema",
        description="Unmatched payments, mismatches, conflicts and processing failures, newest first, with "
                    "the ids /admin/events/{event_id}/assign takes. Page with `limit` and `before`."),
    ("POST", "/admin/orders/{order_id}/refund"): Operation(
        "Refund a paid order through its provider", "admin", "RefundResultSchema", security=ADMIN_KEY,
        errors=(409, 422, 502),
        description="Refunds the whole amount through the provider's API (providers with one). The reversal "
                    "(ledger, subscription, order.refunded) happens once, when the provider confirms: at once "
                    "when its reply says succeeded, else by its notification or reconciliation. 409: the order "
                    "is not paid; 422: its provider has no refund API. Repeating the call does not refund twice."),
    ("POST", "/admin/events/{event_id}/assign"): Operation(
        "Assign an unmatched payment to an order", "admin", "AssignResultSchema", security=ADMIN_KEY,
        body="AssignRequestSchema", errors=(409,),
        description="Idempotent; 409 when the event or the order cannot take the assignment (`force` accepts "
                    "an amount mismatch)."),
    ("GET", "/admin/purchases/{purchase_id}"): Operation(
        "A purchase with its orders", "admin", "PurchaseSchema", security=ADMIN_KEY),
    ("POST", "/api/subscriptions/{order_id}/cancel"): Operation(
        "Stop the renewals of a subscription the provider charges by itself", "payments", "CancellationSchema",
        security=API_TOKEN, also=(202,), errors=(404, 409, 502),
        description="Stars subscriptions (editUserStarSubscription): the paid period runs to its end. 200 when "
                    "done (also when it already was), 202 when queued for the provider's worker; 409 for an "
                    "order with no renewing subscription."),
    ("POST", "/miniapp/api/subscription/cancel"): Operation(
        "The buyer stops their own subscription's renewals", "miniapp", "CancellationSchema", security=INIT_DATA,
        body="MiniAppCancelRequestSchema", also=(202,), errors=(404, 409, 502),
        description="Without orderId: the buyer's newest subscription that renews. 404 for an order of "
                    "another buyer, or when the buyer has no subscription that renews."),
    ("GET", "/miniapp/api/catalog"): Operation(
        "The Mini App's products", "miniapp", "MiniAppCatalogSchema", security=INIT_DATA,
        description="The products of CATALOG_FILE; 503 when it is not set."),
    ("GET", "/miniapp/api/me"): Operation(
        "The Mini App buyer's balance, subscription and last orders", "miniapp", "MiniAppBuyerSchema",
        security=INIT_DATA, description="Only the buyer the init data names: their balance, the subscription "
                                        "that runs longest, and their last 20 orders, newest first."),
    ("POST", "/miniapp/api/orders"): Operation(
        "Buy a product of the catalogue", "miniapp", "PaymentResponseSchema", security=INIT_DATA,
        body="MiniAppOrderRequestSchema", status=201, errors=(502,),
        description="Creates the payment for the buyer the init data names, at the catalogue's price, with the "
                    "product's credit and subscription; any other field sent is ignored. The answer is POST "
                    "/api/payment's."),
}


@functools.cache
def operations() -> dict[tuple[str, str], Operation]:
    """The core's routes, then each provider's own (its webhook, its sandbox) and the panels', declared in
    their packages."""
    return {**CORE_OPERATIONS,
            **{key: operation for plugin in registry.plugins() for key, operation in plugin.operations.items()},
            **panels.operations()}


def schema_modules() -> list[str]:
    """services.schemas and every services/*_schemas.py: where request and response schemas live."""
    names = ["services.schemas"]
    names += sorted(f"services.{module.name}" for module in pkgutil.iter_modules(services.__path__)
                    if module.name.endswith("_schemas"))
    return names


_VARIABLE = re.compile(r"<(?:([^:<>]+):)?([A-Za-z_][A-Za-z0-9_]*)>")


def openapi_path(rule: Rule) -> str:
    """/api/status/<order_id> → /api/status/{order_id} (converters dropped)."""
    return _VARIABLE.sub(r"{\2}", rule.rule)


def _converters(rule: Rule) -> dict[str, str]:
    """Each path parameter's converter name ("default" when none is given)."""
    return {match.group(2): (match.group(1) or "default").split("(")[0]
            for match in _VARIABLE.finditer(rule.rule)}


def _routes(app: Flask) -> list[tuple[str, str, Rule]]:
    """(METHOD, OpenAPI path, rule) for everything the app serves, HEAD and OPTIONS aside."""
    return sorted((method, openapi_path(rule), rule) for rule in app.url_map.iter_rules()
                  for method in rule.methods or () if method not in IGNORED_METHODS)


def is_json_route(path: str, rule: Rule) -> bool:
    """False for HTML, images, static files, the docs page and /metrics."""
    return not (rule.endpoint == "static" or rule.endpoint.endswith(".static")
                or any(pattern.search(path) for pattern in NOT_JSON))


def undescribed_routes(app: Flask) -> list[str]:
    """JSON routes the app serves that operations() does not describe, as "METHOD /path"."""
    return [f"{method} {path}" for method, path, rule in _routes(app)
            if is_json_route(path, rule) and (method, path) not in operations()]


def build_spec(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of every described route `app` serves."""
    for module in schema_modules():
        importlib.import_module(module)
    plugin = MarshmallowPlugin()
    spec = APISpec(TITLE, VERSION, OPENAPI_VERSION, plugins=[plugin], info={"description": (
        "Creates payments, receives provider webhooks, fulfils paid orders exactly once. Every error is "
        "`{\"success\": false, \"error\": {\"code\", \"message\", \"fields\"?}}`; every response carries "
        "X-Request-ID.")}, servers=[{"url": app.config["SETTINGS"].server_url}])
    plugin.converter.add_attribute_function(_constant_and_amount)
    _components(spec)
    for method, path, rule in _routes(app):
        operation = operations().get((method, path))
        if operation is not None:
            spec.path(path=path, operations={method.lower(): _operation(operation, rule)})
    return spec.to_dict()


def _constant_and_amount(self, field_: marshmallow.fields.Field, **kwargs) -> dict[str, Any]:
    """fields.Constant as a one-value enum; amounts as positive numbers."""
    if isinstance(field_, marshmallow.fields.Constant):
        kind = {bool: "boolean", int: "integer", str: "string"}.get(type(field_.constant))
        return {"enum": [field_.constant], **({"type": kind} if kind else {})}
    if isinstance(field_, Amount):
        return {"minimum": 0, "exclusiveMinimum": True}
    return {}


def _components(spec: APISpec) -> None:
    spec.components.security_scheme(API_TOKEN, {"type": "http", "scheme": "bearer",
                                                "description": "One of the tokens in WEBHOOK_API_TOKEN."})
    spec.components.security_scheme(ADMIN_KEY, {"type": "http", "scheme": "bearer",
                                                "description": "One of the keys in ADMIN_API_KEY."})
    spec.components.security_scheme(INIT_DATA, {
        "type": "apiKey", "in": "header", "name": "Authorization",
        "description": "`tma <initData>`: Telegram.WebApp.initData, signed by Telegram (PROTOCOLS.md §10)."})
    spec.components.header("RequestId", {"description": "The request id, taken from the request when given.",
                                         "required": True, "schema": {"type": "string"}})
    for status, text in ERRORS.items():
        headers = {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}}
        if status == 401:
            headers["WWW-Authenticate"] = {"required": True, "schema": {"type": "string"}}
        spec.components.response(f"Error{status}", {
            "description": text, "headers": headers, "content": {"application/json": {"schema": "ErrorSchema"}}})


def _operation(operation: Operation, rule: Rule) -> dict[str, Any]:
    described: dict[str, Any] = {
        "operationId": rule.endpoint, "summary": operation.summary, "tags": [operation.tag],
        "responses": _responses(operation, rule),
    }
    if operation.description:
        described["description"] = operation.description
    parameters = [_path_parameter(name, converter) for name, converter in _converters(rule).items()]
    if operation.query:
        # apispec's marshmallow plugin spreads the schema into one query parameter per field.
        parameters.append({"in": "query", "schema": operation.query})
    if operation.signature:
        header, explain = operation.signature
        parameters.append({"in": "header", "name": header, "required": True, "description": explain,
                           "schema": {"type": "string"}})
    if parameters:
        described["parameters"] = parameters
    if operation.body is not None:
        described["requestBody"] = {"required": True, "content": {"application/json": {"schema": operation.body}}}
    described["security"] = [{operation.security: []}] if operation.security else []
    return described


def _path_parameter(name: str, converter: str) -> dict[str, Any]:
    known = PARAMETERS.get(name, {})
    schema = known.get("schema") or {"int": {"type": "integer", "minimum": 0},
                                     "row_id": {"type": "integer", "minimum": 0, "maximum": ROW_ID_MAX},
                                     "float": {"type": "number"}}.get(converter, {"type": "string"})
    return {"in": "path", "name": name, "required": True, "schema": schema,
            **({"description": known["description"]} if "description" in known else {})}


def _responses(operation: Operation, rule: Rule) -> dict[str, Any]:
    """Success bodies, then the errors the route can give: its own, plus those its auth, body and path imply."""
    request_id = {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}}
    responses: dict[str, Any] = {}
    for status in (operation.status, *operation.also):
        responses[str(status)] = {"description": "Success.", "headers": request_id, "content": _success(operation)}
    if operation.media:
        responses["304"] = {"description": "Not modified (If-None-Match).", "headers": request_id}
    # Any request may be refused at the edge (400: a NUL in its path, query or headers).
    errors = set(operation.errors) | {400, 503}
    if operation.security or operation.signature:
        errors.add(401)
    if operation.body is not None and operation.text_response is None and not operation.signature:
        errors |= {400, 413, 415, 422}
    if operation.query:
        errors.add(422)
    if rule.arguments:
        errors.add(404)
    for status in sorted(errors):
        if status in operation.bodies:
            responses[str(status)] = {"description": ERRORS[status], "headers": request_id,
                                      "content": {"application/json": {"schema": operation.bodies[status]}}}
        else:
            responses[str(status)] = {"$ref": f"#/components/responses/Error{status}"}
    return responses


def _success(operation: Operation) -> dict[str, Any]:
    if operation.media:
        return {media: {"schema": {"type": "string", "format": "binary"}} for media in operation.media}
    if operation.text_response is not None:
        return {"text/plain": {"schema": {"type": "string", "enum": [operation.text_response]}}}
    return {"application/json": {"schema": operation.response}}

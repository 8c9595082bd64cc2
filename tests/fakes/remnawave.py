"""Fake Remnawave panel API (v2.x, users keyed by uuid): users, revoke, extend, proxy check, signed webhooks."""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import re
import secrets
import string
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import requests

from .base import FakeServer, RecordedRequest, Response, json_response

_USERNAME = re.compile(r"^[A-Za-z0-9_-]{3,36}$")
_TAG = re.compile(r"^[A-Z0-9_]{1,16}$")
_SHORT_UUID_CHARS = string.ascii_letters + string.digits
STATUSES = ("ACTIVE", "DISABLED", "LIMITED", "EXPIRED")
STRATEGIES = ("NO_RESET", "DAY", "WEEK", "MONTH", "MONTH_ROLLING")
DEFAULT_SQUAD = "00000000-0000-4000-8000-000000000001"
# Codes and messages from the panel's libs/contract errors.ts (v2.x); the SDKs carry the same codes.
UNAUTHORIZED = (401, "A003", "Unauthorized")
FORBIDDEN = (403, "A068", "Forbidden")
USERNAME_TAKEN = (400, "A019", "User username already exists")
USER_NOT_FOUND = (404, "A025", "User not found")
BAD_STATUS = (400, "A089", "LIMITED and EXPIRED statuses are not allowed to be set manually.")
SQUAD_FAILED = (500, "A123", "Create user with internal squad error")


def remnawave_signature(secret: str, body: bytes) -> str:
    """X-Remnawave-Signature: hex HMAC-SHA256 of the raw body, keyed by WEBHOOK_SECRET_HEADER."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _short_uuid() -> str:
    return "".join(secrets.choice(_SHORT_UUID_CHARS) for _ in range(16))


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.astimezone(timezone.utc) if moment.tzinfo is not None else None


def _is_uuid(value: Any) -> bool:
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class _DropConnection(TimeoutError):
    """http.server discards the connection without a reply on TimeoutError: what the panel's proxy check does."""


class FakeRemnawave(FakeServer):
    """Remnawave REST API under {url}/api/; subscriptionUrl is {sub_public_url}/{shortUuid}."""

    def __init__(self, token: str = "remnawave-api-token", sub_public_url: str = "https://sub.example.com",
                 webhook_secret: str = "TestWebhookSecret123", port: int = 0) -> None:
        super().__init__(port)
        self.token = token
        self.sub_public_url = sub_public_url.rstrip("/")
        self.webhook_secret = webhook_secret
        self.require_proxy_headers = False
        self.forbidden_tokens: set[str] = set()
        self.squads: dict[str, str] = {DEFAULT_SQUAD: "Default-Squad"}
        self.users: dict[str, dict[str, Any]] = {}
        self.extend_calls = 0
        self._ids = itertools.count(1)

    def failure_body(self, status: int) -> Any:
        return self._error(status, "A001", "Server error", "/api/users").body

    def user(self, username: str) -> dict[str, Any]:
        """A copy of a user as the API shows it."""
        with self._lock:
            return self._view(self.users[username])

    def expire(self, username: str) -> None:
        """Let the panel's expiry job catch up with a user: status EXPIRED, expireAt in the past."""
        with self._lock:
            user = self.users[username]
            user["status"] = "EXPIRED"
            user["expireAt"] = min(user["expireAt"], _now() - timedelta(seconds=1))

    def subscription_is_current(self, subscription_url: str) -> bool:
        """Whether a subscription URL still works (its shortUuid was not revoked since)."""
        short = urlsplit(subscription_url).path.rstrip("/").rsplit("/", 1)[-1]
        with self._lock:
            return any(u["shortUuid"] == short for u in self.users.values())

    def webhook_body(self, event: str, username: str, timestamp: str | None = None,
                     meta: Any = None) -> bytes:
        """Compact JSON as the panel sends it: scope, event, timestamp, data (the user), meta."""
        body = {"scope": event.split(".", 1)[0], "event": event, "timestamp": timestamp or _iso(_now()),
                "data": self.user(username), "meta": meta}
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()

    def send_webhook(self, url: str, body: bytes, signature: str | None = None,
                     timeout: float = 10.0) -> requests.Response:
        """POST a webhook body signed like the panel (X-Remnawave-Signature, -Timestamp, User-Agent)."""
        headers = {"Content-Type": "application/json", "User-Agent": "Remnawave",
                   "X-Remnawave-Signature": signature or remnawave_signature(self.webhook_secret, body),
                   "X-Remnawave-Timestamp": json.loads(body).get("timestamp", "")}
        return requests.post(url, data=body, headers=headers, timeout=timeout)

    def _respond(self, req: RecordedRequest) -> Response:
        proto = req.headers.get("x-forwarded-proto", "")
        if self.require_proxy_headers and not (req.headers.get("x-forwarded-for") and proto == "https"):
            with self._changed:
                self._requests.append(replace(req, status=0))
                self._changed.notify_all()
            raise _DropConnection("proxy check failed")
        return super()._respond(req)

    def handle(self, req: RecordedRequest) -> Response:
        if not req.path.startswith("/api/"):
            return self._not_found_route(req)
        auth = req.headers.get("authorization", "")
        given = auth[7:].strip() if auth.startswith("Bearer ") else ""
        if given and given in self.forbidden_tokens:
            return self._error(*FORBIDDEN, req.path)
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            return self._error(*UNAUTHORIZED, req.path)
        body = req.json if isinstance(req.json, dict) else {}
        with self._lock:
            return self._route(req, body)

    def _route(self, req: RecordedRequest, body: dict[str, Any]) -> Response:
        path, method = req.path.rstrip("/"), req.method
        if path == "/api/users" and method == "POST":
            return self._create(body, path)
        if path == "/api/users" and method == "PATCH":
            return self._update(body, path)
        by_name = re.fullmatch(r"/api/users/by-username/([^/]+)", path)
        if by_name and method == "GET":
            user = self.users.get(by_name.group(1))
            return self._ok(self._view(user)) if user else self._error(*USER_NOT_FOUND, path)
        action = re.fullmatch(r"/api/users/([^/]+)(?:/actions/(revoke|extend))?", path)
        if action is None or (method, action.group(2)) not in (("GET", None), ("POST", "revoke"), ("POST", "extend")):
            return self._not_found_route(req)
        if not _is_uuid(action.group(1)):
            return self._invalid(path, [("uuid", "invalid_string", "Invalid uuid")])
        user = next((u for u in self.users.values() if u["uuid"] == action.group(1)), None)
        if user is None:
            return self._error(*USER_NOT_FOUND, path)
        if action.group(2) == "revoke":
            return self._revoke(user, body, path)
        if action.group(2) == "extend":
            return self._extend(user, body, path)
        return self._ok(self._view(user))

    def _create(self, body: dict[str, Any], path: str) -> Response:
        issues = self._check_fields(body)
        if not isinstance(body.get("username"), str) or not _USERNAME.match(body["username"]):
            issues.append(("username", "invalid_string", "Username: 3-36 of A-Z a-z 0-9 _ -"))
        if _parse_time(body.get("expireAt")) is None:
            issues.append(("expireAt", "invalid_string", "Invalid date format"))
        if body.get("status", "ACTIVE") not in STATUSES:
            issues.append(("status", "invalid_enum_value", f"Expected one of {STATUSES}"))
        if issues:
            return self._invalid(path, issues)
        if body["username"] in self.users:
            return self._error(*USERNAME_TAKEN, path)
        if any(s not in self.squads for s in body.get("activeInternalSquads") or []):
            return self._error(*SQUAD_FAILED, path)
        now = _now()
        self.users[body["username"]] = {
            "uuid": str(uuid.uuid4()), "id": next(self._ids), "shortUuid": body.get("shortUuid") or _short_uuid(),
            "username": body["username"], "status": body.get("status", "ACTIVE"),
            "trafficLimitBytes": body.get("trafficLimitBytes", 0),
            "trafficLimitStrategy": body.get("trafficLimitStrategy", "NO_RESET"),
            "expireAt": _parse_time(body["expireAt"]), "telegramId": body.get("telegramId"),
            "email": body.get("email"), "description": body.get("description"), "tag": body.get("tag"),
            "hwidDeviceLimit": body.get("hwidDeviceLimit"), "externalSquadUuid": None,
            "trojanPassword": secrets.token_urlsafe(18)[:24], "vlessUuid": str(uuid.uuid4()),
            "ssPassword": secrets.token_urlsafe(18)[:24], "lastTriggeredThreshold": 0, "subRevokedAt": None,
            "subLastUserAgent": None, "subLastOpenedAt": None, "lastTrafficResetAt": None,
            "createdAt": now, "updatedAt": now, "activeInternalSquads": list(body.get("activeInternalSquads") or []),
        }
        return self._ok(self._view(self.users[body["username"]]), 201)

    def _update(self, body: dict[str, Any], path: str) -> Response:
        if body.get("uuid") is not None:
            user = next((u for u in self.users.values() if u["uuid"] == body["uuid"]), None)
        elif body.get("username") is not None:
            user = self.users.get(body["username"])
        else:
            return self._invalid(path, [("uuid", "custom", "Either uuid or username must be provided")])
        issues = self._check_fields(body)
        expire_at = _parse_time(body.get("expireAt"))
        if "expireAt" in body and (expire_at is None or expire_at <= _now()):
            issues.append(("expireAt", "custom", "expireAt must be a date in the future"))
        if issues:
            return self._invalid(path, issues)
        if user is None:
            return self._error(*USER_NOT_FOUND, path)
        if body.get("status") not in (None, "ACTIVE", "DISABLED"):
            return self._error(*BAD_STATUS, path)
        if any(s not in self.squads for s in body.get("activeInternalSquads") or []):
            return self._error(*SQUAD_FAILED, path)
        for key in ("status", "trafficLimitBytes", "trafficLimitStrategy", "telegramId", "email", "description",
                    "tag", "hwidDeviceLimit", "activeInternalSquads"):
            if key in body:
                user[key] = body[key]
        if expire_at is not None:
            user["expireAt"] = expire_at
            # A new future expiry revives an expired user, as the panel's update does.
            if user["status"] == "EXPIRED":
                user["status"] = "ACTIVE"
        user["updatedAt"] = _now()
        return self._ok(self._view(user))

    def _revoke(self, user: dict[str, Any], body: dict[str, Any], path: str) -> Response:
        short = body.get("shortUuid")
        if short is not None and (not isinstance(short, str) or not re.fullmatch(r"[A-Za-z0-9_-]{6,48}", short)):
            return self._invalid(path, [("shortUuid", "invalid_string", "Invalid shortUuid")])
        if not body.get("revokeOnlyPasswords"):
            user["shortUuid"] = short or _short_uuid()
        user.update({"vlessUuid": str(uuid.uuid4()), "trojanPassword": secrets.token_urlsafe(18)[:24],
                     "ssPassword": secrets.token_urlsafe(18)[:24], "subRevokedAt": _now(), "updatedAt": _now()})
        return self._ok(self._view(user))

    def _extend(self, user: dict[str, Any], body: dict[str, Any], path: str) -> Response:
        days = body.get("days")
        if not _is_count(days) or days < 1:
            return self._invalid(path, [("days", "too_small", "days must be a positive integer")])
        self.extend_calls += 1
        # Relative on purpose, as in the panel: each retry adds the days again.
        if user["status"] == "EXPIRED":
            user.update({"status": "ACTIVE", "expireAt": _now() + timedelta(days=days)})
        else:
            user["expireAt"] += timedelta(days=days)
        user["updatedAt"] = _now()
        return self._ok(self._view(user))

    @staticmethod
    def _check_fields(body: dict[str, Any]) -> list[tuple[str, str, str]]:
        issues = []
        for key in ("trafficLimitBytes", "hwidDeviceLimit"):
            if body.get(key) is not None and not _is_count(body[key]):
                issues.append((key, "invalid_type", f"{key} must be an integer >= 0"))
        if body.get("trafficLimitStrategy") is not None and body["trafficLimitStrategy"] not in STRATEGIES:
            issues.append(("trafficLimitStrategy", "invalid_enum_value", f"Expected one of {STRATEGIES}"))
        telegram_id = body.get("telegramId")
        if telegram_id is not None and (not isinstance(telegram_id, int) or isinstance(telegram_id, bool)):
            issues.append(("telegramId", "invalid_type", "Expected integer or null"))
        squads = body.get("activeInternalSquads")
        if squads is not None and (not isinstance(squads, list) or not all(_is_uuid(s) for s in squads)):
            issues.append(("activeInternalSquads", "invalid_string", "Expected an array of uuids"))
        if body.get("tag") is not None and not (isinstance(body["tag"], str) and _TAG.match(body["tag"])):
            issues.append(("tag", "invalid_string", "Tag: up to 16 of A-Z 0-9 _"))
        return issues

    def _view(self, user: dict[str, Any]) -> dict[str, Any]:
        view = copy.deepcopy(user)
        for key in ("expireAt", "createdAt", "updatedAt", "subRevokedAt"):
            if view[key] is not None:
                view[key] = _iso(view[key])
        view["activeInternalSquads"] = [{"uuid": s, "name": self.squads[s]} for s in user["activeInternalSquads"]]
        view["subscriptionUrl"] = f"{self.sub_public_url}/{user['shortUuid']}"
        view["userTraffic"] = {"usedTrafficBytes": 0, "lifetimeUsedTrafficBytes": 0, "onlineAt": None,
                               "firstConnectedAt": None, "lastConnectedNodeUuid": None}
        return view

    @staticmethod
    def _ok(result: Any, status: int = 200) -> Response:
        return json_response({"response": result}, status)

    @staticmethod
    def _error(status: int, code: str, message: str, path: str) -> Response:
        return json_response({"timestamp": _iso(_now()), "path": path, "message": message, "errorCode": code},
                             status)

    @staticmethod
    def _invalid(path: str, issues: list[tuple[str, str, str]]) -> Response:
        # nestjs-zod's ZodValidationPipe shape (PROTOCOLS.md §8 marks it *verify*).
        return json_response({"statusCode": 400, "message": "Validation failed", "errors": [
            {"code": code, "message": message, "path": [field]} for field, code, message in issues]}, 400)

    @staticmethod
    def _not_found_route(req: RecordedRequest) -> Response:
        # NestJS's answer for a route it does not know.
        return json_response({"message": f"Cannot {req.method} {req.path}", "error": "Not Found",
                              "statusCode": 404}, 404)

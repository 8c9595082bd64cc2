"""Recording a scripted run for the golden test: HTTP steps, what the fakes received, normalisation, comparison.

Everything here looks at the gateway from outside (HTTP responses, requests the fake servers received,
CLI results), so it keeps working whatever the gateway's modules are called.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import simplejson
from standardwebhooks.webhooks import Webhook

from tests.fakes import FakeServer, RecordedRequest, crc16_ccitt_false, verify_standard_webhook

# Response headers left out: a per-request random id, and a length that follows the (normalised) body.
SKIPPED_RESPONSE_HEADERS = frozenset({"x-request-id", "content-length"})
# Headers of a merchant webhook that are recorded as sent (webhook-signature is recorded as a check, below).
MERCHANT_HEADERS = ("content-type", "user-agent", "webhook-id", "webhook-timestamp")

# JSON encodings a body may have been written in; the one that reproduces the exact bytes is recorded
# with the parsed body, so the golden file stays readable and still pins every byte.
_FORMATS = (("compact", {"separators": (",", ":")}), ("spaced", {"separators": (", ", ": ")}))

# Row ids of the gateway's database, wherever they show: by JSON key in parsed bodies, and by these
# patterns in any text (paths, error messages, merchant webhook bodies, webhook-ids).
ID_KEYS = {"eventId": "eventId", "purchaseId": "purchaseId"}
ID_PATTERNS = (
    (r"\bmsg_(?P<v>\d+)", "outboxId"),
    (r'"eventId":\s*(?P<v>\d+)', "eventId"),
    (r'"purchaseId":\s*(?P<v>\d+)', "purchaseId"),
    (r"/admin/events/(?P<v>\d+)", "eventId"),
    (r"/admin/(?:purchases|update_configs)/(?P<v>\d+)", "purchaseId"),
    (r"\bEvent (?P<v>\d+)\b", "eventId"),
    (r"\bevent with id (?P<v>\d+)", "eventId"),
)
# An NSPK link's crc covers the random qrcId: it is checked against the link, then replaced by the verdict.
_NSPK_CRC = re.compile(r"(https://qr\.nspk\.ru/[A-Z0-9]+\?[^\s\"&]*(?:&[^\s\"&]+)*?)&crc=([0-9A-Fa-f]{4})")


def body_view(raw: bytes) -> dict[str, Any]:
    """A body as recorded: parsed JSON plus the encoding that reproduces it byte for byte, else its text."""
    if not raw:
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"bytes_hex": raw.hex()}
    try:
        parsed = simplejson.loads(text, use_decimal=True)
    except ValueError:
        return {"text": text}
    for name, options in _FORMATS:
        for ascii_only in (False, True):
            dumped = simplejson.dumps(parsed, use_decimal=True, ensure_ascii=ascii_only, **options)
            for ending in ("", "\n"):
                if dumped + ending == text:
                    label = name + (", ascii" if ascii_only else "") + (", newline" if ending else "")
                    return {"json": parsed, "format": label}
    return {"text": text}


class Recorder:
    """Runs the script's steps and keeps a record of each; `clock` moves one second after every step."""

    def __init__(self, clock, fakes: dict[str, FakeServer], merchant_secret: str):
        self.clock = clock
        self.fakes = fakes
        self.merchant_secret = merchant_secret
        self.steps: list[dict[str, Any]] = []
        self.tokens: dict[str, tuple[str, int]] = {}

    def note_token(self, value: str, category: str, keep: int = 0) -> None:
        """A random value (from a fake or the gateway) to replace wherever it appears, its first `keep`
        characters kept in front of the placeholder (a qrcId's prefix tells sandbox from T-Bank)."""
        if value:
            self.tokens[value] = (category, keep)

    def http(self, client, step: str, method: str, path: str, *, json_body: Any = None, raw: bytes | None = None,
             headers: dict[str, str] | None = None, content_type: str | None = None):
        """One request through the Flask test client; the response is returned for the script to use."""
        if json_body is not None:
            raw = json.dumps(json_body, ensure_ascii=False, separators=(",", ":")).encode()
            content_type = content_type or "application/json"
        marks = self._marks()
        response = client.open(path, method=method, data=raw, headers=headers or {}, content_type=content_type)
        data = response.get_data()
        record: dict[str, Any] = {
            "step": step,
            "request": {"method": method, "path": path, **body_view(raw or b"")},
            "response": {
                "status": response.status_code,
                "headers": {name: value for name, value in response.headers.items()
                            if name.lower() not in SKIPPED_RESPONSE_HEADERS},
                **body_view(data),
            },
        }
        self._finish(record, marks)
        return response

    def cli(self, app, step: str, args: list[str]) -> None:
        """A CLI command through the app's runner (the merchant and Telegram workers)."""
        marks = self._marks()
        result = app.test_cli_runner().invoke(args=args)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        self._finish({"step": step, "cli": args, "exit_code": result.exit_code, "output": result.output}, marks)

    def _marks(self) -> dict[str, int]:
        return {name: len(fake.requests) for name, fake in self.fakes.items()}

    def _finish(self, record: dict[str, Any], marks: dict[str, int]) -> None:
        received = [self._outbound(name, request)
                    for name, fake in self.fakes.items() for request in fake.requests[marks[name]:]]
        if received:
            record["received_by_fakes"] = received
        self.steps.append(record)
        self.clock.advance(seconds=1)

    def _outbound(self, name: str, request: RecordedRequest) -> dict[str, Any]:
        item: dict[str, Any] = {"fake": name, "method": request.method, "path": request.path,
                                "answered": request.status}
        if name != "merchant":
            item["content-type"] = request.headers.get("content-type")
            item.update(body_view(request.body))
            return item
        # A merchant webhook: the headers and the exact body text; the signature is checked here against
        # the real id, and recorded again over the normalised id and body (filled in by `normalised`).
        msg_id, stamp = request.headers.get("webhook-id", ""), request.headers.get("webhook-timestamp", "")
        presented = request.headers.get("webhook-signature", "")
        item["headers"] = {header: request.headers.get(header) for header in MERCHANT_HEADERS}
        item["signature"] = {
            "verifies_with_standardwebhooks": _standard_webhooks_verifies(
                self.merchant_secret, msg_id, stamp, presented, request.body),
            "verifies_with_fake_merchant": verify_standard_webhook(
                self.merchant_secret, request.headers, request.body, tolerance=None) is None,
            "v1_over_normalised": None,
        }
        item["body"] = request.body.decode("utf-8")
        return item

    def normalised(self) -> dict[str, Any]:
        """The record with every run-dependent value replaced by a placeholder, in order of first appearance."""
        normaliser = Normaliser(self.tokens)
        steps = normaliser.walk(self.steps)
        for step in steps:
            for item in step.get("received_by_fakes", []):
                if item["fake"] == "merchant":
                    headers = item["headers"]
                    item["signature"]["v1_over_normalised"] = Webhook(self.merchant_secret).sign(
                        headers["webhook-id"] or "", _moment(headers["webhook-timestamp"]), item["body"])
        return {"steps": steps}


def _moment(stamp: str | None) -> datetime:
    return datetime.fromtimestamp(int(stamp or 0), timezone.utc)


def _standard_webhooks_verifies(secret: str, msg_id: str, stamp: str, presented: str, body: bytes) -> bool:
    """Whether one of the presented v1 signatures is the standardwebhooks signature of id.timestamp.body.

    Webhook.verify would also refuse the frozen clock's timestamp as too old, so the signature is
    recomputed with Webhook.sign and compared instead.
    """
    if not (msg_id and stamp.isdigit() and presented):
        return False
    expected = Webhook(secret).sign(msg_id, _moment(stamp), body.decode("utf-8"))
    return expected in presented.split()


class Normaliser:
    """Replaces each distinct run-dependent value by `<category#n>`, numbered in order of first appearance."""

    def __init__(self, tokens: dict[str, tuple[str, int]]):
        self.tokens = tokens
        self.numbers: dict[tuple[str, str], str] = {}
        self.counts: dict[str, int] = {}
        alternatives = [f"(?:{pattern.replace('(?P<v>', f'(?P<v{index}>')})"
                        for index, (pattern, _) in enumerate(ID_PATTERNS)]
        if tokens:
            alternatives.append("(?P<token>" + "|".join(
                re.escape(token) for token in sorted(tokens, key=len, reverse=True)) + ")")
        self.pattern = re.compile("|".join(alternatives))

    def placeholder(self, category: str, value: Any) -> str:
        key = (category, str(value))
        if key not in self.numbers:
            self.counts[category] = self.counts.get(category, 0) + 1
            self.numbers[key] = f"<{category}#{self.counts[category]}>"
        return self.numbers[key]

    def walk(self, node: Any, key: str | None = None) -> Any:
        if isinstance(node, dict):
            return {name: self.walk(value, name) for name, value in node.items()}
        if isinstance(node, list):
            return [self.walk(value) for value in node]
        if isinstance(node, str):
            return self.text(node)
        if key in ID_KEYS and isinstance(node, int) and not isinstance(node, bool):
            return self.placeholder(ID_KEYS[key], node)
        return node

    def text(self, text: str) -> str:
        text = _NSPK_CRC.sub(_crc_verdict, text)
        return self.pattern.sub(self._replace, text)

    def _replace(self, match: re.Match) -> str:
        token = match.groupdict().get("token")
        if token is not None:
            category, keep = self.tokens[token]
            return token[:keep] + self.placeholder(category, token)
        for index, (_, category) in enumerate(ID_PATTERNS):
            group = f"v{index}"
            if match.group(group) is not None:
                start, end = match.start(group) - match.start(), match.end(group) - match.start()
                whole = match.group(0)
                return whole[:start] + self.placeholder(category, match.group(group)) + whole[end:]
        raise AssertionError(f"unexpected match {match.group(0)!r}")


def _crc_verdict(match: re.Match) -> str:
    base, crc = match.group(1), match.group(2)
    if f"{crc16_ccitt_false(base.encode()):04X}" == crc:
        return f"{base}&crc=<valid crc>"
    return f"{base}&crc=<WRONG crc {crc}>"


def dump(data: Any) -> str:
    """The golden file's text: indented UTF-8 JSON, exact decimals, keys in the order recorded."""
    return simplejson.dumps(data, use_decimal=True, ensure_ascii=False, indent=2) + "\n"


def check_golden(path: Path, data: Any) -> None:
    """Compare with the golden file, failing with a diff; with UPDATE_GOLDEN=1 in the environment, rewrite it."""
    text = dump(data)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"{path} is missing: run this test with UPDATE_GOLDEN=1 to write it.", pytrace=False)
    expected = path.read_text(encoding="utf-8")
    if text == expected:
        return
    pytest.fail(_report(path, expected, text), pytrace=False)


def _report(path: Path, expected: str, actual: str, max_lines: int = 400) -> str:
    try:
        golden_steps = json.loads(expected).get("steps", [])
    except ValueError:
        golden_steps = []
    run_steps = json.loads(actual)["steps"]
    changed = [f"  #{index} {step.get('step')}" for index, (before, step)
               in enumerate(zip(golden_steps, run_steps)) if before != step]
    if len(golden_steps) != len(run_steps):
        changed.append(f"  step count: golden {len(golden_steps)}, this run {len(run_steps)}")
    diff = _diff(expected.splitlines(keepends=True), actual.splitlines(keepends=True))
    shown = "".join(diff[:max_lines])
    more = f"\n… {len(diff) - max_lines} more diff lines" if len(diff) > max_lines else ""
    return (f"The scripted run no longer matches {path.name}.\nSteps that differ:\n" + "\n".join(changed)
            + f"\n\n--- {path.name} (golden)\n+++ this run\n{shown}{more}\n\n"
            "If the change is intended, rewrite the golden file with UPDATE_GOLDEN=1 and review its diff "
            "before committing.")


def _diff(golden: list[str], run: list[str], context: int = 3, fine_limit: int = 100) -> list[str]:
    """A unified-style diff whose changed lines carry ndiff's `?` markers under the characters that differ
    (a merchant webhook body is one long line)."""
    lines: list[str] = []
    matcher = difflib.SequenceMatcher(None, golden, run, autojunk=False)
    for group in matcher.get_grouped_opcodes(context):
        lines.append(f"@@ golden line {group[0][1] + 1}, this run line {group[0][3] + 1} @@\n")
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                lines += ["  " + line for line in golden[i1:i2]]
            elif tag == "replace" and max(i2 - i1, j2 - j1) <= fine_limit:
                marked = difflib.ndiff(golden[i1:i2], run[j1:j2])
                lines += [line if line.endswith("\n") else line + "\n" for line in marked]
            else:
                lines += ["- " + line for line in golden[i1:i2]] + ["+ " + line for line in run[j1:j2]]
    return lines


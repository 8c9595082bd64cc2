"""The one HMAC-SHA256 check for providers that sign the raw body (CryptoBot, Buy Me a Coffee, panels)."""

from __future__ import annotations

import hashlib
import hmac

from services.errors import SignatureInvalid


def hmac_sha256_hex(key: bytes, raw_body: bytes) -> str:
    """Lower-case hex HMAC-SHA256 of the exact bytes received."""
    return hmac.new(key, raw_body, hashlib.sha256).hexdigest()


def verify_hex_hmac(raw_body: bytes, header_value: str | None, key: bytes, header_name: str) -> None:
    """Raise SignatureInvalid unless the header holds the body's hex HMAC under `key` (constant time)."""
    presented = (header_value or "").strip().lower()
    if not presented:
        raise SignatureInvalid(f"The {header_name} header is missing.")
    expected = hmac_sha256_hex(key, raw_body)
    if not hmac.compare_digest(expected.encode("ascii"), presented.encode("utf-8", "replace")):
        raise SignatureInvalid(f"The {header_name} does not match the body.")

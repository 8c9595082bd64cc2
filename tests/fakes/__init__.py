"""Fake provider HTTP servers for tests: an independent oracle of each provider's protocol."""

from .base import FakeServer, RecordedRequest, Response, json_response
from .cryptopay import FakeCryptoPay, crypto_pay_signature
from .marzban import FakeMarzban
from .merchant import Delivery, FakeMerchant, standard_webhook_signature, verify_standard_webhook
from .tbank import FakeTBank, crc16_ccitt_false, sbp_link, tbank_token
from .telegram import FakeTelegram

__all__ = [
    "Delivery", "FakeCryptoPay", "FakeMarzban", "FakeMerchant", "FakeServer", "FakeTBank", "FakeTelegram",
    "RecordedRequest", "Response", "crc16_ccitt_false", "crypto_pay_signature", "json_response", "sbp_link",
    "standard_webhook_signature", "tbank_token", "verify_standard_webhook",
]

"""Amount rules: exact decimals, the number of decimal places each currency allows."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

MAX_AMOUNT = Decimal("1000000000")
# The finest amount any currency here has (crypto assets: 8 places).
SMALLEST_UNIT = Decimal("1e-8")
# A provider's amount longer than this is no amount: it is never handed to Decimal or the database.
MAX_AMOUNT_TEXT = 40
STARS = "XTR"
# Crypto Pay assets; amounts in them may carry up to 8 decimal places.
CRYPTO_ASSETS = frozenset({"USDT", "TON", "BTC", "ETH", "LTC", "BNB", "TRX", "USDC", "SOL", "DOGE", "NOT", "GRAM"})
ISO_FIAT = frozenset({"RUB", "USD", "EUR", "BYN", "UAH", "GBP", "CNY", "KZT", "UZS", "GEL", "TRY", "AMD", "THB",
                      "INR", "BRL", "IDR", "AZN", "AED", "PLN", "ILS", "KGS", "TJS", "CAD", "AUD", "JPY", "CHF"})


def decimal_places(currency: str) -> int:
    """How many decimal places an amount in this currency may have."""
    if currency == STARS:
        return 0
    if currency in CRYPTO_ASSETS:
        return 8
    return 2


def check_amount(amount: Decimal, currency: str) -> str | None:
    """Why this amount is not acceptable in this currency, or None when it is."""
    if not amount.is_finite() or amount <= 0:
        return "must be greater than 0"
    if amount > MAX_AMOUNT:
        return f"must be at most {MAX_AMOUNT}"
    places = decimal_places(currency)
    if amount.as_tuple().exponent < -places and amount != round(amount, places):
        return "must be a whole number" if places == 0 else f"must have at most {places} decimal places"
    return None


def parse_decimal(value: object) -> Decimal | None:
    """A provider's amount (number or string, never float) as Decimal; None when it is not a usable amount.

    The bounds are those of /api/payment: a signed event may still carry `1e999999999`, which would make
    SQLite write a billion digits and overflow PostgreSQL's NUMERIC; such an event is kept, its amount unusable.
    """
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip()
    if len(text) > MAX_AMOUNT_TEXT:
        return None
    try:
        amount = Decimal(text)
    except (InvalidOperation, ValueError):
        return None
    if not amount.is_finite():
        return None
    if amount.is_zero():
        # 0E-999999999 is zero too, but written out in full it has a billion digits.
        return Decimal(0)
    # adjusted() reads the exponent without arithmetic, which would overflow for 1e999999999.
    if not -9 <= amount.adjusted() <= 9 or abs(amount) > MAX_AMOUNT:
        return None
    return amount if amount == amount.quantize(SMALLEST_UNIT) else None


def normalized(amount: Decimal) -> Decimal:
    """100.00 → 100, 1.50 → 1.5, without switching to exponent notation."""
    if amount == amount.to_integral_value():
        return amount.quantize(Decimal(1))
    return amount.normalize()


def to_minor_units(amount: Decimal, places: int = 2) -> int:
    """Exact conversion to integer minor units (kopecks for RUB)."""
    minor = amount.scaleb(places)
    if minor != minor.to_integral_value():
        raise ValueError(f"{amount} has more than {places} decimal places")
    return int(minor)

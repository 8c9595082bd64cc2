"""QR images of SBP links, rendered once per link and format, for orders that can still be paid."""

from __future__ import annotations

import hashlib
import io
from datetime import datetime
from functools import lru_cache

import qrcode
import qrcode.image.svg
from qrcode.constants import ERROR_CORRECT_M
from sqlalchemy import bindparam, select

from services.db import reading
from services.errors import NotFound
from services.models import Order
from services.orders import PENDING

FORMATS = {"png": "image/png", "svg": "image/svg+xml"}
# One answer for an unknown orderId and for one that is paid, expired or not SBP: the image needs no
# token, so it must not tell which orderIds exist, nor keep showing a code that settles nothing.
NO_QR = "No payable QR code has this orderId."
_PAYABLE = select(Order.status, Order.expires_at, Order.provider_data).where(Order.order_id == bindparam("order_id"))


def payable_link(order_id: str, now: datetime) -> tuple[str, datetime]:
    """The SBP link of an order still awaiting payment, and until when it can be paid; NotFound otherwise."""
    with reading() as connection:
        row = connection.execute(_PAYABLE, {"order_id": order_id}).one_or_none()
    link = row.provider_data.get("qr") if row is not None else None
    if not link or row.status != PENDING or row.expires_at <= now:
        raise NotFound(NO_QR)
    return link, row.expires_at


@lru_cache(maxsize=512)
def render(link: str, fmt: str) -> bytes:
    """PNG or SVG bytes of a QR code encoding `link`."""
    factory = qrcode.image.svg.SvgPathImage if fmt == "svg" else None
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=8, border=4, image_factory=factory)
    code.add_data(link)
    code.make(fit=True)
    buffer = io.BytesIO()
    code.make_image().save(buffer)
    return buffer.getvalue()


def etag(link: str, fmt: str) -> str:
    return hashlib.sha256(f"{fmt}:{link}".encode()).hexdigest()[:32]

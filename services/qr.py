"""QR images of SBP links, rendered once per link and format."""

from __future__ import annotations

import hashlib
import io
from functools import lru_cache

import qrcode
import qrcode.image.svg
from qrcode.constants import ERROR_CORRECT_M

FORMATS = {"png": "image/png", "svg": "image/svg+xml"}


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

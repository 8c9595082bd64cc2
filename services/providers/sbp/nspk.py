"""SBP (NSPK) QR links: `https://qr.nspk.ru/<qrcId>?type=02&bank=…&sum=<kopecks>&cur=RUB&crc=<CRC-16>`."""

from __future__ import annotations

import re
import secrets
import string

QR_HOST = "https://qr.nspk.ru/"
QRC_ID_PATTERN = re.compile(r"^[A-Z0-9]{32}$")
_LINK_PATTERN = re.compile(r"^https://qr\.nspk\.ru/([A-Z0-9]{32})(\?.*)?$")


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), the checksum NSPK appends as `crc`."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def build_link(qrc_id: str, bank: str, kopecks: int, dynamic: bool = True) -> str:
    base = f"{QR_HOST}{qrc_id}?type={'02' if dynamic else '01'}&bank={bank}&sum={kopecks}&cur=RUB"
    return f"{base}&crc={crc16_ccitt_false(base.encode()):04X}"


def new_qrc_id(prefix: str = "BD") -> str:
    alphabet = string.ascii_uppercase + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(32 - len(prefix)))


def qrc_id_from_link(link: str) -> str | None:
    match = _LINK_PATTERN.match(link)
    return match.group(1) if match else None

"""Console login throttling per (e-mail, client address), with backoff.

Keyed by the e-mail as typed, whether or not an account has it: a locked-out unknown e-mail answers
exactly like a locked-out real one, so the lock-out tells nobody which accounts exist. Keyed by the
address too: someone guessing from one place slows down that place only, never the real user elsewhere.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta

from sqlalchemy import Integer, String, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from services import audit
from services.db import UTCDateTime, db, transaction
from services.driver import insert_ignore
from webhook_config import Settings

logger = logging.getLogger(__name__)

# Failures older than this are forgotten (and their rows deleted).
FORGET_AFTER = timedelta(days=1)
# The longest lock-out, however many failures: backoff doubles up to here.
MAX_LOCKOUT = timedelta(days=1)


class LoginThrottle(db.Model):
    """Recent failed logins of one e-mail from one address."""

    __tablename__ = "login_throttles"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    failures: Mapped[int] = mapped_column(Integer)
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_failure_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


def throttle_key(email: str, address: str) -> str:
    """A fixed-length key: the e-mail may be as long as a form allows, and is not stored as typed."""
    return hashlib.sha256(f"{email}\n{address}".encode()).hexdigest()


def blocked_until(key: str, now: datetime) -> datetime | None:
    """Until when logins for this key are refused, or None when they are not."""
    until = db.session.execute(select(LoginThrottle.blocked_until).where(LoginThrottle.key == key)).scalar()
    return until if until is not None and until > now else None


def record_failure(key: str, email: str, address: str, settings: Settings, now: datetime) -> None:
    """Count a failed login; the Nth in a row locks the key, each later one twice as long as the last."""
    with transaction():
        insert_ignore(LoginThrottle, {"key": key, "failures": 0, "last_failure_at": now}, ["key"])
        row = db.session.execute(select(LoginThrottle).where(LoginThrottle.key == key).with_for_update()
                                 .execution_options(populate_existing=True)).scalar_one()
        if now - row.last_failure_at > FORGET_AFTER:
            row.failures = 0
        row.failures += 1
        row.last_failure_at = now
        beyond = row.failures - settings.console_lockout_attempts
        if beyond >= 0:
            lockout = min(timedelta(seconds=settings.console_lockout_seconds) * 2 ** min(beyond, 20), MAX_LOCKOUT)
            row.blocked_until = now + lockout
            audit.record("system", "users.lock", f"staff:{email}", now, address=address,
                         seconds=int(lockout.total_seconds()))
            logger.warning("console logins locked after repeated failures", extra={"remote_addr": address})
        db.session.execute(delete(LoginThrottle).where(LoginThrottle.last_failure_at < now - FORGET_AFTER))


def clear(key: str) -> None:
    """A successful login starts the count again."""
    with transaction():
        db.session.execute(delete(LoginThrottle).where(LoginThrottle.key == key))

"""The audit log: who did what to which order, event, delivery or purchase, and when."""

from __future__ import annotations

import getpass
import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, select
from sqlalchemy.orm import Mapped, mapped_column

from services.db import UTCDateTime, db


class AuditLog(db.Model):
    """One staff or operator action; written in the same transaction as the change it records."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_target", "target"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


def record(actor: str, action: str, target: str, now: datetime, **details: Any) -> None:
    """Add an audit row to the current transaction (the caller commits it with the change)."""
    db.session.add(AuditLog(actor=actor, action=action, target=target, details=details, at=now))


def api_key_actor(key: str) -> str:
    """An admin API key named without revealing it: a short prefix of its SHA-256."""
    return f"api-key:{hashlib.sha256(key.encode()).hexdigest()[:6]}"


def staff_actor(email: str) -> str:
    return f"staff:{email}"


def cli_actor() -> str:
    """The operating-system user running a `flask --app wsgi …` command."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def entries_for(targets: list[str], limit: int = 200) -> list[AuditLog]:
    """The audit rows about any of these targets, oldest first."""
    return list(db.session.execute(
        select(AuditLog).where(AuditLog.target.in_(targets)).order_by(AuditLog.at, AuditLog.id).limit(limit)
    ).scalars())

"""Staff accounts of the support console: argon2 password hashes, roles, logins and revocable sessions."""

from __future__ import annotations

import functools
import logging
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Boolean, Integer, String, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from services import audit, login_guard
from services.db import UTCDateTime, db, transaction
from services.errors import GatewayError, InvalidRequest, NotFound
from webhook_config import Settings

logger = logging.getLogger(__name__)

SUPPORT, ADMIN = "support", "admin"
ROLES = (SUPPORT, ADMIN)
MIN_PASSWORD_LENGTH = 12

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the e-mail is unknown, so a login takes as long whether or not the account exists."""
    return _hasher.hash("no such staff account")


class StaffUser(db.Model):
    """A person who may log in to the console."""

    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Console sessions carry the version they were issued under; logout increments it, revoking them all.
    session_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


class UserExists(GatewayError):
    status = 409
    code = "user_exists"


class LoginFailed(GatewayError):
    """Wrong e-mail or password, a disabled account, or one locked after too many failures."""

    status = 401
    code = "login_failed"


def normalize_email(email: str) -> str:
    return email.strip().lower()


def create_user(email: str, role: str, password: str, actor: str, now: datetime) -> StaffUser:
    """Create a staff account; the password is stored only as an argon2id hash."""
    email = normalize_email(email)
    if "@" not in email or len(email) > 254:
        raise InvalidRequest("The e-mail address is not valid.", {"email": ["must be an e-mail address"]})
    if role not in ROLES:
        raise InvalidRequest("The role is not valid.", {"role": [f"must be one of {', '.join(ROLES)}"]})
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequest("The password is too short.",
                             {"password": [f"must be at least {MIN_PASSWORD_LENGTH} characters"]})
    user = StaffUser(email=email, role=role, password_hash=_hasher.hash(password), disabled=False,
                     session_version=0, created_at=now)
    try:
        with transaction():
            db.session.add(user)
            db.session.flush()
            audit.record(actor, "users.create", f"staff:{email}", now, role=role)
    except IntegrityError:
        raise UserExists(f"A staff account for {email} already exists.") from None
    return user


def disable_user(email: str, actor: str, now: datetime) -> StaffUser:
    """Disable an account; its open console sessions end at their next request."""
    email = normalize_email(email)
    with transaction():
        user = _find(email, lock=True)
        if user is None:
            raise NotFound(f"No staff account for {email}.")
        user.disabled = True
        audit.record(actor, "users.disable", f"staff:{email}", now)
    return user


def get_active(user_id: int) -> StaffUser | None:
    """The account behind a console session, or None once it is disabled or deleted."""
    with transaction():
        user = db.session.get(StaffUser, user_id, populate_existing=True)
    return user if user is not None and not user.disabled else None


def authenticate(email: str, password: str, address: str, settings: Settings, now: datetime) -> StaffUser:
    """The account for these credentials, else LoginFailed. Every attempt costs one argon2 verification and
    fails with the same answer for an unknown, disabled or known account (so neither tells which exist);
    repeated failures of one e-mail from one address are refused for a while, with backoff."""
    email = normalize_email(email)
    key = login_guard.throttle_key(email, address)
    with transaction():
        user = _find(email)
        blocked = login_guard.blocked_until(key, now)
    usable = user is not None and not user.disabled
    verified = _verify(user.password_hash if usable else _dummy_hash(), password)
    if blocked is not None:
        minutes = max(1, round((blocked - now).total_seconds() / 60))
        raise LoginFailed(f"Too many failed logins for this e-mail from your address: try again in {minutes} "
                          f"minute{'s' if minutes > 1 else ''}.")
    if not (usable and verified):
        login_guard.record_failure(key, email, address, settings, now)
        raise LoginFailed("The e-mail or password is not correct.")
    login_guard.clear(key)
    with transaction():
        user = _find(email, lock=True)
        user.last_login_at = now
        if _hasher.check_needs_rehash(user.password_hash):
            user.password_hash = _hasher.hash(password)
    return user


def revoke_sessions(user_id: int) -> None:
    """End every console session of this account (the cookies stay, but no longer match)."""
    with transaction():
        db.session.execute(update(StaffUser).where(StaffUser.id == user_id)
                           .values(session_version=StaffUser.session_version + 1))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _find(email: str, lock: bool = False) -> StaffUser | None:
    statement = select(StaffUser).where(StaffUser.email == email).execution_options(populate_existing=True)
    if lock:
        statement = statement.with_for_update()
    return db.session.execute(statement).scalar_one_or_none()

"""Staff accounts of the support console: argon2 password hashes, roles, and lock-out after failed logins."""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Boolean, Integer, String, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from services import audit
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
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
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
                     failed_logins=0, created_at=now)
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


def authenticate(email: str, password: str, settings: Settings, now: datetime) -> StaffUser:
    """The account for these credentials; LoginFailed otherwise, counting failures toward a lock-out."""
    email = normalize_email(email)
    with transaction():
        user = _find(email)
    if user is None or user.disabled:
        _verify(_dummy_hash(), password)
        raise LoginFailed("The e-mail or password is not correct.")
    if user.locked_until is not None and user.locked_until > now:
        raise LoginFailed("Too many failed logins: this account is locked for a while. Try again later.")
    if not _verify(user.password_hash, password):
        _count_failure(user.id, settings, now)
        raise LoginFailed("The e-mail or password is not correct.")
    with transaction():
        user = _find(email, lock=True)
        user.failed_logins = 0
        user.locked_until = None
        user.last_login_at = now
        if _hasher.check_needs_rehash(user.password_hash):
            user.password_hash = _hasher.hash(password)
    return user


def _count_failure(user_id: int, settings: Settings, now: datetime) -> None:
    """Count a failed login atomically; the Nth failure in a row locks the account for a while."""
    with transaction():
        db.session.execute(update(StaffUser).where(StaffUser.id == user_id)
                           .values(failed_logins=StaffUser.failed_logins + 1))
        user = db.session.get(StaffUser, user_id, populate_existing=True)
        if user.failed_logins >= settings.console_lockout_attempts:
            user.failed_logins = 0
            user.locked_until = now + timedelta(seconds=settings.console_lockout_seconds)
            audit.record("system", "users.lock", f"staff:{user.email}", now,
                         seconds=settings.console_lockout_seconds)
            logger.warning("staff account locked after repeated failed logins", extra={"staff_id": user_id})


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

"""Sessions of the patron's self-service page, as the other areas end them.

A session id is 256 random bits; the register stores only its SHA-256, so neither a copy of the
table nor the audit trail opens a session. The form token (CSRF) is an HMAC of the id, so it is
bound to the session and known only to who holds the id.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from gateway.register.models import WebSession, utcnow


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def form_token(token: str) -> str:
    """The CSRF token bound to the session ``token``."""
    return hmac.new(token.encode("utf-8", "surrogatepass"), b"nlr min-side form", hashlib.sha256).hexdigest()


def end_in(s: Session, patron_id: int, *, keep: str | None = None, at: datetime | None = None) -> None:
    """End the patron's sessions in the caller's transaction, but the one whose id is ``keep``."""
    query = update(WebSession).where(WebSession.patron_id == patron_id, WebSession.ended_at.is_(None))
    if keep is not None:
        query = query.where(WebSession.token_hash != token_hash(keep))
    s.execute(query.values(ended_at=at or utcnow()).execution_options(synchronize_session=False))


def forget_in(s: Session, patron_id: int) -> None:
    """Delete every session row of a patron who is being deleted."""
    s.execute(delete(WebSession).where(WebSession.patron_id == patron_id).execution_options(
        synchronize_session=False))

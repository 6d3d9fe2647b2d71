"""How long the register keeps what it does not need forever (issue 11, item 6).

- Lookup and decision audit rows (lookups, checks at kiosks and doors, PIN checks, SIP2 logins, the
  patron's own downloads) are kept ``audit_days`` and then deleted. Audit rows of changes stay as
  long as the patron does: they are the patron's history.
- Change feed entries are kept ``change_days``: a library system that has not read the feed for
  longer starts again from a full copy.
- Min side sessions are deleted once ended or older than their absolute lifetime.
- Quarantine entries of a legacy import that were resolved or discarded are deleted
  ``quarantine_days`` after that (their personal data went at the resolution; the entry, its card
  and the resolution's words go now). An open entry is kept until someone resolves it.

Deleting runs while the gateway serves, in small batches, each its own short transaction, so no
lookup waits long for a lock. The audit trail is walked by id with a cursor kept in memory (ids
grow with time), so a batch never rescans rows it has already judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, or_, select, text

from gateway.register.context import Area, Context
from gateway.register.legacy import QuarantineStatus
from gateway.register.models import AuditEvent, Change, QuarantineEntry, WebSession, utcnow
from gateway.register.vocabulary import Action

if TYPE_CHECKING:
    from gateway.register.register import Register

LOOKUP_ACTIONS = frozenset({
    Action.PATRON_LOOKUP, Action.PATRON_LOOKUP_NATIONAL_ID, Action.PATRON_CHECK, Action.DOOR, Action.PIN_VERIFY,
    Action.SIP2_LOGIN, Action.PATRON_EXPORT,
})


@dataclass(frozen=True)
class RetentionRun:
    """What one batch deleted, and whether more is due now (run again soon) or all is done."""

    audit_rows: int
    changes: int
    sessions: int
    more: bool
    quarantine: int = 0


class Retention(Area):
    WINDOW = 2000  # audit rows judged per batch
    BATCH = 1000  # changes or sessions deleted per batch at most

    def __init__(self, context: Context, register: Register) -> None:
        super().__init__(context, register)
        self._audit_cursor = 0  # every audit row up to this id has been judged and is younger or kept

    def apply_retention(self, *, audit_days: int = 365, change_days: int = 365, session_seconds: int = 28800,
                        quarantine_days: int = 365, now: datetime | None = None) -> RetentionRun:
        """One batch of each kind; call again while ``more``."""
        now = now or utcnow()
        audit_cutoff, change_cutoff = now - timedelta(days=audit_days), now - timedelta(days=change_days)
        with self._tx() as s:
            if self.store.postgres and not s.scalar(text("SELECT pg_try_advisory_xact_lock(4242002)")):
                return RetentionRun(0, 0, 0, False)  # another gateway is at it right now
            rows = list(s.execute(select(AuditEvent.id, AuditEvent.at, AuditEvent.action)
                                  .where(AuditEvent.id > self._audit_cursor).order_by(AuditEvent.id)
                                  .limit(self.WINDOW)))
            old = [r for r in rows if r.at < audit_cutoff]
            doomed = [r.id for r in old if r.action in LOOKUP_ACTIONS]
            if doomed:
                s.execute(delete(AuditEvent).where(AuditEvent.id.in_(doomed))
                          .execution_options(synchronize_session=False))
            # The cursor moves over the leading run of old rows only (a younger row may be followed
            # by an older one: ids are taken at insert, times a moment before), and only up to the
            # last row kept: SQLite may give a new row the id of a deleted one above it.
            young = next((i for i, r in enumerate(rows) if r.at >= audit_cutoff), len(rows))
            kept = [r.id for r in rows[:young] if r.action not in LOOKUP_ACTIONS]
            cursor = max(kept) if kept else self._audit_cursor
            audit_more = bool(rows) and young == len(rows) and len(rows) == self.WINDOW

            stale_changes = select(Change.id).where(Change.at < change_cutoff).order_by(Change.id).limit(self.BATCH)
            changes = s.connection().execute(delete(Change).where(Change.id.in_(stale_changes.scalar_subquery()))
                                .execution_options(synchronize_session=False)).rowcount or 0
            stale_sessions = select(WebSession.id).where(or_(
                WebSession.ended_at.is_not(None),
                WebSession.created_at < now - timedelta(seconds=session_seconds))).limit(self.BATCH)
            if self.store.postgres:
                stale_sessions = stale_sessions.with_for_update(skip_locked=True)
            conn = s.connection()
            sessions = conn.execute(delete(WebSession).where(WebSession.id.in_(stale_sessions.scalar_subquery()))
                                    .execution_options(synchronize_session=False)).rowcount or 0
            settled = (select(QuarantineEntry.id)
                       .where(QuarantineEntry.status != QuarantineStatus.OPEN.value,
                              QuarantineEntry.resolved_at < now - timedelta(days=quarantine_days))
                       .order_by(QuarantineEntry.id).limit(self.BATCH))
            quarantine = conn.execute(delete(QuarantineEntry).where(QuarantineEntry.id.in_(settled.scalar_subquery()))
                                      .execution_options(synchronize_session=False)).rowcount or 0
        self._audit_cursor = cursor  # only once committed
        return RetentionRun(len(doomed), changes, sessions,
                            audit_more or changes == self.BATCH or sessions == self.BATCH or quarantine == self.BATCH,
                            quarantine)

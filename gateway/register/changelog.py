"""Writing the change feed: ordered and gapless, in commit order.

A use case queues its changes (``queue``, called by ``audit.change``) in its session; the store
writes them (``write``) as the transaction's last statements, just before the commit, while holding
a transaction-scoped lock on PostgreSQL (``pg_advisory_xact_lock``; SQLite has one writer at a time
anyway). So change ids are handed out in commit order: at most one transaction holds change ids not
yet committed, and they are higher than every committed one. A reader that has seen every change up
to id N will never find a committed change below N it has not seen: "after N" is a cursor that
loses nothing, even with many gateways writing at once. (A sequence number alone is not enough: a
transaction that took number 7 can commit after the one that took number 8, and a reader that read
8 in between would never see 7.)

The libraries a change is for (its audience: the libraries the patron is affiliated with, home
library or activated there) are judged under the same lock, so change N's audience reflects every
change before it; a deletion's audience is judged before its activations are deleted.

A change queued inside a savepoint that is rolled back is dropped with it (``track_savepoints``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import BigInteger, Table, bindparam, cast as sql_cast, event, insert, select, text, union
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from gateway.register.models import Activation, Change, ChangeAudience, Patron, utcnow

_QUEUE = "nlr.changes"  # session.info key: the changes queued, in order
_MARKS = "nlr.change_marks"  # session.info key: savepoint -> how many were queued when it began
FEED_LOCK = 4242002  # the advisory lock key of the feed (4242001: number series)

_changes = cast(Table, Change.__table__)
_audience = cast(Table, ChangeAudience.__table__)
_activations, _patrons = cast(Table, Activation.__table__), cast(Table, Patron.__table__)
_INSERT_CHANGE = insert(_changes)
_INSERT_AUDIENCE = insert(_audience)
_change_id = sql_cast(bindparam("change_id"), BigInteger)
# The audience judged now: every library the patron is activated at, and the home library.
_INSERT_AFFILIATED = insert(_audience).from_select(
    ["change_id", "library_id"],
    union(
        select(_change_id, _activations.c.library_id).where(_activations.c.patron_id == bindparam("patron_id")),
        select(_change_id, _patrons.c.home_library_id).where(_patrons.c.id == bindparam("patron_id")),
    ),
)
_LOCK = text(f"SELECT pg_advisory_xact_lock({FEED_LOCK})")


@dataclass(frozen=True)
class Pending:
    """A change waiting for its transaction's commit. ``audience``: library ids judged already (a
    deletion's, before the activations go), or None: judged when written."""

    patron_id: int
    card: str
    kind: str
    library_isil: str | None
    previous_card: str | None = None
    audience: frozenset[int] | None = None


def queue(s: Session, change: Pending) -> None:
    """Queue a change for the commit of ``s``'s transaction."""
    s.info.setdefault(_QUEUE, []).append(change)


def queued(s: Session) -> list[Pending]:
    return list(s.info.get(_QUEUE, ()))


def write(s: Session) -> list[Pending]:
    """Write the queued changes and their audiences: the transaction's last statements, under the
    feed's lock (PostgreSQL), so change ids are in commit order. The caller commits at once.
    Returns the changes written."""
    pending: list[Pending] | None = s.info.pop(_QUEUE, None)
    if not pending:
        return []
    s.flush()  # everything else first: under the lock only the feed's own rows are written
    conn = s.connection()
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK)
    at = utcnow()
    for p in pending:
        result = conn.execute(_INSERT_CHANGE, {
            "at": at, "patron_id": p.patron_id, "card_number": p.card, "library_isil": p.library_isil,
            "kind": p.kind, "previous_card": p.previous_card})
        key = result.inserted_primary_key
        assert key is not None
        change_id = key[0]
        if p.audience is None:
            conn.execute(_INSERT_AFFILIATED, {"change_id": change_id, "patron_id": p.patron_id})
        elif p.audience:
            conn.execute(_INSERT_AUDIENCE, [{"change_id": change_id, "library_id": i} for i in sorted(p.audience)])
    return pending



def track_savepoints(sessions: sessionmaker[Session]) -> None:
    """Drop the changes queued inside a savepoint when it is rolled back (a PIN check's ``then``, an
    automatic activation that lost a race), and every queued change when the transaction is."""

    @event.listens_for(sessions, "after_transaction_create")
    def _begun(s: Session, transaction: SessionTransaction) -> None:
        if transaction.nested:
            s.info.setdefault(_MARKS, {})[id(transaction)] = len(s.info.get(_QUEUE, ()))

    @event.listens_for(sessions, "after_soft_rollback")
    def _rolled_back(s: Session, transaction: SessionTransaction) -> None:
        if not transaction.nested:
            s.info.pop(_QUEUE, None)
            return
        mark: Any = s.info.get(_MARKS, {}).pop(id(transaction), None)
        if mark is not None and _QUEUE in s.info:
            del s.info[_QUEUE][mark:]

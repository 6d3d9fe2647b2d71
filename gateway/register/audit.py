"""The audit trail and the change feed.

Every use case records who did what, for which library, to which patron, with what outcome (never a
PIN, password, token or national id), and every change to a patron adds an entry to the feed that
libraries sync from, in the use case's own transaction. Lookups and decisions are audited too,
refusals included, against the patron they concerned, so the patron sees them in innsyn.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session

from gateway.register import changelog, fields, records
from gateway.register.actors import Actor
from gateway.register.context import Area
from gateway.register.errors import NotFound
from gateway.register.models import AuditEvent, Card, Change, Library, Patron, utcnow
from gateway.register.store import Store
from gateway.register.views import AuditView, ChangeView
from gateway.register.vocabulary import Action, CardStatus, ChangeKind

INSERT = insert(cast(Table, AuditEvent.__table__))
_DECISIONS = frozenset({Action.PATRON_CHECK, Action.DOOR})
#: Told ``(channel, reason)`` of every decision as it is audited (gateway.metrics counts them):
#: never who, nor which card.
decision_listeners: list[Callable[[str, str], None]] = []


def row(actor: Actor, action: Action, outcome: str, *, patron: Patron | int | None = None, card: str | None = None,
        library: str | None = None, detail: str | None = None, at: datetime | None = None) -> dict[str, Any]:
    """One audit event as the insert takes it (``patron``: a Patron or its id)."""
    if action in _DECISIONS:
        for listener in decision_listeners:
            listener(str(actor.channel), str(outcome))
    return {
        "at": at or utcnow(), "actor": actor.label[:120], "library_isil": library or actor.library_isil,
        "action": str(action), "patron_id": patron.id if isinstance(patron, Patron) else patron, "card_number": card,
        "outcome": str(outcome), "detail": detail[:300] if detail else None, "request_id": actor.request_id,
    }


def record(s: Session, actor: Actor, action: Action, outcome: str, *, patron: Patron | int | None = None,
           card: str | None = None, library: str | None = None, detail: str | None = None) -> None:
    """Audit one event in the use case's transaction."""
    s.connection().execute(INSERT, row(actor, action, outcome, patron=patron, card=card, library=library,
                                       detail=detail))


def refusal(store: Store, actor: Actor, action: Action, outcome: str, *, card: str | None = None,
            detail: str | None = None) -> None:
    """Record a refused request that never reached a patron (bad login, unknown card, …)."""
    with store.session() as s:
        record(s, actor, action, outcome, card=card, detail=detail)


def change(s: Session, patron: Patron, kind: ChangeKind, actor: Actor, library: str | None = None) -> None:
    """A change feed entry, written when the use case's transaction commits (gateway.register.changelog);
    ``library``: the library the change concerns (the actor's by default).

    The feed's readers are the libraries the patron is affiliated with when the change is committed.
    A deletion (written before the activations go) reaches each library it names, and the first
    deletion of the patron also every other library the patron was affiliated with."""
    card = records.known_card(patron)
    previous = None
    if kind is ChangeKind.CARD_REPLACED:  # the number the libraries knew the patron by until now
        previous = next((c.number for c in reversed(patron.cards) if c.number != card
                         and c.status != CardStatus.DELETED), None)
    audience: set[int] | None = None
    if kind is ChangeKind.DELETED:
        activated = {a.library_id: a.library.isil for a in patron.activations}
        audience = {i for i, isil in activated.items() if isil == library}
        if not any(p.kind == ChangeKind.DELETED and p.patron_id == patron.id for p in changelog.queued(s)):
            audience |= {patron.home_library_id} - set(activated)  # a home library not activated at
    changelog.queue(s, changelog.Pending(patron.id, card, str(kind), library or actor.library_isil, previous,
                                         None if audience is None else frozenset(audience)))


def event_view(e: AuditEvent) -> AuditView:
    return AuditView(e.id, e.at, e.actor, e.library_isil, e.action, e.card_number, e.outcome, e.detail,
                     e.request_id)


def change_view(c: Change) -> ChangeView:
    return ChangeView(c.id, c.at, c.card_number, c.library_isil, c.kind)


class AuditTrail(Area):
    def audit_refusal(self, actor: Actor, action: Action, outcome: str, *, card: str | None = None,
                      detail: str | None = None) -> None:
        refusal(self.store, actor, action, outcome, card=card, detail=detail)

    def audit_events(self, card: str | None = None, *, limit: int = 100) -> list[AuditView]:
        """The newest ``limit`` events, oldest first; of one patron (any of their cards) when asked."""
        with self._tx() as s:
            query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
            if card is not None:
                # A deleted patron's trail is kept (and shown): the card row stays forever.
                found = s.get(Card, fields.card(card))
                if found is None:
                    raise NotFound(f"card {fields.card(card)} is not in the register")
                query = query.where(AuditEvent.patron_id == found.patron_id)
            return [event_view(e) for e in reversed(list(s.scalars(query)))]

    def changes(self, since: int = 0, *, limit: int = 1000) -> list[ChangeView]:
        with self._tx() as s:
            query = select(Change).where(Change.id > since).order_by(Change.id).limit(limit)
            return [change_view(c) for c in s.scalars(query)]

    def count_audit_events(self, card: str | None = None) -> int:
        """How many events ``audit_events`` could list (of one patron when asked): a listing says what it left out."""
        with self._tx() as s:
            query = select(func.count()).select_from(AuditEvent)
            if card is not None:
                found = s.get(Card, fields.card(card))
                if found is None:
                    raise NotFound(f"card {fields.card(card)} is not in the register")
                query = query.where(AuditEvent.patron_id == found.patron_id)
            return s.scalar(query) or 0

    def count_changes(self, since: int = 0) -> int:
        """How many changes come after ``since``."""
        with self._tx() as s:
            return s.scalar(select(func.count()).select_from(Change).where(Change.id > since)) or 0

    def counts(self) -> dict[str, int]:
        with self._tx() as s:
            return {
                "libraries": s.scalar(select(func.count()).select_from(Library)) or 0,
                "patrons": s.scalar(select(func.count()).select_from(Patron).where(Patron.deleted_at.is_(None))) or 0,
                "cards": s.scalar(select(func.count()).select_from(Card)) or 0,
            }

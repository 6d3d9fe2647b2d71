"""Finding the rows a use case works on, inside its transaction: a library by ISIL, a card and its
patron by number (locked for a change), and which of a patron's cards a library knows them by."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.register import fields
from gateway.register.errors import NotFound
from gateway.register.models import Card, Library, Patron
from gateway.register.vocabulary import CardStatus


def library(s: Session, isil: str) -> Library:
    isil = fields.isil(isil)
    found = s.scalar(select(Library).where(Library.isil == isil))
    if found is None:
        raise NotFound(f"library {isil} is not in the register (add it with `nlr library add`)")
    return found


def card_row(s: Session, card: str, *, lock: bool = False) -> Card:
    """The card (not a deleted patron's); ``lock``: its patron's row is locked until the commit, so
    concurrent changes to one patron queue (PostgreSQL; SQLite has one writer at a time)."""
    number = fields.card(card)
    row = s.get(Card, number)
    if row is None or row.status == CardStatus.DELETED:
        raise NotFound(f"card {number} is not in the register")
    if lock:
        lock_patron(s, row.patron_id)
    return row


def lock_patron(s: Session, patron_id: int) -> None:
    """Lock the patron's row until the commit, so concurrent changes to one patron queue
    (PostgreSQL; SQLite has one writer at a time). The patron (with its cards and activations) is
    read again under the lock: what was loaded before it may be another change's past."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(select(Patron).where(Patron.id == patron_id).with_for_update(of=Patron)
                  .execution_options(populate_existing=True)).scalars().all()


def patron_of(s: Session, card: str, *, lock: bool = False) -> tuple[Patron, Card]:
    row = card_row(s, card, lock=lock)
    return row.patron, row


def current_card(patron: Patron) -> str | None:
    return next((c.number for c in reversed(patron.cards) if c.status == CardStatus.ACTIVE), None)


def known_card(patron: Patron) -> str:
    """The card a library knows the patron by: the active one, else the newest (e.g. reported lost)."""
    return current_card(patron) or next(
        (c.number for c in reversed(patron.cards) if c.status != CardStatus.DELETED), "?")

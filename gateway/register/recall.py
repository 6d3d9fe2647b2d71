"""What the gateway's decision memory reads and writes (issue 13, gateway.register.memory).

- ``recall_many``: the facts of some cards and libraries, for decisions and lookups the memory
  could not answer: three queries for the views, one for the cards, one for the libraries.
- ``news``: what the change feed says since a position (the patrons and cards changed, the settings
  generation), read every fraction of a second by every gateway process.
- ``write_audit``: the lookup and decision audit rows the gateway queued (written behind, one
  multi-row insert per batch), and the door requests without a PIN whose facts it did not look up:
  those are decided here, from the register's facts, and audited with the rest.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, select

from gateway.register import audit, memory
from gateway.register.context import Area
from gateway.register.generation import READ as READ_GENERATION
from gateway.register.identifiers import InvalidIdentifier, normalise_card_number
from gateway.register.memory import CardFacts, LibraryFacts, News, Recollection
from gateway.register.models import Card, Change, Library
from gateway.register.views import DecisionRequest
from gateway.register.vocabulary import CardStatus

_cards, _libraries, _changes = Card.__table__, Library.__table__, Change.__table__
_CARDS = (select(_cards.c.number, _cards.c.patron_id, _cards.c.status)
          .where(_cards.c.number.in_(bindparam("numbers", expanding=True))))
_LIBRARIES = (select(_libraries.c.isil, _libraries.c.door_min_age, _libraries.c.auto_activation)
              .where(_libraries.c.isil.in_(bindparam("isils", expanding=True))))
_NEWS = (select(_changes.c.id, _changes.c.patron_id, _changes.c.card_number, _changes.c.previous_card)
         .where(_changes.c.id > bindparam("after")).order_by(_changes.c.id).limit(bindparam("limit")))
_NUMBERS_OF = select(_cards.c.number).where(_cards.c.patron_id.in_(bindparam("patron_ids", expanding=True)))
_LAST_CHANGE = select(func.max(_changes.c.id))

#: Changes read per ``news``; more since the last read, and the memory forgets everything.
NEWS_LIMIT = 5000


class Recall(Area):
    def recall_many(self, asked: list[tuple[str, str | None]]) -> list[Recollection]:
        """The facts of (card number, library ISIL) pairs asked together, read at once; every pair
        gets the same `Recollection` of all of them."""
        with self._read() as conn:
            facts = self._recall(conn, {n for n, _ in asked}, {i for _, i in asked})
        return [facts] * len(asked)

    def _recall(self, conn: Connection, numbers: set[str], isils: set[str | None]) -> Recollection:
        cards: dict[str, CardFacts] = {n: memory.NOT_IN_REGISTER for n in numbers}
        found = [row for row in conn.execute(_CARDS, {"numbers": list(numbers)})
                 if row.status != CardStatus.DELETED] if numbers else []
        views = self._load_views(conn, [(row.patron_id, row.number) for row in found])
        for row, view in zip(found, views, strict=True):
            # no national id in memory, not even its masked part (PatronView.national_id is None already)
            cards[row.number] = CardFacts(row.patron_id, dataclasses.replace(view, national_id_masked=""))
        libraries: dict[str | None, LibraryFacts | None] = dict.fromkeys(isils, memory.NO_LIBRARY)
        named = [i for i in isils if i is not None]
        if named:
            for lib in conn.execute(_LIBRARIES, {"isils": named}):
                libraries[lib.isil] = LibraryFacts(lib.door_min_age, bool(lib.auto_activation))
        return Recollection(cards, libraries)

    def news(self, after: int | None) -> News:
        """The change feed since ``after`` (None: from now on, nothing to forget)."""
        with self._read() as conn:
            generation = conn.scalar(READ_GENERATION) or 0
            if after is None:
                return News(conn.scalar(_LAST_CHANGE) or 0, generation)
            rows = list(conn.execute(_NEWS, {"after": after, "limit": NEWS_LIMIT + 1}))
            if len(rows) > NEWS_LIMIT:
                return News(conn.scalar(_LAST_CHANGE) or 0, generation, overflow=True)
            if not rows:
                last = conn.scalar(_LAST_CHANGE) or 0
                if last < after:  # ids handed out again below the position: SQLite does that once
                    return News(last, generation, overflow=True)  # retention emptied the table
                return News(after, generation)
            patrons = frozenset(r.patron_id for r in rows)
            cards = {r.card_number for r in rows} | {r.previous_card for r in rows if r.previous_card}
            # every number of those patrons: a card attached to a patron makes no change of its own number
            cards.update(conn.scalars(_NUMBERS_OF, {"patron_ids": list(patrons)}))
            return News(rows[-1].id, generation, patrons, frozenset(cards))

    def write_audit(self, queued: list[dict[str, Any] | tuple[DecisionRequest, datetime]]) -> int:
        """Insert the queued audit rows, in their order, in one statement. A queued (request, time)
        is a door asked without a PIN and answered without its facts: it is decided here, from the
        register's facts as of now, and audited in its place. How many rows were written."""
        undecided = [q for q in queued if isinstance(q, tuple)]
        with self._core_tx() as conn:
            facts = Recollection()
            if undecided:
                facts = self._recall(conn, {n for n in (_number(r) for r, _ in undecided) if n is not None},
                                     {r.actor.library_isil for r, _ in undecided})
            rows: list[dict[str, Any]] = []
            for q in queued:
                if isinstance(q, tuple):
                    decided = memory.decide(facts, *q)
                    assert decided is not None, "every card and library asked about was read"
                    rows.append(decided[1])
                else:
                    rows.append(q)
            if rows:
                conn.execute(audit.INSERT, rows)
            return len(rows)


def _number(request: DecisionRequest) -> str | None:
    """The card number a decision would read the facts of (None: malformed)."""
    try:
        return normalise_card_number(request.card)
    except InvalidIdentifier:
        return None

"""Card number series: ranges reserved per library, the allocator, and legacy numbers outside them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.register import actors, audit, fields, records
from gateway.register.actors import Actor
from gateway.register.context import Area
from gateway.register.errors import (
    CardInUse,
    CardOutsideSeries,
    SeriesExhausted,
    SeriesOverlap,
)
from gateway.register.identifiers import CARD_NUMBER_MAX, card_number_from_int, card_number_to_int
from gateway.register.legacy import QuarantineReason, QuarantineStatus
from gateway.register.models import Card, Library, NumberSeries, QuarantineEntry
from gateway.register.views import (
    SeriesView,
)
from gateway.register.vocabulary import Action


def allocate_card(s: Session, lib: Library) -> str:
    """The next free card number of the library's series: never registered, and not the card of an
    open quarantined import row of the library. A legacy patron holds that card in their hand
    (PRODUCT §2.10: the library cleans up such numbers; the register must not make a new one), so it
    is passed over for good, also once the entry is resolved."""
    query = select(NumberSeries).where(
        NumberSeries.library_id == lib.id, NumberSeries.next_number <= NumberSeries.last_number
    ).order_by(NumberSeries.first_number)
    if s.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    for series in s.scalars(query):
        while series.next_number <= series.last_number:
            candidate = card_number_from_int(series.next_number)
            series.next_number += 1
            if s.get(Card, candidate) is None and not _held_in_quarantine(s, lib, candidate):
                return candidate
    raise SeriesExhausted(f"library {lib.isil} has no free card numbers left; reserve a new series")


def _held_in_quarantine(s: Session, lib: Library, number: str) -> bool:
    """Whether an open quarantine entry of the library has the card ``number`` (through the index of
    the library's entries by status)."""
    return s.scalar(select(QuarantineEntry.id).where(
        QuarantineEntry.library_id == lib.id, QuarantineEntry.status == QuarantineStatus.OPEN.value,
        QuarantineEntry.card == number).limit(1)) is not None


def spans_of(s: Session, lib: Library) -> list[tuple[int, int]]:
    """The library's reserved series, as (first, last) card numbers."""
    return [(a, b) for a, b in s.execute(select(NumberSeries.first_number, NumberSeries.last_number)
                                         .where(NumberSeries.library_id == lib.id))]


def inside(spans: list[tuple[int, int]], number: str) -> bool:
    """Whether card ``number`` lies in one of ``spans`` (``spans_of``): the rule a registration's
    own card number meets."""
    value = card_number_to_int(number)
    return any(a <= value <= b for a, b in spans)


def check_card_in_series(s: Session, lib: Library, number: str) -> None:
    if not inside(spans_of(s, lib), number):
        raise CardOutsideSeries(f"card {number} is not inside a number series reserved by {lib.isil}")
    if s.get(Card, number) is not None:
        raise CardInUse(f"card {number} is already in use (card numbers are never reused)")


class Series(Area):
    """Reserving series (the operator) and reading them."""

    def reserve_series(
        self, actor: Actor, isil: str, *, count: int | None = None, first: str | None = None, last: str | None = None,
    ) -> SeriesView:
        """Reserve a range of card numbers for a library: the next free ``count`` numbers, or first..last."""
        actors.require_operator(actor)
        if (count is None) == (first is None and last is None) or (first is None) != (last is None):
            raise fields.bad("give either a count or both a first and a last card number")
        with self._tx() as s:
            lib = records.library(s, isil)
            self.store.lock_series(s)
            taken = s.execute(select(NumberSeries.first_number, NumberSeries.last_number)
                              .order_by(NumberSeries.first_number)).all()
            if count is not None:
                if not 1 <= count <= CARD_NUMBER_MAX:
                    raise fields.bad(f"count must be between 1 and {CARD_NUMBER_MAX}")
                low = 1
                for a, b in taken:
                    if a - low >= count:
                        break
                    low = max(low, b + 1)
                high = low + count - 1
                if high > CARD_NUMBER_MAX:
                    raise SeriesExhausted(f"no free range of {count} card numbers is left")
            else:
                assert first is not None and last is not None  # checked above
                low, high = card_number_to_int(fields.card(first)), card_number_to_int(fields.card(last))
                if low > high:
                    raise fields.bad("the first card number must not be after the last")
                for a, b in taken:
                    if a <= high and low <= b:
                        raise SeriesOverlap(
                            f"{card_number_from_int(low)}-{card_number_from_int(high)} overlaps the reserved series "
                            f"{card_number_from_int(a)}-{card_number_from_int(b)}"
                        )
            series = NumberSeries(library_id=lib.id, first_number=low, last_number=high, next_number=low)
            s.add(series)
            s.flush()
            audit.record(s, actor, Action.SERIES_RESERVE, "ok", library=lib.isil,
                        detail=f"{card_number_from_int(low)}-{card_number_from_int(high)}")
            return self._series_view(s, series, lib)

    def _series_view(self, s: Session, series: NumberSeries, lib: Library) -> SeriesView:
        low, high = card_number_from_int(series.first_number), card_number_from_int(series.last_number)
        used = s.scalar(select(func.count()).select_from(Card).where(Card.number.between(low, high))) or 0
        nxt = card_number_from_int(series.next_number) if series.next_number <= series.last_number else None
        return SeriesView(lib.isil, low, high, nxt, series.last_number - series.first_number + 1, used)

    def list_series(self, isil: str | None = None) -> list[SeriesView]:
        with self._tx() as s:
            query = select(NumberSeries, Library).join(Library).order_by(NumberSeries.first_number)
            if isil is not None:
                query = query.where(Library.id == records.library(s, isil).id)
            return [self._series_view(s, series, lib) for series, lib in s.execute(query)]

    def series_conflicts(self, isil: str | None = None) -> list[dict[str, Any]]:
        """Card numbers in use outside a series of the library that issued them (legacy data), of one
        library when asked; and that library's open quarantined import rows whose card is outside its
        series (PRODUCT §2.10: reported to the library to clean up, never registered silently)."""
        with self._tx() as s:
            lib_id = records.library(s, isil).id if isil is not None else None
            spans: dict[int, list[tuple[int, int]]] = {}
            for ser in s.scalars(select(NumberSeries)):
                spans.setdefault(ser.library_id, []).append((ser.first_number, ser.last_number))
            out: list[dict[str, Any]] = []
            query = select(Card.number, Card.library_id, Library.isil).join(Library).order_by(Card.number)
            if lib_id is not None:
                query = query.where(Card.library_id == lib_id)
            for number, card_lib, lib_isil in s.execute(query):
                value = card_number_to_int(number)
                if not any(a <= value <= b for a, b in spans.get(card_lib, [])):
                    out.append({"card": number, "library": lib_isil, "source": "register"})
            quarantined = select(QuarantineEntry.id, QuarantineEntry.card, Library.isil).join(Library).where(
                QuarantineEntry.reason == QuarantineReason.CARD_OUTSIDE_SERIES.value,
                QuarantineEntry.status == QuarantineStatus.OPEN.value).order_by(QuarantineEntry.id)
            if lib_id is not None:
                quarantined = quarantined.where(QuarantineEntry.library_id == lib_id)
            for entry_id, given, owner in s.execute(quarantined):
                out.append({"card": given, "library": owner, "source": "quarantine", "quarantine": entry_id})
            return out

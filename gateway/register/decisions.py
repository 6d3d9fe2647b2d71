"""The patron decision of sip2.md A.4: "may this card (and PIN) be used at this library now?".

One table of ordered rows, read top to bottom: the first row whose test holds refuses with its
reason; if none holds, GRANTED. Pure: facts in, a reason out, no database, so the table is tested
on its own (tests/test_decisions.py) and every channel (SIP2 kiosks, doors, NCIP) asks it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from gateway.register.vocabulary import CardStatus, PinCheck, Reason


@dataclass(frozen=True)
class Facts:
    """What the decision needs to know about a known card, at one library, now."""

    card_status: str
    pin: PinCheck | None  # None: no PIN was given
    door: bool  # asked at a door (meråpent)
    pin_required: bool  # the terminal requires a PIN
    blocked: bool
    activated: bool  # the card is activated at this library
    auto_activation: bool  # the library activates a card at its first authenticated use
    door_agreement: bool  # the meråpent agreement is signed here
    door_revoked: bool  # the library withdrew door access
    birth_date: date | None
    door_min_age: int
    today: date  # in Europe/Oslo

    @property
    def pin_valid(self) -> bool:
        return self.pin is PinCheck.OK


def age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def _under_age(f: Facts) -> bool:
    return f.door_min_age > 0 and (f.birth_date is None or age_on(f.birth_date, f.today) < f.door_min_age)


# (reason, refuses?) in the order of sip2.md A.4.
TABLE: tuple[tuple[Reason, Callable[[Facts], bool]], ...] = (
    (Reason.CARD_LOST, lambda f: f.card_status == CardStatus.LOST),
    (Reason.CARD_REPLACED, lambda f: f.card_status == CardStatus.REPLACED),
    (Reason.PIN_LOCKED, lambda f: f.pin is PinCheck.LOCKED),
    (Reason.PIN_WRONG, lambda f: f.pin is not None and not f.pin_valid),
    (Reason.PIN_MISSING, lambda f: f.pin is None and (f.door or f.pin_required)),
    (Reason.PATRON_BLOCKED, lambda f: f.blocked),
    (Reason.NOT_ACTIVATED, lambda f: not f.activated and not (f.auto_activation and f.pin_valid)),
    (Reason.DOOR_NO_AGREEMENT, lambda f: f.door and not f.door_agreement),
    (Reason.DOOR_REVOKED, lambda f: f.door and f.door_revoked),
    (Reason.DOOR_UNDERAGE, lambda f: f.door and _under_age(f)),
)


def decide(facts: Facts) -> Reason:
    """The first reason in TABLE that refuses, else GRANTED."""
    return next((reason for reason, refuses in TABLE if refuses(facts)), Reason.GRANTED)


__all__ = ["TABLE", "Facts", "age_on", "decide"]

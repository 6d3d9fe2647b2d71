"""The demo data set (`nlr demo`): four libraries, three series, six patrons. Idempotent.

Every national id here is a synthetic (month + 80) number, which can never belong to a real person.
Every demo patron's PIN is 1234.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import date
from typing import TYPE_CHECKING, TypedDict

from gateway.register.errors import AlreadyExists
from gateway.register.views import OPERATOR

if TYPE_CHECKING:  # this module imports no SQLAlchemy: the register's own functions query for it
    from gateway.register import Register

DEMO_PIN = "1234"


class _LibrarySettings(TypedDict, total=False):
    """Keyword arguments of ``Register.add_library``."""

    door_min_age: int
    self_activation: bool
    auto_activation: bool


class _PatronExtra(TypedDict, total=False):
    """Keyword arguments of ``Register.register_patron`` beyond the ones every demo patron has."""

    address_line1: str
    postal_code: str
    city: str
    email: str
    phone: str
    secret_address: bool


LIBRARIES: list[tuple[str, str, _LibrarySettings]] = [
    ("NO-2030000", "Deichman Oslo", {"door_min_age": 15, "self_activation": True}),
    ("NO-2120100", "Bergen offentlige bibliotek", {"door_min_age": 16}),
    ("NO-2160100", "Trondheim folkebibliotek", {"door_min_age": 18, "auto_activation": True}),
    ("NO-0030100", "Nasjonalbiblioteket", {}),
]
SERIES = [
    ("NO-2030000", "N000100000", "N000199999"),
    ("NO-2120100", "N000200000", "N000299999"),
    ("NO-2160100", "N000300000", "N000399999"),
]


def synthetic_fnr(birth: date, individual: int) -> str:
    """A synthetic fødselsnummer (month + 80) with legacy check digits, for tests and demo data."""
    for ind in range(individual, individual + 50):
        digits = [int(c) for c in f"{birth.day:02d}{birth.month + 80:02d}{birth.year % 100:02d}{ind % 1000:03d}"]
        k1 = 11 - sum(w * d for w, d in zip((3, 7, 6, 1, 8, 9, 4, 5, 2), digits, strict=True)) % 11
        k1 = 0 if k1 == 11 else k1
        k2 = 11 - sum(w * d for w, d in zip((5, 4, 3, 2, 7, 6, 5, 4, 3, 2), digits + [k1], strict=True)) % 11
        k2 = 0 if k2 == 11 else k2
        if k1 != 10 and k2 != 10:
            return "".join(map(str, digits)) + f"{k1}{k2}"
    raise ValueError("no valid number near that individnummer")


# card, home library, surname, given name, birth date, individnummer base, extra
PATRONS: list[tuple[str, str, str, str, date, int, _PatronExtra]] = [
    ("N000100001", "NO-2030000", "Nordmann", "Kari", date(1985, 3, 14), 10,
     {"address_line1": "Storgata 1", "postal_code": "0155", "city": "Oslo", "email": "kari@example.org",
      "phone": "22334455"}),
    ("N000200001", "NO-2120100", "Hansen", "Ola", date(1990, 11, 2), 20,
     {"address_line1": "Strandkaien 3", "postal_code": "5013", "city": "Bergen"}),
    # Born ten years before the demo is loaded (see _birth), so she is always under Oslo's door age.
    ("N000100002", "NO-2030000", "Berg", "Emma", date(2014, 6, 1), 530,
     {"address_line1": "Storgata 1", "postal_code": "0155", "city": "Oslo"}),
    ("N000300001", "NO-2160100", "Blokk", "Per", date(1972, 8, 23), 40,
     {"address_line1": "Kongens gate 9", "postal_code": "7011", "city": "Trondheim"}),
    ("N000100003", "NO-2030000", "Mistet", "Lise", date(1968, 1, 30), 50,
     {"address_line1": "Markveien 12", "postal_code": "0554", "city": "Oslo"}),
    ("N000200002", "NO-2120100", "Skjult", "Sofie", date(1979, 12, 9), 60,
     {"address_line1": "Hemmelig vei 1", "postal_code": "5003", "city": "Bergen", "secret_address": True}),
]


def _birth(card: str, birth: date) -> date:
    """The demo child stays a child: born on 1 June ten years before today."""
    if card == "N000100002":
        return date(date.today().year - 10, 6, 1)
    return birth


def load_demo(register: Register) -> Iterator[tuple[str, str]]:
    """Load the demo data; yields (thing, what happened) for each thing added or already there.

    Running it again changes nothing: what is there is found without audited lookups, and a demo
    card number that is taken (even by a deleted patron) is left alone.
    """
    # The demo registers synthetic numbers whatever the config says: they cannot be real people.
    demo = type(register)(register.engine, register.keys,
                          dataclasses.replace(register.settings, allow_synthetic_ids=True))
    for isil, name, settings in LIBRARIES:
        try:
            demo.add_library(OPERATOR, isil, name, **settings)
            yield f"library {isil} {name}", "added"
        except AlreadyExists:
            yield f"library {isil} {name}", "already there"
    have = {s.range for s in demo.list_series()}
    for isil, first, last in SERIES:
        if f"{first}-{last}" not in have:
            demo.reserve_series(OPERATOR, isil, first=first, last=last)
            yield f"series {first}-{last} for {isil}", "reserved"
        else:
            yield f"series {first}-{last} for {isil}", "already there"
    from gateway.register.lookups import cards_in_use

    taken = cards_in_use(register, [p[0] for p in PATRONS])
    for card, isil, surname, given, birth, ind, extra in PATRONS:
        if card in taken:
            yield f"patron {card} {given} {surname}", "already there"
            continue
        birth = _birth(card, birth)
        demo.register_patron(OPERATOR, isil, card=card, national_id=synthetic_fnr(birth, ind), surname=surname,
                             given_name=given, birth_date=birth, pin=DEMO_PIN, **extra)
        note = ""
        if card == "N000100001":
            demo.activate(OPERATOR, card, "NO-2030000", door_agreement=True)
            note = ", door agreement in Oslo"
        elif card == "N000200001":
            demo.activate(OPERATOR, card, "NO-2030000")
            note = ", activated in Oslo without door agreement"
        elif card == "N000100002":
            demo.activate(OPERATOR, card, "NO-2030000", door_agreement=True)
            note = ", under 15, door agreement in Oslo"
        elif card == "N000300001":
            demo.set_blocked(OPERATOR, card, True, "demo: unpaid replacement fee")
            note = ", blocked"
        elif card == "N000100003":
            demo.report_lost(OPERATOR, card)
            demo.replace_card(OPERATOR, card, new_card="N000100004")
            note = ", card lost and replaced by N000100004"
        elif card == "N000200002":
            note = ", secret address"
        yield f"patron {card} {given} {surname}", f"registered{note}"
    yield "demo PIN for every patron", DEMO_PIN

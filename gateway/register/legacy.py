"""A library's legacy import, as its callers see it: the columns of a file, the rows handed to the
register, the reasons a row is quarantined, and the views of the summary and of the quarantine.

Light on purpose (no database): the command line reads the file and shows the results with it; the
use cases are in gateway.register.imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

#: The columns a legacy file may have (CSV header names, JSON keys); any other is refused before a
#: row is imported. ``pin`` is optional, as is every column but the card and the person's.
COLUMNS = ("card", "national_id", "surname", "given_name", "birth_date", "address", "address2", "postal_code",
           "city", "phone", "email", "pin")
VALUE_MAX = 1000  # longer values are cut when kept in the quarantine (any such value is refused anyway)


class QuarantineReason(StrEnum):
    """Why a row was not imported; the order is the order the checks run in."""

    BAD_CARD = "bad_card"  # no card, or not a card number
    INVALID_NATIONAL_ID = "invalid_national_id"
    DUPLICATE_IN_FILE = "duplicate_in_file"  # the same card or person in an earlier row of the file
    INVALID_FIELD = "invalid_field"  # another field the register refuses (named in the detail)
    PERSON_REGISTERED = "person_registered"  # under another card
    CARD_OUTSIDE_SERIES = "card_outside_series"  # not in a series the library reserved (PRODUCT §2.10)
    CARD_IN_USE = "card_in_use"  # by another patron


class QuarantineStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"  # registered with a new card, or attached to the patron registered already
    DISCARDED = "discarded"


@dataclass(frozen=True)
class ImportRow:
    """One record of the file: ``number`` counts the records from 1 (a CSV's header line is not one);
    ``values``: column → text (None or "" for nothing)."""

    number: int
    values: dict[str, str | None]


@dataclass
class ImportSummary:
    library: str
    rows: int = 0
    imported: int = 0
    activated: int = 0  # registered already (the card is the same person's): activated at the library now
    already_imported: int = 0  # by an earlier run: registered or activated at the library by an import
    already_affiliated: int = 0  # the card is the same person's, the library's patron already (not by an import)
    quarantined: dict[str, int] = field(default_factory=dict)  # reason → rows quarantined by this run
    already_quarantined: int = 0  # by an earlier run (the same row, by its key)
    seconds: float = 0.0
    dry_run: bool = False

    @property
    def quarantined_total(self) -> int:
        return sum(self.quarantined.values())


@dataclass(frozen=True)
class QuarantineView:
    """A quarantined row. ``values``: what the file said (names, address, contact, birth date), shown
    by `nlr quarantine show` only and erased when the entry is resolved or discarded; the national id
    only masked; a PIN never (only its hash is kept)."""

    id: int
    library: str
    row: int
    card: str | None
    reason: str
    detail: str | None
    status: str
    created_at: datetime
    resolved_at: datetime | None = None
    resolution: str | None = None
    national_id_masked: str | None = None
    has_pin: bool = False
    values: dict[str, str] | None = None

"""Norwegian national identity numbers: fødselsnummer, D-nummer and DUF-nummer.

Implements the validator described in ``shared/spec/identity-numbers.md`` section 7:

* 11 digits: fødselsnummer (``fnr``) or D-nummer (``dnr``, day + 40).  K2 is checked
  strictly; K1 is accepted with the relaxed 2032 rule (remainder 0, 1, 2 or 3), and the
  result records whether the legacy rule (remainder 0) or only the 2032 rule matched.
* 12 digits: DUF-nummer (``duf``, UDI): weights ``4 6 3 2 4 6 3 2 7 5``, the last two
  digits are the weighted sum mod 11 written ``00``-``10``.
* H-numbers (month + 40, which also covers NAV/Dolly synthetic numbers) and FH-numbers /
  old-style H-numbers (first digit 8 or 9) are always rejected.
* Skatteetaten/Tenor synthetic numbers (month + 80) are accepted only when
  ``allow_synthetic`` is true.
* The day and month must exist.  29 February uses the century from the individnummer when
  the number passes the legacy K1 rule; otherwise any century that makes it valid is accepted.

Gender is never derived, and the full birth year is only used internally for the
29 February check.  Neither exception messages nor ``repr``/``str`` of a result ever
contain the full number.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Literal

__all__ = ["InvalidNationalId", "NationalId", "parse_national_id"]

_K1_WEIGHTS = (3, 7, 6, 1, 8, 9, 4, 5, 2, 1)  # over digits 1-10 (includes K1)
_K2_WEIGHTS = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2, 1)  # over digits 1-11 (includes K1, K2)
_DUF_WEIGHTS = (4, 6, 3, 2, 4, 6, 3, 2, 7, 5)  # over digits 1-10
_K1_2032_REMAINDERS = frozenset({0, 1, 2, 3})
_ALL_CENTURIES = (1800, 1900, 2000)


class InvalidNationalId(ValueError):
    """The text is not an acceptable national identity number.

    ``reason`` is a short English explanation.  It never contains the number itself.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, repr=False)
class NationalId:
    """A validated national identity number.

    ``value`` holds the normalised digits; ``repr``/``str`` show only the masked form.
    """

    value: str
    kind: Literal["fnr", "dnr", "duf"]
    synthetic: bool
    rule: Literal["legacy", "2032", "duf"]

    def masked(self) -> str:
        """Staff-display form: fnr/dnr keep the first 6 digits, DUF the first 4 (the year)."""
        return mask_national_id(self.value)

    def __repr__(self) -> str:
        return (
            f"NationalId({self.masked()!r}, kind={self.kind!r}, "
            f"synthetic={self.synthetic!r}, rule={self.rule!r})"
        )

    def __str__(self) -> str:
        return self.masked()


def parse_national_id(text: str, *, allow_synthetic: bool = False) -> NationalId:
    """Validate ``text`` as a fødselsnummer, D-nummer or DUF-nummer.

    Spaces and dashes are ignored.  Raises :class:`InvalidNationalId` for anything else,
    including any non-string input.
    """
    if not isinstance(text, str):
        raise InvalidNationalId("national identity number must be text")
    digits = "".join(text.split()).replace("-", "")
    if not (digits.isascii() and digits.isdigit()) or len(digits) not in (11, 12):
        raise InvalidNationalId(
            "national identity number must be 11 digits (fødselsnummer or D-number) "
            "or 12 digits (DUF number)"
        )
    if len(digits) == 12:
        return _parse_duf(digits)
    return _parse_fnr(digits, allow_synthetic)


def _weighted(weights: tuple[int, ...], digits: str) -> int:
    # strict=False: the weights cover only the digits before each check digit, so ``digits`` is longer
    return sum(w * int(d) for w, d in zip(weights, digits, strict=False))


def _parse_duf(digits: str) -> NationalId:
    if int(digits[10:]) != _weighted(_DUF_WEIGHTS, digits) % 11:
        raise InvalidNationalId("DUF number check digits do not match")
    return NationalId(digits, "duf", False, "duf")


def _parse_fnr(digits: str, allow_synthetic: bool) -> NationalId:
    day, month = int(digits[0:2]), int(digits[2:4])
    if digits[0] in "89":
        raise InvalidNationalId("FH-numbers and H-numbers are not accepted")
    if digits[2] in "4567":
        raise InvalidNationalId("H-numbers and NAV synthetic numbers (month + 40) are not accepted")
    synthetic = digits[2] in "89"
    if synthetic and not allow_synthetic:
        raise InvalidNationalId("synthetic test numbers are not accepted")
    kind: Literal["fnr", "dnr"] = "dnr" if digits[0] in "4567" else "fnr"

    if _weighted(_K2_WEIGHTS, digits) % 11 != 0:
        raise InvalidNationalId("second check digit (K2) does not match")
    k1_remainder = _weighted(_K1_WEIGHTS, digits) % 11
    if k1_remainder not in _K1_2032_REMAINDERS:
        raise InvalidNationalId("first check digit (K1) does not match")
    rule: Literal["legacy", "2032"] = "legacy" if k1_remainder == 0 else "2032"

    if kind == "dnr":
        day -= 40
    if synthetic:
        month -= 80
    yy, individual = int(digits[4:6]), int(digits[6:9])
    century = _century_from_individnummer(individual, yy) if rule == "legacy" else None
    centuries = (century,) if century is not None else _ALL_CENTURIES
    if not any(_date_exists(c + yy, month, day) for c in centuries):
        raise InvalidNationalId("the date part is not a real day and month")
    return NationalId(digits, kind, synthetic, rule)


def _century_from_individnummer(individual: int, yy: int) -> int | None:
    """Century implied by the individnummer under the pre-2032 rules (None if none is)."""
    if individual <= 499:
        return 1900
    if individual <= 749 and yy >= 54:
        return 1800
    if individual >= 900 and yy >= 40:
        return 1900
    if yy <= 39:
        return 2000
    return None


def _date_exists(year: int, month: int, day: int) -> bool:
    try:
        datetime.date(year, month, day)
    except ValueError:
        return False
    return True


def mask_national_id(value: str) -> str:
    """The staff-display form of a valid national id (``NationalId.masked``): a fødselsnummer or
    D-nummer (11 digits) keeps its first 6 digits, a DUF number (12 digits) its first 4 (the year)."""
    keep = 4 if len(value) == 12 else 6
    return value[:keep] + "*" * (len(value) - keep)

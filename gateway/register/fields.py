"""The fields a caller sends, and how each is checked: card numbers, library ids, PINs, names and
addresses, contact details, rules versions. Every check raises InvalidInput with a message safe to
show (it never repeats a PIN or a national id)."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any

from gateway.register.errors import InvalidInput
from gateway.register.identifiers import (
    InvalidIdentifier,
    normalise_card_number,
    normalise_email,
    normalise_isil,
    normalise_phone,
    normalise_postal_code,
    validate_pin,
)
from gateway.register.settings import OSLO

NAME_MAX = 200
CONTACT_CHANNELS = ("email", "sms", "phone", "letter")  # a patron's preferred contact channel
# Free-text patron fields, and the longest each may be.
TEXT_FIELDS = {
    "surname": NAME_MAX, "given_name": NAME_MAX, "address_line1": 200, "address_line2": 200,
    "city": 100, "temp_address_line1": 200, "temp_city": 100,
}
GENDERS = ("M", "F", "X")  # a patron's gender, as the register stores it (or none)
CONTACT_FIELDS = ("email", "phone", "postal_code", "country")


@dataclass(frozen=True)
class PatronChanges:
    """A change to a patron's personal data: None leaves a field alone; an empty string clears it."""

    surname: str | None = None
    given_name: str | None = None
    gender: str | None = None
    address_line1: str | None = None
    address_line2: str | None = None
    postal_code: str | None = None
    city: str | None = None
    country: str | None = None
    temp_address_line1: str | None = None
    temp_postal_code: str | None = None
    temp_city: str | None = None
    temp_address_until: date | None = None
    email: str | None = None
    phone: str | None = None
    birth_date: date | None = None
    secret_address: bool | None = None
    preferred_contact: str | None = None

    @classmethod
    def of(cls, **changes: object) -> PatronChanges:
        """From keyword arguments, refusing a field that does not exist."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise bad(f"unknown patron field {unknown[0]}")
        return cls(**changes)  # type: ignore[arg-type]

    def given(self) -> dict[str, Any]:
        """The fields that change."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


def bad(message: str) -> InvalidInput:
    return InvalidInput(message)


def card(text_: str) -> str:
    try:
        return normalise_card_number(text_)
    except InvalidIdentifier as exc:
        raise InvalidInput(str(exc)) from None


def isil(text_: str) -> str:
    try:
        return normalise_isil(text_)
    except InvalidIdentifier as exc:
        raise InvalidInput(str(exc)) from None


def pin(text_: str) -> str:
    try:
        return validate_pin(text_)
    except InvalidIdentifier as exc:
        raise InvalidInput(str(exc)) from None


def text(value: str | None, field: str, limit: int, *, required: bool = False) -> str | None:
    """Free text: whitespace collapsed, at most ``limit`` characters, no control characters."""
    if value is None or not value.strip():
        if required:
            raise bad(f"{field.replace('_', ' ')} is required")
        return None
    value = " ".join(value.split())
    if len(value) > limit:
        raise bad(f"{field.replace('_', ' ')} is longer than {limit} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        raise bad(f"{field.replace('_', ' ')} contains a control character")
    return value


def version(value: str | None, field: str) -> str | None:
    """A rules or agreement version as a library names it: 1 to 40 characters (None: not given)."""
    if value is None:
        return None
    if not value.strip() or len(value.strip()) > 40:
        raise bad(f"{field} must be 1 to 40 characters")
    return text(value, field, 40)


def gender(value: str | None) -> str | None:
    """M, F or X (any case); None or blank: none. The same set on every channel."""
    if value is None or not value.strip():
        return None
    code = value.strip().upper()
    if code not in GENDERS:
        raise bad(f"gender must be {', '.join(GENDERS[:-1])} or {GENDERS[-1]}, or empty")
    return code


def contact_channel(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    channel = value.strip().lower()
    if channel not in CONTACT_CHANNELS:
        raise bad(f"preferred contact must be one of {', '.join(CONTACT_CHANNELS)}")
    return channel


def check_birth_date(birth_date: date | None) -> None:
    if birth_date is not None and not (date(1850, 1, 1) <= birth_date <= datetime.now(OSLO).date()):
        raise bad("birth date must be a real date in the past")


def check_contact(**given: str | None) -> dict[str, str | None]:
    """E-mail, phone and postal code (checked against the country, Norway by default), normalised."""
    out: dict[str, str | None] = {}
    country = (given.get("country") or "NO").strip().upper()
    if len(country) != 2 or not country.isalpha():
        raise bad("country must be a two-letter code such as NO")
    checks: dict[str, Callable[[str], str]] = {
        "email": normalise_email, "phone": normalise_phone,
        "postal_code": lambda v: normalise_postal_code(v, country)}
    for key, value in given.items():
        if key == "country":
            out["country"] = country if value else None
            continue
        if value is None or not value.strip():
            out[key] = None
            continue
        try:
            out[key] = checks[key](value)
        except InvalidIdentifier as exc:
            raise InvalidInput(str(exc)) from None
    return out

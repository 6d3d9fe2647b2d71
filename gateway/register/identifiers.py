"""Card numbers, library ids (ISIL) and patron contact fields (PRODUCT.md §2.1 and §3).

Every function either returns the canonical form of its input or raises
:class:`InvalidIdentifier` with a message that says what is wrong and what the right form
is.  Normalising an already normalised value returns it unchanged.
"""

from __future__ import annotations

import re

__all__ = [
    "InvalidIdentifier",
    "normalise_card_number",
    "card_number_to_int",
    "card_number_from_int",
    "normalise_isil",
    "validate_pin",
    "normalise_email",
    "normalise_phone",
    "normalise_postal_code",
]

CARD_NUMBER_MAX = 999_999_999
EMAIL_MAX_LENGTH = 254

_CARD_RE = re.compile(r"[Nn]([0-9]{9})")
_ISIL_RE = re.compile(r"(?:[Nn][Oo]-)?([0-9]{7})")
_PIN_RE = re.compile(r"[0-9]{4,8}")
_DIGITS_RE = re.compile(r"[0-9]+")
_NO_POSTAL_RE = re.compile(r"[0-9]{4}")
_FOREIGN_POSTAL_RE = re.compile(r"[A-Za-z0-9 -]{2,10}")

_CARD_FORM = "card number must be N followed by 9 digits, e.g. N000123456"
_ISIL_FORM = "library id must be an ISIL NO- followed by 7 digits, or the bare 7-digit library number, e.g. NO-2030000"
_PHONE_FORM = (
    "phone number must be a Norwegian 8-digit number (optionally with +47 or 0047), "
    "or + followed by country code and number, 7 to 15 digits in all, e.g. +4722334455"
)


class InvalidIdentifier(ValueError):
    """An identifier or contact field is malformed; the message explains the right form."""


def normalise_card_number(text: str) -> str:
    """Return the card number as ``N`` + 9 digits; surrounding spaces and a lower-case n are accepted."""
    match = _CARD_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise InvalidIdentifier(_CARD_FORM)
    return "N" + match.group(1)


def card_number_to_int(card: str) -> int:
    """``'N000123456'`` -> ``123456`` (the card number is normalised first)."""
    return int(normalise_card_number(card)[1:])


def card_number_from_int(n: int) -> str:
    """``123456`` -> ``'N000123456'``; ``n`` must be an integer from 0 to 999 999 999."""
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= CARD_NUMBER_MAX:
        raise InvalidIdentifier(f"card number must be an integer from 0 to {CARD_NUMBER_MAX}")
    return f"N{n:09d}"


def normalise_isil(text: str) -> str:
    """Return a Norwegian library's ISIL ``NO-`` + 7-digit library number; the bare number is accepted."""
    match = _ISIL_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise InvalidIdentifier(_ISIL_FORM)
    return "NO-" + match.group(1)


def validate_pin(text: str) -> str:
    """Return the PIN unchanged if it is 4 to 8 ASCII digits.  The error never echoes the PIN."""
    if not isinstance(text, str) or _PIN_RE.fullmatch(text) is None:
        raise InvalidIdentifier("PIN must be 4 to 8 digits")
    return text


def normalise_email(text: str) -> str:
    """Pragmatic e-mail check; returns the address trimmed, with the domain in lower case.

    Requires exactly one ``@``, a non-empty local part, a domain with a dot and no empty
    labels, no whitespace or control characters, and at most 254 characters.
    """
    form = "e-mail address must look like name@example.no"
    if not isinstance(text, str):
        raise InvalidIdentifier(form)
    address = text.strip()
    if any(ch.isspace() or not ch.isprintable() for ch in address):
        raise InvalidIdentifier(f"{form}, without spaces")
    local, at, domain = address.partition("@")
    if not at or not local or "@" in domain:
        raise InvalidIdentifier(f"{form}, with exactly one @ and a name before it")
    domain = domain.lower()
    if "." not in domain or "" in domain.split("."):
        raise InvalidIdentifier(f"{form}, with a domain such as example.no after the @")
    address = f"{local}@{domain}"
    if len(address) > EMAIL_MAX_LENGTH:
        raise InvalidIdentifier(f"e-mail address must be at most {EMAIL_MAX_LENGTH} characters")
    return address


def normalise_phone(text: str) -> str:
    """Return the number in international form: ``+47XXXXXXXX`` or ``+<7-15 digits>``.

    Accepts Norwegian 8-digit numbers with an optional ``+47``/``0047`` prefix, and other
    international numbers written with ``+``.  Spaces are ignored.
    """
    if not isinstance(text, str):
        raise InvalidIdentifier(_PHONE_FORM)
    compact = "".join(text.split())
    plus = compact.startswith("+")
    digits = compact[1:] if plus else compact
    if _DIGITS_RE.fullmatch(digits) is None:
        raise InvalidIdentifier(_PHONE_FORM)
    if not plus and digits.startswith("0047"):
        digits, plus = digits[2:], True
    if not plus:
        if len(digits) != 8:
            raise InvalidIdentifier(_PHONE_FORM)
        return "+47" + digits
    if digits.startswith("47") and len(digits) != 10:
        raise InvalidIdentifier("Norwegian phone numbers (+47) must have 8 digits after the country code")
    if not 7 <= len(digits) <= 15 or digits.startswith("0"):
        raise InvalidIdentifier(_PHONE_FORM)
    return "+" + digits


def normalise_postal_code(text: str, country: str = "NO") -> str:
    """Return the postal code for ``country`` (ISO 3166 code, default Norway).

    Norway: exactly 4 digits.  Other countries: 2 to 10 characters of letters, digits,
    spaces and dashes, containing at least one letter or digit; letters are upper-cased
    and runs of spaces collapsed.
    """
    if not isinstance(text, str) or not isinstance(country, str):
        raise InvalidIdentifier("postal code and country must be text")
    if country.strip().upper() == "NO":
        code = text.strip()
        if _NO_POSTAL_RE.fullmatch(code) is None:
            raise InvalidIdentifier("Norwegian postal code must be exactly 4 digits, e.g. 0150")
        return code
    code = " ".join(text.split())
    if _FOREIGN_POSTAL_RE.fullmatch(code) is None or not any(ch.isalnum() for ch in code):
        raise InvalidIdentifier(
            "postal code must be 2 to 10 letters, digits, spaces or dashes, e.g. SW1A 1AA"
        )
    return code.upper()

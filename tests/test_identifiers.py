"""Tests for gateway.register.identifiers (PRODUCT.md §2.1 and §3)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings, strategies as st

from gateway.register.identifiers import (
    InvalidIdentifier,
    card_number_from_int,
    card_number_to_int,
    normalise_card_number,
    normalise_email,
    normalise_isil,
    normalise_phone,
    normalise_postal_code,
    validate_pin,
)


# --- card numbers -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("N000123456", "N000123456"),
        ("n000123456", "N000123456"),
        ("  N000123456\t\n", "N000123456"),
        ("N000000000", "N000000000"),
        ("N999999999", "N999999999"),
    ],
)
def test_card_number_accepted(text: str, expected: str) -> None:
    assert normalise_card_number(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "N", "N12345678", "N0001234567", "000123456", "M000123456", "N 000123456", "N00012345x",
     "NN00123456", "N000-123456", "N００0123456", "N٠٠٠١٢٣٤٥٦", "N-00123456", "N+00123456"],
)
def test_card_number_rejected_with_the_right_form(text: str) -> None:
    with pytest.raises(InvalidIdentifier, match=r"N followed by 9 digits, e\.g\. N000123456"):
        normalise_card_number(text)


def test_card_number_int_conversions() -> None:
    assert card_number_to_int("N000123456") == 123456
    assert card_number_to_int(" n999999999 ") == 999_999_999
    assert card_number_from_int(123456) == "N000123456"
    assert card_number_from_int(0) == "N000000000"


@pytest.mark.parametrize("value", [-1, 1_000_000_000, True, 1.0, "123"])
def test_card_number_from_int_out_of_range(value: object) -> None:
    with pytest.raises(InvalidIdentifier):
        card_number_from_int(value)  # type: ignore[arg-type]


@given(st.integers(0, 999_999_999))
def test_card_number_round_trip(n: int) -> None:
    card = card_number_from_int(n)
    assert len(card) == 10
    assert card_number_to_int(card) == n
    assert normalise_card_number(card.lower()) == card


@given(st.integers().filter(lambda n: not 0 <= n <= 999_999_999))
def test_card_number_from_int_rejects_out_of_range(n: int) -> None:
    with pytest.raises(InvalidIdentifier):
        card_number_from_int(n)


# --- ISIL -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("NO-2030000", "NO-2030000"),
        ("no-2030000", "NO-2030000"),
        ("2030000", "NO-2030000"),
        (" 0030100 ", "NO-0030100"),
        ("No-1120100", "NO-1120100"),
    ],
)
def test_isil_accepted(text: str, expected: str) -> None:
    assert normalise_isil(text) == expected


@pytest.mark.parametrize(
    "text", ["", "NO-", "NO-203000", "NO-20300000", "203000", "DK-710100", "SE-2030000", "NO2030000",
             "NO 2030000", "NO-203000x", "NO--2030000", "NLR"],
)
def test_isil_rejected(text: str) -> None:
    with pytest.raises(InvalidIdentifier, match=r"NO- followed by 7 digits"):
        normalise_isil(text)


# --- PIN --------------------------------------------------------------------------------------
@pytest.mark.parametrize("pin", ["0000", "1234", "12345678", "007007"])
def test_pin_accepted(pin: str) -> None:
    assert validate_pin(pin) == pin


@pytest.mark.parametrize("pin", ["", "123", "123456789", "12a4", "1234 ", " 1234", "１２３４", "12-34"])
def test_pin_rejected_without_echo(pin: str) -> None:
    with pytest.raises(InvalidIdentifier, match="4 to 8 digits") as info:
        validate_pin(pin)
    if pin.strip():
        assert pin.strip() not in str(info.value)


@given(st.from_regex(r"\A[0-9]{4,8}\Z"))
def test_pin_digits_round_trip(pin: str) -> None:
    assert validate_pin(pin) == pin


@given(st.text(alphabet="0123456789abc ", min_size=1, max_size=12))
def test_pin_error_never_echoes(pin: str) -> None:
    try:
        validate_pin(pin)
    except InvalidIdentifier as exc:
        assert len(pin.strip()) < 2 or pin.strip() not in str(exc)


# --- e-mail -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("ola.nordmann@example.no", "ola.nordmann@example.no"),
        ("  Ola.Nordmann@Example.NO ", "Ola.Nordmann@example.no"),
        ("a+tag@sub.domain.org", "a+tag@sub.domain.org"),
        ("åse@bibliotek.kommune.no", "åse@bibliotek.kommune.no"),
    ],
)
def test_email_accepted(text: str, expected: str) -> None:
    assert normalise_email(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "ola", "ola@", "@example.no", "ola@example", "ola@@example.no", "ola@ex@ample.no",
     "ola nordmann@example.no", "ola@example .no", "ola@.example.no", "ola@example.no.",
     "ola@example..no", "ola@exa\tmple.no", "ola@exam\x00ple.no", "a@" + "b" * 250 + ".no"],
)
def test_email_rejected(text: str) -> None:
    with pytest.raises(InvalidIdentifier, match="e-mail address"):
        normalise_email(text)


def test_email_length_limit() -> None:
    address = "a" * 64 + "@" + "b" * 185 + ".no"
    assert len(address) == 253
    assert normalise_email(address + " ") == address
    assert normalise_email("a" + address) == "a" + address
    with pytest.raises(InvalidIdentifier, match="254"):
        normalise_email("aa" + address)


# --- phone ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("22334455", "+4722334455"),
        ("223 34 455", "+4722334455"),
        ("+47 22 33 44 55", "+4722334455"),
        ("0047 22334455", "+4722334455"),
        ("004722334455", "+4722334455"),
        (" 987 65 432 ", "+4798765432"),
        ("+46 8 123 456 78", "+46812345678"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+1234567", "+1234567"),
        ("+123456789012345", "+123456789012345"),
    ],
)
def test_phone_accepted(text: str, expected: str) -> None:
    assert normalise_phone(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "+", "2233445", "223344556", "+47 2233445", "+47 223344556", "0047 2233445", "+123456",
     "+1234567890123456", "0046812345678", "22-33-44-55", "(+47) 22334455", "+47 22a34455",
     "++4722334455", "+0123456789", "２２３３４４５５", "4722334455"],
)
def test_phone_rejected(text: str) -> None:
    with pytest.raises(InvalidIdentifier, match="phone number|Norwegian phone"):
        normalise_phone(text)


@given(st.from_regex(r"\A[0-9]{8}\Z"), st.sampled_from(["", "+47", "0047", "+47 "]))
def test_norwegian_phone_forms_agree(number: str, prefix: str) -> None:
    spaced = " ".join([number[:3], number[3:5], number[5:]])
    assert normalise_phone(prefix + number) == normalise_phone(prefix + spaced) == "+47" + number


# --- postal code ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, country, expected",
    [
        ("0150", "NO", "0150"),
        (" 9990 ", "NO", "9990"),
        ("0150", "no", "0150"),
        ("sw1a  1aa", "GB", "SW1A 1AA"),
        ("114 55", "SE", "114 55"),
        ("1234-567", "PT", "1234-567"),
        ("10", "XX", "10"),
    ],
)
def test_postal_code_accepted(text: str, country: str, expected: str) -> None:
    assert normalise_postal_code(text, country) == expected


@pytest.mark.parametrize(
    "text, country",
    [
        ("150", "NO"),
        ("01500", "NO"),
        ("01 50", "NO"),
        ("O150", "NO"),
        ("０１５０", "NO"),
        ("1", "SE"),
        ("12345678901", "DE"),
        ("--", "DE"),
        ("12_34", "DE"),
        ("straße", "DE"),
        ("", "GB"),
    ],
)
def test_postal_code_rejected(text: str, country: str) -> None:
    with pytest.raises(InvalidIdentifier, match="postal code"):
        normalise_postal_code(text, country)


def test_postal_code_default_country_is_norway() -> None:
    assert normalise_postal_code("0150") == "0150"
    with pytest.raises(InvalidIdentifier, match="4 digits"):
        normalise_postal_code("SW1A 1AA")


# --- properties over all normalisers ----------------------------------------------------------
NORMALISERS: list[Callable[[str], str]] = [
    normalise_card_number,
    normalise_isil,
    validate_pin,
    normalise_email,
    normalise_phone,
    normalise_postal_code,
    lambda text: normalise_postal_code(text, "GB"),
]
NORMALISER_IDS = ["card", "isil", "pin", "email", "phone", "postal-NO", "postal-GB"]

# Text that often gets deep into the parsers, mixed with anything at all.
LIKELY_TEXT = st.one_of(
    st.text(),
    st.text(alphabet="Nn0123456789 +-@.oO\t", max_size=20),
    st.from_regex(r"\A\s*[Nn][0-9]{9}\s*\Z"),
    st.from_regex(r"\A(?:[Nn][Oo]-)?[0-9]{7}\Z"),
    st.from_regex(r"\A[^@\s]{1,20}@[^@\s]{1,20}\.[a-zA-Z]{2,5}\Z"),
    st.from_regex(r"\A(?:\+|00)?[0-9 ]{6,18}\Z"),
    st.from_regex(r"\A[A-Za-z0-9 -]{1,12}\Z"),
)


# (pytest-twisted cannot run @given tests that are also parametrised, so the normaliser is drawn.)
@settings(max_examples=1000)
@given(normalise=st.sampled_from(NORMALISERS), text=LIKELY_TEXT)
def test_arbitrary_text_only_raises_invalid_identifier_and_normalising_is_idempotent(
    normalise: Callable[[str], str], text: str
) -> None:
    try:
        result = normalise(text)
    except InvalidIdentifier:
        return
    assert normalise(result) == result


@given(st.from_regex(r"\A[^@\s]{1,30}@[^@\s.]{1,20}\.[^@\s.]{1,10}\Z"))
def test_email_keeps_local_part_and_lower_cases_domain(text: str) -> None:
    try:
        result = normalise_email(text)
    except InvalidIdentifier:
        return
    local, domain = result.split("@")
    assert local == text.split("@")[0]
    assert domain == text.split("@")[1].lower()


@pytest.mark.parametrize("normalise", NORMALISERS, ids=NORMALISER_IDS)
@pytest.mark.parametrize("value", [None, 12345678, b"N000123456"])
def test_non_text_raises_invalid_identifier(normalise: Callable[[str], str], value: object) -> None:
    with pytest.raises(InvalidIdentifier):
        normalise(value)  # type: ignore[arg-type]

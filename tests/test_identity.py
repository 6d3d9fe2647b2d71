"""Tests for gateway.register.identity (shared/spec/identity-numbers.md)."""

from __future__ import annotations

import dataclasses
import datetime

import pytest
from hypothesis import assume, example, given, strategies as st

from gateway.register.identity import InvalidNationalId, NationalId, parse_national_id

K1_WEIGHTS = (3, 7, 6, 1, 8, 9, 4, 5, 2)  # digits 1-9; K1 itself has weight 1
K2_WEIGHTS = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)  # digits 1-10; K2 itself has weight 1
DUF_WEIGHTS = (4, 6, 3, 2, 4, 6, 3, 2, 7, 5)


def weighted(weights: tuple[int, ...], digits: str) -> int:
    return sum(w * int(d) for w, d in zip(weights, digits, strict=True))


def with_check_digits(first9: str, k1_remainder: int = 0) -> str | None:
    """Append K1, K2 so that (S1 + K1) mod 11 == k1_remainder and K2 passes; None if impossible."""
    k1 = (k1_remainder - weighted(K1_WEIGHTS, first9)) % 11
    if k1 == 10:
        return None
    k2 = -weighted(K2_WEIGHTS, first9 + str(k1)) % 11
    if k2 == 10:
        return None
    return f"{first9}{k1}{k2}"


def number_for(prefix6: str, remainder: int = 0, individuals: range = range(123, 1000)) -> str:
    """The first number with this date part (DDMMYY) and K1 remainder, over ``individuals``."""
    return next(
        n for i in individuals if (n := with_check_digits(f"{prefix6}{i:03d}", remainder)) is not None
    )


def duf_with_check(first10: str) -> str:
    return f"{first10}{weighted(DUF_WEIGHTS, first10) % 11:02d}"


# --- §6 test vectors: one case per number -----------------------------------------------------
# (number, valid without synthetic, valid with synthetic, kind, synthetic, rule) — the last three
# only for numbers that are valid in at least one mode.
VECTORS = [
    ("03851598730", False, True, "fnr", True, "legacy"),
    ("30908299902", False, True, "fnr", True, "2032"),
    ("41819077302", False, True, "dnr", True, "legacy"),
    ("41819077906", False, True, "dnr", True, "2032"),
    ("02013299997", True, True, "fnr", False, "legacy"),
    ("30108299920", True, True, "fnr", False, "legacy"),
    ("30108299939", True, True, "fnr", False, "2032"),
    ("08089409382", True, True, "fnr", False, "legacy"),
    ("08089408084", True, True, "fnr", False, "legacy"),
    ("20036914712", False, False, None, None, None),
    ("29020105729", False, False, None, None, None),
    ("00000000000", False, False, None, None, None),
    ("03851598731", False, False, None, None, None),
    ("08089409383", False, False, None, None, None),
    ("190000000108", True, True, "duf", False, "duf"),
    ("190000000810", True, True, "duf", False, "duf"),
    ("190000000109", False, False, None, None, None),
]


def assert_rejected_quietly(text: str, number: str, allow_synthetic: bool = False) -> InvalidNationalId:
    with pytest.raises(InvalidNationalId) as info:
        parse_national_id(text, allow_synthetic=allow_synthetic)
    exc = info.value
    needles = [n for n in (number, text) if len(n.strip()) >= 5]
    for shown in (str(exc), repr(exc), exc.reason, *map(str, exc.args)):
        assert not any(needle in shown for needle in needles)
    assert exc.reason
    return exc


@pytest.mark.parametrize("allow_synthetic", [False, True], ids=["production", "synthetic-allowed"])
@pytest.mark.parametrize(
    "number, valid_prod, valid_synth, kind, synthetic, rule", VECTORS, ids=[v[0] for v in VECTORS]
)
def test_spec_vector(
    number: str,
    valid_prod: bool,
    valid_synth: bool,
    kind: str | None,
    synthetic: bool | None,
    rule: str | None,
    allow_synthetic: bool,
) -> None:
    expected_valid = valid_synth if allow_synthetic else valid_prod
    if expected_valid:
        result = parse_national_id(number, allow_synthetic=allow_synthetic)
        assert (result.value, result.kind, result.synthetic, result.rule) == (number, kind, synthetic, rule)
    else:
        assert_rejected_quietly(number, number, allow_synthetic)


@pytest.mark.parametrize(
    "number, reason_word",
    [
        ("20036914712", "K2"),
        ("03851598731", "K2"),
        ("29020105729", "date"),
        ("00000000000", "date"),
        ("190000000109", "DUF"),
    ],
)
def test_vector_failure_reasons(number: str, reason_word: str) -> None:
    assert reason_word in assert_rejected_quietly(number, number, allow_synthetic=True).reason


def test_synthetic_rejected_in_production_says_why() -> None:
    assert "synthetic" in assert_rejected_quietly("03851598730", "03851598730").reason


# --- classification ---------------------------------------------------------------------------
def test_result_has_exactly_the_documented_fields_and_no_gender() -> None:
    result = parse_national_id("08089409382")
    assert [f.name for f in dataclasses.fields(NationalId)] == ["value", "kind", "synthetic", "rule"]
    assert not hasattr(result, "gender")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.kind = "dnr"  # type: ignore[misc]


@pytest.mark.parametrize("text", ["080894 093 82", " 080894-09382 ", "08 08 94-093-82", "080894\t09382"])
def test_spaces_and_dashes_are_stripped(text: str) -> None:
    assert parse_national_id(text).value == "08089409382"


def test_dnumber_without_synthetic() -> None:
    number = number_for("410170")  # 1 Jan 1970 + 40 on the day
    result = parse_national_id(number)
    assert (result.kind, result.synthetic, result.rule) == ("dnr", False, "legacy")


@pytest.mark.parametrize("prefix6", ["014190", "015290", "314590"])
@pytest.mark.parametrize("allow_synthetic", [False, True])
def test_h_numbers_rejected(prefix6: str, allow_synthetic: bool) -> None:
    for remainder in (0, 1):
        number = number_for(prefix6, remainder)
        assert "H-number" in assert_rejected_quietly(number, number, allow_synthetic).reason


@pytest.mark.parametrize("prefix6", ["054590", "454690", "056710", "287099"])
@pytest.mark.parametrize("allow_synthetic", [False, True])
def test_nav_plus_40_synthetic_rejected(prefix6: str, allow_synthetic: bool) -> None:
    number = number_for(prefix6)
    assert "NAV" in assert_rejected_quietly(number, number, allow_synthetic).reason


@pytest.mark.parametrize("prefix6", ["810190", "900000", "992512", "850190"])
@pytest.mark.parametrize("allow_synthetic", [False, True])
def test_fh_numbers_and_old_h_numbers_rejected(prefix6: str, allow_synthetic: bool) -> None:
    number = number_for(prefix6)
    assert "FH" in assert_rejected_quietly(number, number, allow_synthetic).reason


# --- dates ------------------------------------------------------------------------------------
LOW, HIGH = range(0, 500), range(500, 1000)  # individnummer: 1900s / 2000s when YY <= 39


@pytest.mark.parametrize(
    "prefix6, remainder, individuals, valid",
    [
        ("290200", 0, LOW, False),  # legacy rule, individnummer 000-499: 1900, not a leap year
        ("290200", 0, HIGH, True),  # legacy rule, individnummer 500-999: 2000, a leap year
        ("290200", 1, LOW, True),  # 2032 rule: any century may apply, and 2000 works
        ("290200", 3, LOW, True),
        ("290204", 0, LOW, True),  # 1904
        ("290201", 0, LOW, False),  # no century makes 29 Feb 01 exist
        ("290201", 2, HIGH, False),
        ("690200", 0, LOW, False),  # the same as a D-number
        ("690200", 1, LOW, True),
        ("298200", 0, LOW, False),  # and as a synthetic number
        ("298200", 0, HIGH, True),
    ],
)
def test_29_february(prefix6: str, remainder: int, individuals: range, valid: bool) -> None:
    number = number_for(prefix6, remainder, individuals)
    if valid:
        assert parse_national_id(number, allow_synthetic=True).rule == ("legacy" if remainder == 0 else "2032")
    else:
        assert "date" in assert_rejected_quietly(number, number, allow_synthetic=True).reason


@pytest.mark.parametrize(
    "prefix6", ["310490", "001090", "320190", "011390", "010090", "720190", "019390", "012090", "310690"]
)
def test_impossible_day_or_month(prefix6: str) -> None:
    number = number_for(prefix6)
    assert_rejected_quietly(number, number, allow_synthetic=True)


# --- format -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    ["", " ", "0808940938", "0808940938200", "O8089409382", "08089409382x",
     "０８０８９４０９３８２", "٠٨٠٨٩٤٠٩٣٨٢", "08.08.94 09382", "+8089409382"],
)
def test_malformed_text(text: str) -> None:
    assert "digits" in assert_rejected_quietly(text, text).reason


@pytest.mark.parametrize("value", [None, 8089409382, b"08089409382", ["08089409382"]])
def test_non_text_input(value: object) -> None:
    with pytest.raises(InvalidNationalId):
        parse_national_id(value)  # type: ignore[arg-type]


# --- masking ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "number, masked",
    [("08089409382", "080894*****"), ("41819077302", "418190*****"), ("190000000810", "1900********")],
)
def test_masking(number: str, masked: str) -> None:
    result = parse_national_id(number, allow_synthetic=True)
    assert result.masked() == masked
    assert str(result) == masked
    for shown in (repr(result), str(result), repr([result]), f"{result}"):
        assert number not in shown and masked in shown


# --- properties -------------------------------------------------------------------------------
INDIVIDNUMMER_RANGES = {  # birth year range -> individnummer ranges under the pre-2032 rules
    (1854, 1899): [(500, 749)],
    (1900, 1939): [(0, 499)],
    (1940, 1999): [(0, 499), (900, 999)],
    (2000, 2039): [(500, 999)],
}


@st.composite
def valid_numbers(draw: st.DrawFn) -> tuple[str, str, bool, str]:
    """(number, kind, synthetic, rule) built from a real birth date and consistent individnummer."""
    born = draw(st.dates(datetime.date(1854, 1, 1), datetime.date(2039, 12, 31)))
    kind = draw(st.sampled_from(["fnr", "dnr"]))
    synthetic = draw(st.booleans())
    remainder = draw(st.sampled_from([0, 1, 2, 3]))
    if remainder == 0:  # legacy: the individnummer must match the century
        ranges = next(r for (lo, hi), r in INDIVIDNUMMER_RANGES.items() if lo <= born.year <= hi)
        low, high = draw(st.sampled_from(ranges))
        individual = draw(st.integers(low, high))
    else:  # 2032: the individnummer tells nothing
        individual = draw(st.integers(0, 999))
    day = born.day + (40 if kind == "dnr" else 0)
    month = born.month + (80 if synthetic else 0)
    number = with_check_digits(f"{day:02d}{month:02d}{born.year % 100:02d}{individual:03d}", remainder)
    assume(number is not None)
    assert number is not None
    return number, kind, synthetic, "legacy" if remainder == 0 else "2032"


@st.composite
def valid_duf_numbers(draw: st.DrawFn) -> str:
    year = draw(st.integers(1900, 2099))
    serial = draw(st.integers(0, 999_999))
    return duf_with_check(f"{year:04d}{serial:06d}")


@given(valid_numbers())
def test_generated_numbers_validate_with_right_fields(case: tuple[str, str, bool, str]) -> None:
    number, kind, synthetic, rule = case
    result = parse_national_id(number, allow_synthetic=True)
    assert (result.value, result.kind, result.synthetic, result.rule) == (number, kind, synthetic, rule)
    if synthetic:
        assert_rejected_quietly(number, number, allow_synthetic=False)
    else:
        assert parse_national_id(number) == result


@given(valid_duf_numbers())
def test_generated_duf_numbers_validate(number: str) -> None:
    result = parse_national_id(number)
    assert (result.value, result.kind, result.synthetic, result.rule) == (number, "duf", False, "duf")


@given(valid_numbers(), st.integers(0, 10), st.integers(1, 9))
def test_changing_any_single_digit_invalidates(case: tuple[str, str, bool, str], pos: int, delta: int) -> None:
    """K2 weights (5 4 3 2 7 6 5 4 3 2 1) are all non-zero mod the prime 11, so a one-digit change
    always breaks K2 — whatever K1 rule the original number used."""
    number = case[0]
    changed = number[:pos] + str((int(number[pos]) + delta) % 10) + number[pos + 1 :]
    assert_rejected_quietly(changed, changed, allow_synthetic=True)


@given(valid_numbers(), st.integers(1, 9))
def test_changing_the_last_digit_invalidates(case: tuple[str, str, bool, str], delta: int) -> None:
    number = case[0]
    changed = number[:10] + str((int(number[10]) + delta) % 10)
    assert_rejected_quietly(changed, changed, allow_synthetic=True)


@given(valid_numbers(), st.integers(0, 9))
def test_swapping_adjacent_digits_invalidates(case: tuple[str, str, bool, str], pos: int) -> None:
    """Adjacent K2 weights differ by a non-zero amount mod 11, so any real transposition is caught."""
    number = case[0]
    assume(number[pos] != number[pos + 1])
    swapped = number[:pos] + number[pos + 1] + number[pos] + number[pos + 2 :]
    assert_rejected_quietly(swapped, swapped, allow_synthetic=True)


@given(valid_duf_numbers(), st.integers(0, 11), st.integers(1, 9))
def test_changing_any_single_duf_digit_invalidates(number: str, pos: int, delta: int) -> None:
    changed = number[:pos] + str((int(number[pos]) + delta) % 10) + number[pos + 1 :]
    assert_rejected_quietly(changed, changed, allow_synthetic=True)


@given(st.text(), st.booleans())
@example("٠٨٠٨٩٤٠٩٣٨٢", False)
@example("08089409382\x00", True)
def test_arbitrary_text_only_raises_invalid_national_id(text: str, allow_synthetic: bool) -> None:
    try:
        parse_national_id(text, allow_synthetic=allow_synthetic)
    except InvalidNationalId:
        pass


@given(st.from_regex(r"\A[0-9 -]{11,14}\Z"), st.booleans())
def test_digit_strings_never_leak_into_errors(text: str, allow_synthetic: bool) -> None:
    digits = text.replace(" ", "").replace("-", "")
    assume(len(digits) >= 5)
    try:
        result = parse_national_id(text, allow_synthetic=allow_synthetic)
    except InvalidNationalId as exc:
        assert digits not in str(exc) and digits not in repr(exc) and digits not in exc.reason
    else:
        assert result.value == digits
        assert digits not in repr(result) and digits not in str(result)

"""Number series: reserving card numbers, and registering cards inside (or outside) them (PRODUCT §2.10)."""

from __future__ import annotations

import pytest
from register_helpers import BERGEN, OSLO, add_patron, client, raw_exec, raw_rows

from gateway.register.errors import (
    CardInUse,
    CardOutsideSeries,
    InvalidInput,
    NotFound,
    PermissionDenied,
    SeriesExhausted,
    SeriesOverlap,
)
from gateway.register.views import OPERATOR


@pytest.fixture
def libs(register):
    register.add_library(OPERATOR, OSLO, "Deichman Oslo")
    register.add_library(OPERATOR, BERGEN, "Bergen offentlige bibliotek")
    return register


# ------------------------------------------------------------------ reserving


def test_reserve_by_count_takes_the_next_free_range(libs):
    first = libs.reserve_series(OPERATOR, OSLO, count=1000)
    assert first.range == "N000000001-N000001000"
    assert (first.library_isil, first.size, first.used, first.next_free) == (OSLO, 1000, 0, "N000000001")
    second = libs.reserve_series(OPERATOR, "2120100", count=500)
    assert second.range == "N000001001-N000001500"
    assert second.library_isil == BERGEN


def test_reserve_by_count_fills_a_gap_that_is_large_enough_and_skips_one_too_small(libs):
    libs.reserve_series(OPERATOR, OSLO, first="N000000001", last="N000000100")
    libs.reserve_series(OPERATOR, OSLO, first="N000000201", last="N000000300")  # gap 101..200 (100 numbers)
    assert libs.reserve_series(OPERATOR, BERGEN, count=101).range == "N000000301-N000000401"  # too big for the gap
    assert libs.reserve_series(OPERATOR, BERGEN, count=100).range == "N000000101-N000000200"  # fits exactly
    assert libs.reserve_series(OPERATOR, BERGEN, count=1).range == "N000000402-N000000402"


def test_reserve_explicit_range_accepts_lower_case_and_spaces(libs):
    s = libs.reserve_series(OPERATOR, OSLO, first=" n000100000", last="N000199999 ")
    assert s.range == "N000100000-N000199999"
    assert s.size == 100_000


OVERLAPS = [
    ("N000100000", "N000199999"),  # the same range
    ("N000150000", "N000150000"),  # one number inside
    ("N000050000", "N000100000"),  # touches the first number
    ("N000199999", "N000250000"),  # touches the last number
    ("N000000001", "N999999999"),  # around it
]


def test_overlapping_series_refused_naming_the_existing_range(libs):
    libs.reserve_series(OPERATOR, OSLO, first="N000100000", last="N000199999")
    for first, last in OVERLAPS:
        with pytest.raises(SeriesOverlap) as err:
            libs.reserve_series(OPERATOR, BERGEN, first=first, last=last)
        assert "N000100000-N000199999" in str(err.value), (first, last)
    assert [s.range for s in libs.list_series()] == ["N000100000-N000199999"]


def test_adjacent_series_are_not_an_overlap(libs):
    libs.reserve_series(OPERATOR, OSLO, first="N000100000", last="N000199999")
    libs.reserve_series(OPERATOR, BERGEN, first="N000200000", last="N000299999")
    libs.reserve_series(OPERATOR, BERGEN, first="N000000000", last="N000099999")
    assert [s.range for s in libs.list_series()] == [
        "N000000000-N000099999", "N000100000-N000199999", "N000200000-N000299999"]
    assert [s.range for s in libs.list_series("2120100")] == ["N000000000-N000099999", "N000200000-N000299999"]


def test_count_out_of_bounds_refused(libs):
    for count in (0, -5, 1_000_000_000):
        with pytest.raises(InvalidInput, match="count"):
            libs.reserve_series(OPERATOR, OSLO, count=count)
    assert libs.list_series() == []


def test_count_larger_than_what_is_left_says_exhausted(libs):
    libs.reserve_series(OPERATOR, OSLO, first="N000000001", last="N999999000")
    with pytest.raises(SeriesExhausted):
        libs.reserve_series(OPERATOR, BERGEN, count=1000)
    assert libs.reserve_series(OPERATOR, BERGEN, count=999).range == "N999999001-N999999999"
    with pytest.raises(SeriesExhausted):
        libs.reserve_series(OPERATOR, BERGEN, count=1)


MALFORMED = [
    {},
    {"count": 10, "first": "N000000001", "last": "N000000010"},
    {"first": "N000000001"},
    {"last": "N000000010"},
    {"first": "N000000010", "last": "N000000001"},  # backwards
    {"first": "N00000001", "last": "N000000010"},  # 8 digits
    {"first": "X000000001", "last": "N000000010"},
]


def test_malformed_reservations_refused(libs):
    for kwargs in MALFORMED:
        with pytest.raises(InvalidInput):
            libs.reserve_series(OPERATOR, OSLO, **kwargs)
    assert libs.list_series() == []


def test_only_the_operator_reserves_series_and_only_for_known_libraries(libs):
    with pytest.raises(PermissionDenied):
        libs.reserve_series(client(OSLO), OSLO, count=10)
    with pytest.raises(NotFound, match="NO-2160100"):
        libs.reserve_series(OPERATOR, "NO-2160100", count=10)
    assert libs.list_series() == []


def test_series_reservation_is_audited(libs):
    libs.reserve_series(OPERATOR, OSLO, count=10)
    assert raw_rows(libs, "SELECT action, library_isil, detail FROM audit_events WHERE action = 'series_reserve'") == [
        ("series_reserve", OSLO, "N000000001-N000000010")]


# ------------------------------------------------------------------ registering cards in series


@pytest.fixture
def series(libs):
    libs.reserve_series(OPERATOR, OSLO, first="N000100000", last="N000100004")
    libs.reserve_series(OPERATOR, BERGEN, first="N000200000", last="N000299999")
    return libs


def test_register_with_card_inside_own_series(series):
    p = add_patron(series, 0, OSLO, card="n000100003 ")
    assert p.card == p.current_card == "N000100003"
    view = [s for s in series.list_series(OSLO)][0]
    assert view.used == 1


def test_register_with_card_outside_own_series_refused(series):
    for card in ("N000200005", "N000100005", "N000000001", "N999999999"):
        with pytest.raises(CardOutsideSeries, match=card):
            add_patron(series, 0, OSLO, card=card)
    assert series.counts()["patrons"] == 0


def test_library_cannot_use_another_librarys_series_even_through_its_own_client(series):
    with pytest.raises(CardOutsideSeries):
        add_patron(series, 0, OSLO, actor=client(OSLO), card="N000200000")
    with pytest.raises(PermissionDenied):  # and it cannot register on Bergen's behalf either
        add_patron(series, 0, BERGEN, actor=client(OSLO), card="N000200000")


def test_card_in_use_refused(series):
    add_patron(series, 0, OSLO, card="N000100001")
    with pytest.raises(CardInUse, match="N000100001"):
        add_patron(series, 1, OSLO, card="N000100001")
    assert series.counts()["patrons"] == 1


def test_malformed_card_refused_with_the_right_form(series):
    with pytest.raises(InvalidInput, match="N followed by 9 digits"):
        add_patron(series, 0, OSLO, card="N1234")


def test_allocation_hands_out_the_series_in_order_and_skips_numbers_taken_explicitly(series):
    add_patron(series, 0, OSLO, card="N000100001")
    add_patron(series, 1, OSLO, card="N000100003")
    cards = [add_patron(series, k, OSLO).card for k in (2, 3, 4)]
    assert cards == ["N000100000", "N000100002", "N000100004"]
    (view,) = series.list_series(OSLO)
    assert view.used == 5 and view.next_free is None
    with pytest.raises(SeriesExhausted, match="reserve a new series"):
        add_patron(series, 5, OSLO)
    assert series.counts()["patrons"] == 5


def test_allocation_moves_on_to_the_next_series_of_the_library(series):
    series.reserve_series(OPERATOR, OSLO, first="N000500000", last="N000500009")
    cards = [add_patron(series, k, OSLO).card for k in range(6)]
    assert cards[-1] == "N000500000" and cards[:5] == [f"N00010000{i}" for i in range(5)]


def test_library_without_a_series_cannot_register(libs):
    with pytest.raises(SeriesExhausted):
        add_patron(libs, 0, OSLO)
    with pytest.raises(CardOutsideSeries):
        add_patron(libs, 0, OSLO, card="N000000001")


def test_a_failed_registration_does_not_use_up_a_number(series):
    add_patron(series, 0, OSLO)
    with pytest.raises(InvalidInput):
        add_patron(series, 1, OSLO, email="not an address")
    assert add_patron(series, 1, OSLO).card == "N000100001"


# ------------------------------------------------------------------ conflicts (legacy data)


def test_no_conflicts_in_a_clean_register(series):
    add_patron(series, 0, OSLO)
    add_patron(series, 1, BERGEN)
    assert series.series_conflicts() == []


def test_legacy_card_outside_its_librarys_series_is_reported_not_dropped(series):
    p = add_patron(series, 0, OSLO)
    # legacy import: a Bergen card number in Oslo's hands, and one in no series at all
    (patron_id,) = raw_rows(series, "SELECT patron_id FROM cards WHERE number = :n", n=p.card)[0]
    (oslo_id,) = raw_rows(series, "SELECT id FROM libraries WHERE isil = :i", i=OSLO)[0]
    for number in ("N000200777", "N000900000"):
        raw_exec(series, "INSERT INTO cards (number, patron_id, library_id, status, issued_at) "
                         "VALUES (:n, :p, :l, 'replaced', CURRENT_TIMESTAMP)", n=number, p=patron_id, l=oslo_id)
    conflicts = series.series_conflicts()
    assert sorted((c["card"], c["library"]) for c in conflicts) == [("N000200777", OSLO), ("N000900000", OSLO)]
    # nothing was overwritten or dropped, and the numbers are still taken
    assert len(raw_rows(series, "SELECT number FROM cards")) == 3
    with pytest.raises(CardInUse):
        add_patron(series, 1, BERGEN, card="N000200777")

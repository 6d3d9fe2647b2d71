"""The decision table of sip2.md A.4 (gateway.register.decisions), without a database: each row
refuses in its turn, and the first that refuses wins."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from hypothesis import given, strategies as st

from gateway.register.decisions import TABLE, Facts, age_on, decide
from gateway.register.vocabulary import PinCheck, Reason

TODAY = date(2026, 12, 1)
GOOD = Facts(card_status="active", pin=PinCheck.OK, door=True, pin_required=True, blocked=False, activated=True,
             auto_activation=False, door_agreement=True, door_revoked=False, birth_date=date(1985, 3, 14),
             door_min_age=18, today=TODAY)


def test_a_patron_in_good_standing_is_granted():
    assert decide(GOOD) is Reason.GRANTED


@pytest.mark.parametrize(("change", "reason"), [
    ({"card_status": "lost"}, Reason.CARD_LOST),
    ({"card_status": "replaced"}, Reason.CARD_REPLACED),
    ({"pin": PinCheck.LOCKED}, Reason.PIN_LOCKED),
    ({"pin": PinCheck.WRONG}, Reason.PIN_WRONG),
    ({"pin": PinCheck.NO_PIN}, Reason.PIN_WRONG),
    ({"pin": None}, Reason.PIN_MISSING),
    ({"blocked": True}, Reason.PATRON_BLOCKED),
    ({"activated": False}, Reason.NOT_ACTIVATED),
    ({"door_agreement": False}, Reason.DOOR_NO_AGREEMENT),
    ({"door_revoked": True}, Reason.DOOR_REVOKED),
    ({"birth_date": date(2010, 12, 2)}, Reason.DOOR_UNDERAGE),  # 15 today, 16 tomorrow
    ({"birth_date": None}, Reason.DOOR_UNDERAGE),  # no birth date: the door stays shut where an age applies
])
def test_each_row_refuses(change, reason):
    assert decide(replace(GOOD, **change)) is reason


def test_the_order_of_the_table():
    """A lost card is lost before its PIN is judged; a wrong PIN before a block (no PIN, no data)."""
    assert [r for r, _ in TABLE] == [
        Reason.CARD_LOST, Reason.CARD_REPLACED, Reason.PIN_LOCKED, Reason.PIN_WRONG, Reason.PIN_MISSING,
        Reason.PATRON_BLOCKED, Reason.NOT_ACTIVATED, Reason.DOOR_NO_AGREEMENT, Reason.DOOR_REVOKED,
        Reason.DOOR_UNDERAGE]
    everything_wrong = replace(GOOD, card_status="lost", pin=PinCheck.WRONG, blocked=True, activated=False)
    assert decide(everything_wrong) is Reason.CARD_LOST
    assert decide(replace(everything_wrong, card_status="active")) is Reason.PIN_WRONG


def test_kiosks_and_doors_differ_only_in_door_rows():
    kiosk = replace(GOOD, door=False, door_agreement=False, door_revoked=True, birth_date=date(2020, 1, 1))
    assert decide(kiosk) is Reason.GRANTED
    assert decide(replace(kiosk, pin=None, pin_required=False)) is Reason.GRANTED
    assert decide(replace(kiosk, pin=None)) is Reason.PIN_MISSING


def test_auto_activation_needs_the_right_pin():
    first_visit = replace(GOOD, activated=False, auto_activation=True)
    assert decide(first_visit) is Reason.GRANTED
    assert decide(replace(first_visit, pin=None, door=False, pin_required=False)) is Reason.NOT_ACTIVATED


def test_age_on_the_birthday():
    assert age_on(date(2008, 12, 1), TODAY) == 18
    assert age_on(date(2008, 12, 2), TODAY) == 17
    assert age_on(date(2008, 2, 29), date(2026, 2, 28)) == 17
    assert age_on(date(2008, 2, 29), date(2026, 3, 1)) == 18


@given(st.builds(Facts, card_status=st.sampled_from(["active", "lost", "replaced"]),
                 pin=st.sampled_from([None, *PinCheck]), door=st.booleans(), pin_required=st.booleans(),
                 blocked=st.booleans(), activated=st.booleans(), auto_activation=st.booleans(),
                 door_agreement=st.booleans(), door_revoked=st.booleans(),
                 birth_date=st.none() | st.dates(date(1900, 1, 1), TODAY), door_min_age=st.integers(0, 120),
                 today=st.just(TODAY)))
def test_granted_only_when_no_row_refuses(facts):
    reason = decide(facts)
    refusing = [r for r, refuses in TABLE if refuses(facts)]
    assert reason is (refusing[0] if refusing else Reason.GRANTED)
    if reason is Reason.GRANTED:
        assert facts.card_status == "active" and not facts.blocked
        assert facts.pin is PinCheck.OK or (facts.pin is None and not facts.door and not facts.pin_required)

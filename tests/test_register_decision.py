"""The patron decision (sip2.md A.4): every reason code, activation on use, and the audit it leaves."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from register_helpers import (
    BERGEN,
    OSLO,
    PIN,
    TRONDHEIM,
    add_patron,
    client,
    raw_rows,
    terminal,
)

from gateway.register import Register, Settings
from gateway.register.crypto import KeyRing
from gateway.register.database import make_engine
from gateway.register.errors import RegisterUnavailable
from gateway.register.views import OPERATOR, Reason

KIOSK = terminal(OSLO, "oslo-kiosk")
DOOR = terminal(OSLO, "oslo-door")


def _events(reg):
    return raw_rows(reg, "SELECT action, outcome, card_number, actor, library_isil, detail FROM audit_events "
                         "WHERE action IN ('door', 'patron_check') ORDER BY id")


def test_granted_at_kiosk_and_door(reg):
    p = add_patron(reg, 0, OSLO)
    d = reg.decide(KIOSK, p.card, PIN)
    assert d.reason is Reason.GRANTED and d.granted
    assert d.pin_checked and d.pin_valid and not d.card_lost and not d.activated_now
    assert d.patron.card == p.card and d.patron.surname == "Nordmann0"
    assert d.patron.national_id is None
    reg.activate(OPERATOR, p.card, OSLO, door_agreement=True)
    assert reg.decide(DOOR, f" {p.card.lower()} ", PIN, door=True).reason is Reason.GRANTED


def test_unknown_card(reg):
    add_patron(reg, 0, OSLO)
    for card in ("N000100999", "N999999999", "hello", "", "N00010000", "N0001000001"):
        d = reg.decide(KIOSK, card, PIN)
        assert d.reason is Reason.UNKNOWN_CARD and d.patron is None, card
        assert not d.pin_valid and not d.card_lost and not d.granted


def test_card_lost_and_card_replaced_never_authenticate(reg):
    p = add_patron(reg, 0, OSLO)
    q = add_patron(reg, 1, OSLO)
    reg.activate(OPERATOR, p.card, OSLO, door_agreement=True)
    reg.report_lost(OPERATOR, p.card)
    for door, actor in ((False, KIOSK), (True, DOOR)):
        d = reg.decide(actor, p.card, PIN, door=door)
        assert d.reason is Reason.CARD_LOST and d.card_lost and not d.pin_valid and not d.granted
    reg.replace_card(OPERATOR, q.card)
    d = reg.decide(KIOSK, q.card, PIN)
    assert d.reason is Reason.CARD_REPLACED and d.card_lost and not d.pin_valid
    # after replacement the lost card is still lost, the new one works
    new = reg.replace_card(OPERATOR, p.card)
    assert reg.decide(KIOSK, p.card, PIN).reason is Reason.CARD_LOST
    assert reg.decide(DOOR, new.current_card, PIN, door=True).reason is Reason.GRANTED


def test_patron_blocked(reg):
    p = add_patron(reg, 0, OSLO)
    reg.set_blocked(OPERATOR, p.card, True, "sperret")
    d = reg.decide(KIOSK, p.card, PIN)
    assert d.reason is Reason.PATRON_BLOCKED and d.pin_valid and not d.granted and d.patron.blocked
    assert reg.decide(KIOSK, p.card, "0000").reason is Reason.PIN_WRONG  # the PIN is still checked first


def test_pin_wrong_and_pin_missing(reg):
    p = add_patron(reg, 0, OSLO)
    wrong = reg.decide(KIOSK, p.card, "0000")
    assert wrong.reason is Reason.PIN_WRONG and wrong.pin_checked and not wrong.pin_valid
    for pin in (None, ""):
        missing = reg.decide(KIOSK, p.card, pin)
        assert missing.reason is Reason.PIN_MISSING and not missing.pin_checked and not missing.pin_valid
    # a terminal that does not require PINs may show the patron without one ...
    lax = reg.decide(KIOSK, p.card, None, pin_required=False)
    assert lax.reason is Reason.GRANTED and not lax.pin_checked and not lax.pin_valid
    # ... but a door never opens without one
    reg.activate(OPERATOR, p.card, OSLO, door_agreement=True)
    assert reg.decide(DOOR, p.card, None, door=True, pin_required=False).reason is Reason.PIN_MISSING


def test_patron_without_a_pin_never_passes_a_pin_check(reg):
    p = add_patron(reg, 0, OSLO, pin=None)
    assert reg.decide(KIOSK, p.card, "0000").reason is Reason.PIN_WRONG
    assert reg.decide(KIOSK, p.card, None).reason is Reason.PIN_MISSING


def test_pin_locked(reg):
    p = add_patron(reg, 0, OSLO)
    reasons = [reg.decide(KIOSK, p.card, "0000").reason for _ in range(5)]
    assert reasons[:4] == [Reason.PIN_WRONG] * 4 and reasons[4] in (Reason.PIN_WRONG, Reason.PIN_LOCKED)
    d = reg.decide(KIOSK, p.card, PIN)
    assert d.reason is Reason.PIN_LOCKED and not d.pin_valid


def test_not_activated_where_the_library_activates_only_itself(reg):
    p = add_patron(reg, 0, OSLO)
    bergen_kiosk = terminal(BERGEN, "bergen-kiosk")
    d = reg.decide(bergen_kiosk, p.card, PIN)
    assert d.reason is Reason.NOT_ACTIVATED and d.pin_valid and not d.activated_now
    assert reg.find_patron(OPERATOR, p.card).activation_at(BERGEN) is None
    reg.activate(client(BERGEN), p.card, BERGEN)
    assert reg.decide(bergen_kiosk, p.card, PIN).reason is Reason.GRANTED


def test_auto_activation_on_first_authenticated_use(reg):
    p = add_patron(reg, 0, OSLO)
    tr = terminal(TRONDHEIM, "trondheim-kiosk")
    # no PIN, or a wrong one, is not an authenticated use
    assert reg.decide(tr, p.card, None, pin_required=False).reason is Reason.NOT_ACTIVATED
    assert reg.decide(tr, p.card, "0000").reason is Reason.PIN_WRONG
    assert reg.find_patron(OPERATOR, p.card).activation_at(TRONDHEIM) is None
    first = reg.decide(tr, p.card, PIN)
    assert first.reason is Reason.GRANTED and first.activated_now
    act = reg.find_patron(OPERATOR, p.card).activation_at(TRONDHEIM)
    assert act is not None and act.channel == "sip2" and act.rules_version == "1" and not act.home
    second = reg.decide(tr, p.card, PIN)
    assert second.reason is Reason.GRANTED and not second.activated_now
    assert len(reg.find_patron(OPERATOR, p.card).activations) == 2
    assert [(a, o) for a, o, *_ in raw_rows(reg, "SELECT action, outcome FROM audit_events "
                                                  "WHERE action = 'patron_activate'")] == [("patron_activate", "ok")]


def test_blocked_patron_is_not_auto_activated(reg):
    p = add_patron(reg, 0, OSLO)
    reg.set_blocked(OPERATOR, p.card, True, "sperret")
    assert reg.decide(terminal(TRONDHEIM), p.card, PIN).reason is Reason.PATRON_BLOCKED
    assert reg.find_patron(OPERATOR, p.card).activation_at(TRONDHEIM) is None


def test_door_no_agreement_and_revoked(reg):
    p = add_patron(reg, 0, OSLO)
    assert reg.decide(DOOR, p.card, PIN, door=True).reason is Reason.DOOR_NO_AGREEMENT
    assert reg.decide(KIOSK, p.card, PIN).reason is Reason.GRANTED  # the kiosk does not need the agreement
    reg.activate(client(OSLO), p.card, OSLO, door_agreement=True)
    assert reg.decide(DOOR, p.card, PIN, door=True).reason is Reason.GRANTED
    reg.revoke_door(client(OSLO), p.card, OSLO)
    d = reg.decide(DOOR, p.card, PIN, door=True)
    assert d.reason is Reason.DOOR_REVOKED and d.pin_valid
    assert reg.decide(KIOSK, p.card, PIN).reason is Reason.GRANTED


def test_door_agreement_is_per_library(reg):
    p = add_patron(reg, 0, OSLO)
    reg.activate(OPERATOR, p.card, OSLO, door_agreement=True)
    reg.activate(OPERATOR, p.card, BERGEN)
    assert reg.decide(terminal(BERGEN, "bergen-door"), p.card, PIN, door=True).reason is Reason.DOOR_NO_AGREEMENT


def test_door_not_activated_comes_before_agreement(reg):
    p = add_patron(reg, 0, OSLO)
    assert reg.decide(terminal(BERGEN, "bergen-door"), p.card, PIN, door=True).reason is Reason.NOT_ACTIVATED


# Oslo's minimum door age is 15. A patron born 1 June 2011 turns 15 at midnight in Oslo, which is
# 22:00 UTC on 31 May (summer time): the age is reckoned on the Oslo calendar, not on UTC's.
BIRTH = date(2011, 6, 1)


AGES = [
    (datetime(2026, 5, 31, 21, 59, 59, tzinfo=UTC), Reason.DOOR_UNDERAGE),  # 23:59:59 in Oslo
    (datetime(2026, 5, 31, 22, 0, 0, tzinfo=UTC), Reason.GRANTED),  # 00:00 on the birthday
    (datetime(2026, 5, 31, 12, 0, 0, tzinfo=UTC), Reason.DOOR_UNDERAGE),
    (datetime(2025, 12, 31, 23, 30, 0, tzinfo=UTC), Reason.DOOR_UNDERAGE),  # 14 in Oslo on New Year's Day
    (datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC), Reason.GRANTED),
]


def test_door_underage_on_the_oslo_calendar(reg):
    p = add_patron(reg, 0, OSLO, birth=BIRTH)
    reg.activate(OPERATOR, p.card, OSLO, door_agreement=True)
    for now, reason in AGES:
        d = reg.decide(DOOR, p.card, PIN, door=True, now=now)
        assert d.reason is reason, now
        assert d.pin_valid  # the PIN was right either way
        if reason is Reason.DOOR_UNDERAGE:
            assert reg.decide(KIOSK, p.card, PIN, now=now).reason is Reason.GRANTED  # only the door cares


def test_door_min_age_is_the_librarys_setting(reg):
    p = add_patron(reg, 0, OSLO, birth=BIRTH)
    reg.activate(OPERATOR, p.card, OSLO, door_agreement=True)
    now = datetime(2027, 1, 1, 12, tzinfo=UTC)  # 15 years old
    assert reg.decide(DOOR, p.card, PIN, door=True, now=now).reason is Reason.GRANTED
    reg.update_library(OPERATOR, OSLO, door_min_age=16)
    assert reg.decide(DOOR, p.card, PIN, door=True, now=now).reason is Reason.DOOR_UNDERAGE
    reg.update_library(OPERATOR, OSLO, door_min_age=0)
    assert reg.decide(DOOR, p.card, PIN, door=True, now=now).reason is Reason.GRANTED


def test_wrong_institution(reg):
    p = add_patron(reg, 0, OSLO)
    d = reg.decide(KIOSK, p.card, PIN, institution="NO-2120100")
    assert d.reason is Reason.WRONG_INSTITUTION and not d.granted and not d.pin_valid and d.patron is None
    assert reg.decide(KIOSK, p.card, PIN, institution="Deichman").reason is Reason.WRONG_INSTITUTION
    for same in ("NO-2030000", "2030000", " no-2030000 "):
        assert reg.decide(KIOSK, p.card, PIN, institution=same).reason is Reason.GRANTED


def test_register_unavailable(keys_path):
    dead = Register(make_engine("postgresql+psycopg://postgres@127.0.0.1:1/x", connect_timeout=2),
                    KeyRing.load(keys_path), Settings(pin_hash_cost=10))
    try:
        d = dead.decide(KIOSK, "N000100000", PIN)
        assert d.reason is Reason.REGISTER_UNAVAILABLE and not d.granted and not d.pin_valid
        assert dead.decide(DOOR, "N000100000", PIN, door=True).reason is Reason.REGISTER_UNAVAILABLE
        with pytest.raises(RegisterUnavailable):
            dead.find_patron(OPERATOR, "N000100000")
        with pytest.raises(RegisterUnavailable):
            dead.ping()
    finally:
        dead.engine.dispose()


# ------------------------------------------------------------------ self-activation (SIP2 25)
def _pair(result):
    return result.decision, result.library_allows



def test_self_activation_where_the_library_allows_it(reg):
    p = add_patron(reg, 0, BERGEN, actor=client(BERGEN))
    reg.update_library(OPERATOR, OSLO, rules_version="oslo-2025")
    d, allowed = _pair(reg.self_activate(KIOSK, p.card, PIN, rules_version="oslo-2025-screen"))
    assert allowed and d.reason is Reason.GRANTED
    act = reg.find_patron(OPERATOR, p.card).activation_at(OSLO)
    assert act.channel == "sip2" and act.rules_version == "oslo-2025-screen"
    # already active: nothing changes
    d2, allowed2 = _pair(reg.self_activate(KIOSK, p.card, PIN, rules_version="other"))
    assert allowed2 and d2.reason is Reason.GRANTED
    assert reg.find_patron(OPERATOR, p.card).activation_at(OSLO) == act


def test_self_activation_records_the_librarys_rules_version_by_default(reg):
    p = add_patron(reg, 0, BERGEN)
    reg.update_library(OPERATOR, OSLO, rules_version="oslo-7")
    reg.self_activate(KIOSK, p.card, PIN)
    assert reg.find_patron(OPERATOR, p.card).activation_at(OSLO).rules_version == "oslo-7"


def test_self_activation_refused_where_the_library_does_not_allow_it(reg):
    p = add_patron(reg, 0, OSLO)
    d, allowed = _pair(reg.self_activate(terminal(BERGEN, "bergen-kiosk"), p.card, PIN))
    assert not allowed and d.reason is Reason.NOT_ACTIVATED
    assert reg.find_patron(OPERATOR, p.card).activation_at(BERGEN) is None
    outcomes = [o for (o,) in raw_rows(reg, "SELECT outcome FROM audit_events WHERE action = 'patron_activate'")]
    assert outcomes == ["self_activation_off"]


@pytest.mark.parametrize("pin", ["0000", None])
def test_self_activation_needs_the_right_pin(reg, pin):
    p = add_patron(reg, 0, BERGEN)
    d, _ = _pair(reg.self_activate(KIOSK, p.card, pin))
    assert d.reason in (Reason.PIN_WRONG, Reason.PIN_MISSING) and not d.granted
    assert reg.find_patron(OPERATOR, p.card).activation_at(OSLO) is None


def test_self_activation_of_blocked_or_lost_card_refused(reg):
    p = add_patron(reg, 0, BERGEN)
    q = add_patron(reg, 1, BERGEN)
    reg.set_blocked(OPERATOR, p.card, True, "sperret")
    reg.report_lost(OPERATOR, q.card)
    assert reg.self_activate(KIOSK, p.card, PIN).decision.reason is Reason.PATRON_BLOCKED
    assert reg.self_activate(KIOSK, q.card, PIN).decision.reason is Reason.CARD_LOST
    assert reg.find_patron(OPERATOR, p.card).activation_at(OSLO) is None
    assert reg.find_patron(OPERATOR, q.card).activation_at(OSLO) is None


# ------------------------------------------------------------------ the audit every decision leaves


def test_every_decision_is_audited_with_its_reason_and_never_the_pin(reg):
    p = add_patron(reg, 0, OSLO, pin="86420975")
    reg.activate(OPERATOR, p.card, OSLO, door_agreement=True)
    lost = add_patron(reg, 1, OSLO, pin="86420975")
    reg.report_lost(OPERATOR, lost.card)
    before = len(_events(reg))
    cases = [
        (KIOSK, p.card, "86420975", {}, "granted"),
        (DOOR, p.card, "86420975", {"door": True}, "granted"),
        (KIOSK, p.card, "97531864", {}, "pin_wrong"),
        (KIOSK, p.card, None, {}, "pin_missing"),
        (KIOSK, "N000100999", "97531864", {}, "unknown_card"),
        (KIOSK, "garbage-97531864", "97531864", {}, "unknown_card"),
        (KIOSK, lost.card, "86420975", {}, "card_lost"),
        (terminal(BERGEN, "bergen-kiosk"), p.card, "86420975", {}, "not_activated"),
        (KIOSK, p.card, "86420975", {"institution": BERGEN}, "wrong_institution"),
    ]
    for actor, card, pin, kwargs, _ in cases:
        reg.decide(actor, card, pin, **kwargs)
    events = _events(reg)[before:]
    assert [e[1] for e in events] == [c[-1] for c in cases]
    assert [e[0] for e in events] == ["door" if c[3].get("door") else "patron_check" for c in cases]
    assert events[0][2:5] == (p.card, "terminal:oslo-kiosk", OSLO)
    assert events[7][4] == BERGEN
    everything = " ".join(" ".join(str(v) for v in row)
                          for row in raw_rows(reg, "SELECT * FROM audit_events"))
    assert "86420975" not in everything and "97531864" not in everything


def test_decision_reason_lands_in_the_patrons_audit_trail(reg):
    p = add_patron(reg, 0, OSLO)
    reg.decide(DOOR, p.card, PIN, door=True)
    last = reg.audit_events(p.card)[-1]
    assert (last.action, last.outcome, last.actor, last.card_number) == ("door", "door_no_agreement",
                                                                          "terminal:oslo-door", p.card)


def test_unknown_card_and_a_patron_without_pin_cost_a_pin_check_like_a_wrong_pin(reg, monkeypatch):
    """Unknown card and wrong PIN must look the same, timing included (PRODUCT §6): every answer to a
    card + PIN spends one slow hash."""
    from gateway.register import crypto

    calls = []
    real = crypto.verify_secret
    monkeypatch.setattr(crypto, "verify_secret", lambda secret, stored: calls.append(1) or real(secret, stored))
    with_pin = add_patron(reg, 0, OSLO)
    without_pin = add_patron(reg, 1, OSLO, pin=None)
    for card in (with_pin.card, "N000100999", without_pin.card):
        calls.clear()
        d = reg.decide(KIOSK, card, "0000")
        assert not d.pin_valid and d.reason in (Reason.PIN_WRONG, Reason.UNKNOWN_CARD)
        assert len(calls) == 1, card


def test_patron_without_birth_date_is_not_let_through_an_age_limited_door(reg):
    # The age cannot be checked, so it is not >= the minimum (the birth date is never derived from the
    # national id: identity-numbers.md §4).
    p = add_patron(reg, 0, OSLO, birth=None)
    reg.activate(OPERATOR, p.card, OSLO, door_agreement=True)
    assert reg.decide(DOOR, p.card, PIN, door=True).reason is Reason.DOOR_UNDERAGE
    reg.update_library(OPERATOR, OSLO, door_min_age=0)
    assert reg.decide(DOOR, p.card, PIN, door=True).reason is Reason.GRANTED


def test_sip2_block_with_control_characters_in_the_reason_still_blocks(reg):
    p = add_patron(reg, 0, OSLO)
    d = reg.block_card(KIOSK, p.card, "kort\x00 tatt\x1b av automaten")
    assert d.reason is Reason.PATRON_BLOCKED
    view = reg.find_patron(OPERATOR, p.card)
    assert view.blocked and view.block_reason == "kort tatt av automaten"
    assert reg.decide(KIOSK, p.card, PIN).reason is Reason.PATRON_BLOCKED

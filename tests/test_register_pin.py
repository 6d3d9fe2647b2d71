"""PINs: set, verify, lockout shared by every channel (PRODUCT §6)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from register_helpers import OSLO, OTHER_PIN, PIN, add_patron, client, raw_exec, raw_rows, terminal

from gateway.register import Register, Settings
from gateway.register.errors import InvalidInput, NotFound
from gateway.register.views import OPERATOR, PinCheck, Reason


@pytest.fixture
def strict(reg):
    """The same register, locking after 3 wrong PINs in a row, for 1 minute."""
    return Register(reg.engine, reg.keys, Settings(allow_synthetic_ids=True, pin_hash_cost=10,
                                                    pin_max_failures=3, pin_lock_minutes=1))


def _failures(reg, card):
    return raw_rows(reg, "SELECT p.pin_failures, p.pin_locked_until FROM patrons p JOIN cards c ON c.patron_id = p.id "
                         "WHERE c.number = :n", n=card)[0]


def test_set_and_verify_pin(reg):
    p = add_patron(reg, 0, OSLO, pin=None)
    assert not p.has_pin
    assert reg.verify_pin(OPERATOR, p.card, PIN) is PinCheck.NO_PIN
    reg.set_pin(client(OSLO), p.card, "12345678")
    assert reg.find_patron(OPERATOR, p.card).has_pin
    assert reg.verify_pin(terminal(OSLO), p.card.lower(), "12345678") is PinCheck.OK
    assert reg.verify_pin(terminal(OSLO), p.card, "1234567") is PinCheck.WRONG
    assert reg.verify_pin(terminal(OSLO), p.card, "") is PinCheck.WRONG
    reg.set_pin(OPERATOR, p.card, OTHER_PIN)
    assert reg.verify_pin(OPERATOR, p.card, "12345678") is PinCheck.WRONG
    assert reg.verify_pin(OPERATOR, p.card, OTHER_PIN) is PinCheck.OK
    assert "pin_changed" in [c.kind for c in reg.changes()]


def test_pin_must_be_4_to_8_digits_and_is_never_echoed(reg):
    p = add_patron(reg, 0, OSLO)
    for bad in ("123", "123456789", "12a4", "", " 1234", "１２３４"):
        with pytest.raises(InvalidInput, match="4 to 8 digits") as err:
            reg.set_pin(OPERATOR, p.card, bad)
        assert not bad.strip() or bad.strip() not in str(err.value)
    assert reg.verify_pin(OPERATOR, p.card, PIN) is PinCheck.OK


def test_verify_pin_for_unknown_card(reg):
    with pytest.raises(NotFound):
        reg.verify_pin(OPERATOR, "N000100999", PIN)


def test_lockout_after_the_configured_number_of_wrong_pins(strict):
    p = add_patron(strict, 0, OSLO)
    assert [strict.verify_pin(OPERATOR, p.card, "0000") for _ in range(2)] == [PinCheck.WRONG] * 2
    assert strict.verify_pin(OPERATOR, p.card, "0000") is PinCheck.LOCKED  # the third in a row locks
    # now even the right PIN is refused, on every channel
    assert strict.verify_pin(OPERATOR, p.card, PIN) is PinCheck.LOCKED
    assert strict.decide(terminal(OSLO), p.card, PIN).reason is Reason.PIN_LOCKED
    assert strict.decide(terminal(OSLO, "door-1"), p.card, PIN, door=True).reason is Reason.PIN_LOCKED
    locked_until = strict.find_patron(OPERATOR, p.card).pin_locked_until
    now = datetime.now(UTC)
    assert now + timedelta(seconds=30) < locked_until <= now + timedelta(minutes=1)


def test_default_lockout_is_5_wrong_pins_for_15_minutes(reg):
    p = add_patron(reg, 0, OSLO)
    results = [reg.verify_pin(OPERATOR, p.card, "0000") for _ in range(5)]
    assert results == [PinCheck.WRONG] * 4 + [PinCheck.LOCKED]
    assert reg.verify_pin(OPERATOR, p.card, PIN) is PinCheck.LOCKED
    locked_until = reg.find_patron(OPERATOR, p.card).pin_locked_until
    now = datetime.now(UTC)
    assert now + timedelta(minutes=14) < locked_until <= now + timedelta(minutes=15)


def test_lock_expires(strict):
    p = add_patron(strict, 0, OSLO)
    for _ in range(3):
        strict.verify_pin(OPERATOR, p.card, "0000")
    assert strict.verify_pin(OPERATOR, p.card, PIN) is PinCheck.LOCKED
    past = datetime.now(UTC) - timedelta(seconds=1)
    stored = past.replace(tzinfo=None) if strict.engine.dialect.name == "sqlite" else past
    raw_exec(strict, "UPDATE patrons SET pin_locked_until = :t", t=stored)
    assert strict.decide(terminal(OSLO), p.card, PIN).reason is Reason.GRANTED
    assert _failures(strict, p.card)[0] == 0
    # after the lock, the count starts again from zero: two wrong do not lock
    assert [strict.verify_pin(OPERATOR, p.card, "0000") for _ in range(2)] == [PinCheck.WRONG] * 2
    assert strict.verify_pin(OPERATOR, p.card, PIN) is PinCheck.OK


def test_a_right_pin_resets_the_count(strict):
    p = add_patron(strict, 0, OSLO)
    for _ in range(2):
        assert strict.verify_pin(OPERATOR, p.card, "0000") is PinCheck.WRONG
    assert _failures(strict, p.card)[0] == 2
    assert strict.verify_pin(OPERATOR, p.card, PIN) is PinCheck.OK
    assert _failures(strict, p.card)[0] == 0
    for _ in range(2):
        assert strict.verify_pin(OPERATOR, p.card, "0000") is PinCheck.WRONG
    assert strict.verify_pin(OPERATOR, p.card, PIN) is PinCheck.OK


def test_lockout_is_shared_by_decide_and_verify_pin(strict):
    p = add_patron(strict, 0, OSLO)
    kiosk, door = terminal(OSLO), terminal(OSLO, "door-1")
    assert strict.decide(kiosk, p.card, "0000").reason is Reason.PIN_WRONG
    assert strict.verify_pin(client(OSLO), p.card, "0000") is PinCheck.WRONG
    third = strict.decide(door, p.card, "0000", door=True)
    assert third.reason in (Reason.PIN_WRONG, Reason.PIN_LOCKED) and not third.pin_valid
    assert strict.verify_pin(client(OSLO), p.card, PIN) is PinCheck.LOCKED
    assert strict.decide(kiosk, p.card, PIN).reason is Reason.PIN_LOCKED


def test_lockout_is_per_patron(strict):
    p = add_patron(strict, 0, OSLO)
    q = add_patron(strict, 1, OSLO)
    for _ in range(3):
        strict.verify_pin(OPERATOR, p.card, "0000")
    assert strict.verify_pin(OPERATOR, q.card, PIN) is PinCheck.OK


def test_setting_a_new_pin_lifts_the_lock(strict):
    p = add_patron(strict, 0, OSLO)
    for _ in range(3):
        strict.verify_pin(OPERATOR, p.card, "0000")
    strict.set_pin(client(OSLO), p.card, OTHER_PIN)
    assert strict.verify_pin(OPERATOR, p.card, OTHER_PIN) is PinCheck.OK
    assert _failures(strict, p.card) == (0, None)


def test_a_lost_card_never_verifies_and_does_not_lock_the_patron(strict):
    p = add_patron(strict, 0, OSLO)
    new = strict.replace_card(OPERATOR, p.card)
    for _ in range(4):
        assert strict.verify_pin(OPERATOR, p.card, PIN) is not PinCheck.OK
        assert strict.decide(terminal(OSLO), p.card, PIN).reason is Reason.CARD_REPLACED
    assert strict.verify_pin(OPERATOR, new.current_card, PIN) is PinCheck.OK


def test_pin_hash_is_upgraded_when_the_cost_is_raised(reg):
    p = add_patron(reg, 0, OSLO)
    (before,) = raw_rows(reg, "SELECT pin_hash FROM patrons")[0]
    assert before.startswith("scrypt$10,8,1$")
    stronger = Register(reg.engine, reg.keys, Settings(allow_synthetic_ids=True, pin_hash_cost=11))
    assert stronger.verify_pin(OPERATOR, p.card, PIN) is PinCheck.OK
    (after,) = raw_rows(reg, "SELECT pin_hash FROM patrons")[0]
    assert after.startswith("scrypt$11,8,1$")
    assert reg.verify_pin(OPERATOR, p.card, PIN) is PinCheck.OK  # old settings still read the new hash


def test_a_lock_set_while_a_right_pin_is_being_checked_still_stands(strict, monkeypatch):
    """Another channel's last wrong guess locks the PIN while this (right) guess is being hashed: the
    right guess must not get through, or parallel guessing would beat the lockout."""
    from gateway.register import crypto

    p = add_patron(strict, 0, OSLO)
    real = crypto.verify_secret
    until = datetime.now(UTC) + timedelta(minutes=1)
    stored = until.replace(tzinfo=None) if strict.engine.dialect.name == "sqlite" else until

    def hash_while_another_channel_locks(secret, hashed):
        raw_exec(strict, "UPDATE patrons SET pin_locked_until = :t", t=stored)
        return real(secret, hashed)

    monkeypatch.setattr(crypto, "verify_secret", hash_while_another_channel_locks)
    assert strict.verify_pin(OPERATOR, p.card, PIN) is PinCheck.LOCKED
    assert strict.decide(terminal(OSLO), p.card, PIN).reason is Reason.PIN_LOCKED


def test_a_pin_changed_during_a_rehash_is_not_overwritten(reg, monkeypatch):
    from gateway.register import crypto

    p = add_patron(reg, 0, OSLO)
    stronger = Register(reg.engine, reg.keys, Settings(allow_synthetic_ids=True, pin_hash_cost=11))
    real = crypto.verify_secret
    changed = []

    def verify_while_staff_set_a_new_pin(secret, hashed):
        ok = real(secret, hashed)
        if not changed:
            changed.append(True)
            reg.set_pin(OPERATOR, p.card, OTHER_PIN)
        return ok

    monkeypatch.setattr(crypto, "verify_secret", verify_while_staff_set_a_new_pin)
    assert stronger.verify_pin(OPERATOR, p.card, PIN) is PinCheck.OK
    monkeypatch.setattr(crypto, "verify_secret", real)
    assert reg.verify_pin(OPERATOR, p.card, OTHER_PIN) is PinCheck.OK
    assert reg.verify_pin(OPERATOR, p.card, PIN) is PinCheck.WRONG

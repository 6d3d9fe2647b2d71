"""PIN attempts: claimed in the database before the hash, settled after it, at equal cost.

Every PIN check, on every channel and in every gateway process, goes through one path:

1. **claim** (in the caller's first transaction): one conditional UPDATE takes a place among the
   checks allowed now: only while the PIN is not locked and ``failures + pending`` is below
   ``pin_max_failures``. However many guesses arrive at once over however many gateways, at most
   that many are ever checked per lock window; the rest are refused as LOCKED without a look at
   the hash, the right PIN among them.
2. **hash** (outside any transaction): the stored hash when the claim was granted, else a decoy
   hash of the same cost: an unknown card, a locked PIN, a patron without a PIN and a lost card
   all cost one hash, like a wrong PIN.
3. **settle** (in the caller's second transaction): a wrong PIN turns its claim into a failure and
   locks at the limit; a right one clears the failures. An unknown card runs the same two
   statements against no row, so every answer costs the same two commits.

A right PIN ends "in a row": the failures counted before its claim are cleared, so a patron who
mistyped and then typed the right PIN starts afresh. Failures of guesses checked beside it stay, so
a burst of guesses sent at once gets no more than the limit, the right PIN among them or not.

A claim refused while the PIN is not locked means that the places are taken by checks under way:
the caller waits a hash's time and claims again (``BUSY_RETRIES``), so that right PINs sent at once
from several terminals are all checked, and a burst of guesses still gets no more places than the
limit. A claim left behind by a process that died expires after ``STALE_CLAIM`` of quiet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Connection, Integer, Table, and_, bindparam, case, or_, select, update

from gateway.register import crypto
from gateway.register.models import Patron
from gateway.register.views import PinCheck

STALE_CLAIM = timedelta(seconds=30)
BUSY_RETRIES, BUSY_WAIT_SECONDS = 40, 0.025  # about a second of waiting for a place, at most
NO_PATRON = 0  # the id the statements run against when there is nobody to count for
#: Told of every PIN that a wrong PIN has just locked (gateway.metrics counts them); never whose.
lockout_listeners: list[Callable[[], None]] = []

_patrons = cast(Table, Patron.__table__)
_p = _patrons.c
_now, _stale = bindparam("now", type_=Patron.pin_claimed_at.type), bindparam("stale", type_=Patron.pin_claimed_at.type)
_claims_live = and_(_p.pin_claimed_at.is_not(None), _p.pin_claimed_at >= _stale)
_unlocked = or_(_p.pin_locked_until.is_(None), _p.pin_locked_until <= _now)
_pending_now = case((_claims_live, _p.pin_pending), else_=0)

# 1. Take a place among the checks allowed now (no row: none left, or the PIN is locked).
_CLAIM = (
    update(_patrons)
    .where(_p.id == bindparam("patron_id"), _unlocked, _p.pin_failures + _pending_now < bindparam("max_failures"))
    .values(pin_pending=_pending_now + 1, pin_claimed_at=_now)
    .returning(_p.pin_failures)
)
_release = case((_p.pin_pending > 0, _p.pin_pending - 1), else_=0)
_locked_now = and_(_p.pin_locked_until.is_not(None), _p.pin_locked_until > _now)
_reaches_limit = _p.pin_failures + 1 >= bindparam("max_failures")
# 3a. A wrong PIN: its claim becomes a failure; the one that reaches the limit locks the PIN.
_SETTLE_WRONG = (
    update(_patrons)
    .where(_p.id == bindparam("patron_id"))
    .values(
        pin_pending=_release,
        pin_failures=case((_locked_now, 0), (_reaches_limit, 0), else_=_p.pin_failures + 1),
        pin_locked_until=case((_locked_now, _p.pin_locked_until),
                              (_reaches_limit, bindparam("lock_until", type_=Patron.pin_locked_until.type)),
                              else_=_p.pin_locked_until),
    )
    .returning(_p.pin_locked_until)
)
# 3b. The right PIN: the failures before its claim are cleared ("in a row" ends), unless another
# check locked the PIN meanwhile. Failures of guesses checked at the same time stay: a burst of
# guesses around the right PIN must not win back places.
_seen = bindparam("seen_failures", type_=Integer())
_SETTLE_RIGHT = (
    update(_patrons)
    .where(_p.id == bindparam("patron_id"))
    .values(
        pin_pending=_release,
        pin_failures=case((_locked_now, _p.pin_failures), (_p.pin_failures > _seen, _p.pin_failures - _seen),
                          else_=0),
    )
    .returning(_p.pin_locked_until)
)
_LOCKED_UNTIL = select(_p.pin_locked_until).where(_p.id == bindparam("patron_id"))
_REHASH = (update(_patrons)
           .where(_p.id == bindparam("patron_id"), _p.pin_hash == bindparam("old_hash"))
           .values(pin_hash=bindparam("new_hash")))


@dataclass(frozen=True)
class Claim:
    """What the first transaction learnt: whose PIN to compare, against which hash."""

    patron_id: int  # NO_PATRON: nobody's failures to count
    stored: str | None  # the hash to compare with; None: compare with the decoy
    refusal: PinCheck | None  # the answer whatever the PIN (LOCKED, NO_PIN, WRONG for a lost card)
    busy: bool = False  # refused because every place is taken by checks under way, not locked
    seen_failures: int = 0  # the failures counted when the claim was granted


def claim(conn: Connection, patron_id: int | None, *, stored: str | None, card_active: bool, now: datetime,
          max_failures: int) -> Claim:
    """Step 1, in the caller's transaction. ``patron_id`` None: the card is unknown."""
    countable = patron_id is not None and card_active and stored is not None
    granted = conn.execute(_CLAIM, {"patron_id": patron_id if countable else NO_PATRON, "now": now,
                                    "stale": now - STALE_CLAIM, "max_failures": max_failures}).first()
    if patron_id is None:
        return Claim(NO_PATRON, None, PinCheck.WRONG)
    if not card_active:
        return Claim(NO_PATRON, None, PinCheck.WRONG)  # a lost or replaced number never authenticates again
    if stored is None:
        return Claim(NO_PATRON, None, PinCheck.NO_PIN)
    if granted is None:
        locked_until = conn.execute(_LOCKED_UNTIL, {"patron_id": patron_id}).scalar()
        busy = locked_until is None or locked_until <= now
        return Claim(NO_PATRON, None, PinCheck.LOCKED, busy=busy)
    return Claim(patron_id, stored, None, seen_failures=granted[0])


def compare(pin: str, claimed: Claim, decoy: str) -> bool:
    """Step 2, outside any transaction: one hash of the same cost, whatever the claim."""
    if claimed.stored is None:
        crypto.verify_secret(pin, decoy)
        return False
    return crypto.verify_secret(pin, claimed.stored)


def _same_instant(stored: datetime, written: datetime) -> bool:
    """Whether the lock time read back is the one this check wrote (SQLite hands it back naive)."""
    return stored.replace(tzinfo=None) == written.replace(tzinfo=None)


def settle(conn: Connection, claimed: Claim, matched: bool, pin: str, *, now: datetime, max_failures: int,
           lock_minutes: int, hash_cost: int) -> PinCheck:
    """Step 3, in the caller's second transaction: count the attempt; the result of the check."""
    lock_until = now + timedelta(minutes=lock_minutes)
    params = {"patron_id": claimed.patron_id, "now": now, "max_failures": max_failures,
              "lock_until": lock_until, "seen_failures": claimed.seen_failures}
    if claimed.refusal is not None or not matched:
        locked_until = conn.execute(_SETTLE_WRONG, params).scalar()
        if claimed.refusal is not None:
            return claimed.refusal
        if locked_until is not None and locked_until > now:
            if _same_instant(locked_until, lock_until):  # this wrong PIN locked it
                for listener in lockout_listeners:
                    listener()
            return PinCheck.LOCKED
        return PinCheck.WRONG
    locked_until = conn.execute(_SETTLE_RIGHT, params).scalar()
    if locked_until is not None and locked_until > now:
        return PinCheck.LOCKED  # locked by another check while this one was hashed: refused too
    if claimed.stored is not None and crypto.needs_rehash(claimed.stored, hash_cost):
        conn.execute(_REHASH, {"patron_id": claimed.patron_id, "old_hash": claimed.stored,
                               "new_hash": crypto.hash_secret(pin, hash_cost)})
    return PinCheck.OK

"""The patron's PIN: set by a library or the operator, checked with the lockout that every channel
shares (the accounting itself is gateway.register.pins)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from gateway.register import actors, audit, crypto, fields, pins, records, sessions
from gateway.register.actors import Actor
from gateway.register.context import Area
from gateway.register.errors import AuthenticationFailed, NotFound, PinLocked, RegisterError
from gateway.register.identifiers import InvalidIdentifier, normalise_card_number
from gateway.register.models import Card, Patron, utcnow
from gateway.register.vocabulary import Action, CardStatus, ChangeKind, PinCheck

_REFUSED = "card number or PIN is invalid"


def set_pin_in(s: Session, actor: Actor, patron: Patron, number: str, pin_hash: str, *,
               keep_session: str | None = None) -> None:
    """Set the PIN (already hashed) in the caller's transaction; the lockout starts afresh, and the
    patron's self-service sessions end (but ``keep_session``, the one that changed it)."""
    s.execute(update(Patron).where(Patron.id == patron.id).values(
        pin_hash=pin_hash, pin_failures=0, pin_locked_until=None, updated_at=utcnow()
    ).execution_options(synchronize_session=False))
    sessions.end_in(s, patron.id, keep=keep_session)
    audit.record(s, actor, Action.PIN_SET, "ok", patron=patron, card=number)
    audit.change(s, patron, ChangeKind.PIN_CHANGED, actor)


class Pins(Area):
    """Setting and checking PINs."""

    def set_pin(self, actor: Actor, card: str, pin: str) -> None:
        pin_hash = crypto.hash_secret(fields.pin(pin), self.settings.pin_hash_cost)
        with self._tx() as s:
            patron, row = records.patron_of(s, card)
            actors.require_client_may(actor, "update", "this client may not change patrons")
            actors.require_may_change(actor, patron)
            set_pin_in(s, actor, patron, row.number, pin_hash)

    def verify_pin(self, actor: Actor, card: str, pin: str) -> PinCheck:
        """Check a PIN with the lockout shared by every channel (gateway.register.pins). Raises
        NotFound for an unknown card, after the same work as any other answer. A lost or replaced
        card is always WRONG."""
        result, _ = self._verify(actor, card, pin)
        return result

    def check_pin(self, actor: Actor, card: str, pin: str, *,
                  then: Callable[[Session, Patron, Card], Any] | None = None) -> Any:
        """Raise AuthenticationFailed (unknown card, wrong PIN, no PIN, lost card: one answer, same
        cost) or PinLocked unless ``pin`` is the card's PIN; lockout shared with every channel.

        ``then(s, patron, card)``, when given, runs only after a right PIN, in the transaction that
        counts the attempt, under a savepoint: if it raises a RegisterError, what it did is rolled
        back, the attempt stays counted, and the error is raised. Its result is returned."""
        try:
            result, outcome = self._verify(actor, card, pin, then)
        except NotFound:
            raise AuthenticationFailed(_REFUSED) from None
        if result is PinCheck.LOCKED:
            raise PinLocked("too many wrong PINs in a row: the PIN is locked for a while")
        if result is not PinCheck.OK:
            raise AuthenticationFailed(_REFUSED)
        if isinstance(outcome, RegisterError):
            raise outcome
        return outcome

    def _verify(self, actor: Actor, card: str, pin: str,
                then: Callable[[Session, Patron, Card], Any] | None = None) -> tuple[PinCheck, Any]:
        now: datetime = utcnow()
        try:
            number: str | None = normalise_card_number(card)
        except InvalidIdentifier:
            number = None

        def read(s: Session) -> tuple[int | None, int | None, str | None, bool]:
            row = s.get(Card, number) if number is not None else None
            patron = row.patron if row is not None and row.status != CardStatus.DELETED else None
            if patron is None or row is None:
                return None, None, None, False
            return patron.id, patron.id, patron.pin_hash, row.status == CardStatus.ACTIVE

        patron_id, claimed = self._claim_pin(read, now)
        matched = pins.compare(pin, claimed, self._decoy_hash)
        outcome: Any = None
        with self._tx() as s:
            result = self._settle_pin(s, claimed, matched, pin, now)
            audit.record(s, actor, Action.PIN_VERIFY, result.value if patron_id else "unknown_card", card=number,
                         patron=patron_id)
            if then is not None and result is PinCheck.OK and number is not None:
                try:
                    with s.begin_nested():
                        patron, row = records.patron_of(s, number, lock=True)
                        if patron.pin_hash != claimed.stored:
                            # The PIN changed while this one was being checked: it was right for the
                            # PIN before, not for the PIN now (two PIN changes at once: one wins).
                            raise AuthenticationFailed(_REFUSED)
                        outcome = then(s, patron, row)
                except RegisterError as exc:
                    outcome = exc
        if patron_id is None:
            raise NotFound(f"card {number} is not in the register" if number else "the card number is not valid")
        return result, outcome

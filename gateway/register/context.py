"""What every area of the register shares: the store, the keys, the settings, the view reader and a
decoy hash; ``Area`` is the base of the area classes that the ``Register`` facade delegates to."""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from gateway.register import crypto, pins
from gateway.register.models import Card, Patron
from gateway.register.reading import PatronReader
from gateway.register.settings import Settings
from gateway.register.store import Store
from gateway.register.views import PatronView
from gateway.register.vocabulary import PinCheck

if TYPE_CHECKING:
    from gateway.register.register import Register


class Context:
    def __init__(self, store: Store, keys: crypto.KeyRing, settings: Settings) -> None:
        self.store, self.keys, self.settings = store, keys, settings
        self.reader = PatronReader(keys)
        # A hash to spend time on when there is nothing to compare (unknown login or card, locked
        # PIN), so that timing does not tell.
        self.decoy_hash = crypto.hash_secret("decoy", settings.pin_hash_cost)


class Area:
    """One area of the register (libraries, patrons, pins, …): its use cases as methods, each one
    transaction, on the shared context. ``register``: the facade, for the rare use case that asks
    another area (a block from a kiosk is a patron change)."""

    def __init__(self, context: Context, register: Register) -> None:
        self.context, self.register = context, register
        self.store, self.keys, self.settings = context.store, context.keys, context.settings
        self._tx = context.store.session
        self._core_tx = context.store.core
        self._read = context.store.read
        self._decoy_hash = context.decoy_hash

    def _patron_view(self, patron: Patron, card: Card | None = None, *, with_national_id: bool = False) -> PatronView:
        return self.context.reader.patron_view(patron, card, with_national_id=with_national_id)

    def _load_view(self, s: Session, patron_id: int, number: str | None = None, *,
                   with_national_id: bool = False) -> PatronView:
        return self.context.reader.load_view(s, patron_id, number, with_national_id=with_national_id)

    def _load_views(self, conn: Connection, wanted: list[tuple[int, str | None]], *, with_national_id: bool = False,
                    missing_ok: bool = False) -> list[PatronView]:
        return self.context.reader.load_views(conn, wanted, with_national_id=with_national_id, missing_ok=missing_ok)

    def _settle_pin(self, s: Session, claimed: pins.Claim, matched: bool, pin: str, now: datetime) -> PinCheck:
        cfg = self.settings
        return pins.settle(s.connection(), claimed, matched, pin, now=now, max_failures=cfg.pin_max_failures,
                           lock_minutes=cfg.pin_lock_minutes, hash_cost=cfg.pin_hash_cost)

    def _claim_pin(self, read: Any, now: datetime) -> tuple[Any, pins.Claim]:
        """Step 1 of a PIN check (gateway.register.pins), retried while every place is taken by
        checks under way. ``read(s)`` returns (facts, patron id or None, stored hash, card active)."""
        for attempt in range(pins.BUSY_RETRIES + 1):
            with self._tx() as s:
                facts, patron_id, stored, active = read(s)
                claimed = pins.claim(s.connection(), patron_id, stored=stored, card_active=active, now=now,
                                     max_failures=self.settings.pin_max_failures)
            if not claimed.busy or attempt == pins.BUSY_RETRIES:
                return facts, claimed
            with self.store.waiting():  # busy, not hung: the gateway must not go offline over it
                time.sleep(pins.BUSY_WAIT_SECONDS)
        raise AssertionError("unreachable")

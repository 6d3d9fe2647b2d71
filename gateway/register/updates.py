"""A library system's change to a patron (NCIP UpdateUser), as one transaction: the patron's PIN
checked when the patron is present, the card activated and the meråpent agreement signed or
revoked at the library, personal data, a new PIN and a new home library; all or nothing."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from gateway.register import activation, actors, crypto, fields, records
from gateway.register.actors import Actor
from gateway.register.context import Area
from gateway.register.fields import PatronChanges
from gateway.register.models import Card, Patron
from gateway.register.patrons import update_in
from gateway.register.pin_codes import set_pin_in


@dataclass(frozen=True)
class LibraryChange:
    """What a library system asks to change; every part optional, at least one given."""

    changes: PatronChanges = PatronChanges()
    new_pin: str | None = None
    activate: bool = False  # activate the card at the library (first visit)
    door_agreement: bool = False  # sign the meråpent agreement there (activates too)
    revoke_door: bool = False  # withdraw door access there
    home_library: str | None = None  # move the home library (ISIL)

    def is_empty(self) -> bool:
        return not (self.changes.given() or self.new_pin is not None or self.activate or self.door_agreement
                    or self.revoke_door or self.home_library)


class LibraryChanges(Area):
    """NCIP UpdateUser."""

    def change_patron(self, actor: Actor, card: str, change: LibraryChange, *, pin: str | None = None) -> str:
        """Apply ``change`` at the actor's own library; returns the card number.

        With ``pin`` (the patron present at the desk), the PIN is checked first, with the lockout
        shared by every channel, and nothing changes unless it is right (the attempt is counted
        either way). Activation and the door agreement are allowed at a first visit; personal data,
        the new PIN and the home library need the library to be affiliated with the patron. One
        transaction: a refusal anywhere changes nothing."""
        own = actors.require_library_for_changes(actor)
        if change.is_empty():
            raise fields.bad("nothing to change")
        number = fields.card(card)
        new_pin_hash = (crypto.hash_secret(fields.pin(change.new_pin), self.settings.pin_hash_cost)
                        if change.new_pin is not None else None)
        home = fields.isil(change.home_library) if change.home_library else None

        def apply(s: Session, patron: Patron, row: Card) -> str:
            if change.activate or change.door_agreement or change.revoke_door:
                lib = records.library(s, own)
                if change.activate or change.door_agreement:
                    activation.activate_card_in(s, actor, patron, row, lib, door_agreement=change.door_agreement)
                if change.revoke_door:
                    activation.revoke_door_in(s, actor, patron, row, lib, revoked=True)
            if change.changes.given():
                update_in(s, actor, patron, row, change.changes)
            if new_pin_hash is not None:
                actors.require_may_change(actor, patron)
                set_pin_in(s, actor, patron, row.number, new_pin_hash)
            if home is not None:
                activation.set_home_library_in(s, actor, patron, row, records.library(s, home))
            return row.number

        if pin is not None:
            result: str = self.register.check_pin(actor, number, pin, then=apply)
            return result
        with self._tx() as s:
            patron, row = records.patron_of(s, number, lock=True)
            return apply(s, patron, row)

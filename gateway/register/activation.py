"""Activation: a patron's affiliation with a library (home library, first visit, self- and
auto-activation), and the meråpent door agreement there (signed, revoked, restored).

The ``*_in`` functions do their part inside the caller's transaction, so that a composite use
case (a registration with a door agreement, a library system's UpdateUser) is all or nothing.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from gateway.register import actors, audit, fields, records
from gateway.register.actors import Actor
from gateway.register.context import Area
from gateway.register.errors import InvalidInput, NotAffiliated
from gateway.register.models import Activation, Card, Library, Patron, utcnow
from gateway.register.views import PatronView
from gateway.register.vocabulary import Action, CardStatus, ChangeKind


def activate_at(s: Session, actor: Actor, patron: Patron, lib: Library, *, rules_version: str | None = None,
                quiet: bool = False) -> bool:
    """Activate at ``lib`` unless done already (then False); ``quiet``: as part of the registration,
    whose own audit event and change say it."""
    if any(a.library_id == lib.id for a in patron.activations):
        return False
    act = Activation(library_id=lib.id, channel=str(actor.channel), rules_version=rules_version or lib.rules_version)
    patron.activations.append(act)  # its patron_id at the flush (a new patron is written by the same flush)
    s.add(act)
    s.flush()
    if not quiet:
        audit.record(s, actor, Action.PATRON_ACTIVATE, "ok", patron=patron, card=records.current_card(patron),
                     library=lib.isil)
        audit.change(s, patron, ChangeKind.ACTIVATED, actor, lib.isil)
    return True


def sign_door_agreement(s: Session, actor: Actor, patron: Patron, lib: Library, number: str) -> None:
    act = next(a for a in patron.activations if a.library_id == lib.id)
    if act.door_agreement_at is None or act.door_revoked_at is not None:
        act.door_agreement_at, act.door_agreement_version, act.door_revoked_at = (
            utcnow(), lib.door_agreement_version, None)
        audit.record(s, actor, Action.DOOR_AGREEMENT, "signed", patron=patron, card=number, library=lib.isil)
        audit.change(s, patron, ChangeKind.DOOR_AGREEMENT, actor, lib.isil)


def activate_card_in(s: Session, actor: Actor, patron: Patron, row: Card, lib: Library, *, door_agreement: bool,
                     rules_version: str | None = None) -> None:
    if row.status != CardStatus.ACTIVE:
        raise InvalidInput(f"card {row.number} is {row.status}; use the patron's current card")
    activate_at(s, actor, patron, lib, rules_version=rules_version)
    if door_agreement:
        sign_door_agreement(s, actor, patron, lib, row.number)


def revoke_door_in(s: Session, actor: Actor, patron: Patron, row: Card, lib: Library, *, revoked: bool) -> None:
    act = next((a for a in patron.activations if a.library_id == lib.id), None)
    if act is None:
        raise NotAffiliated(f"the card is not activated at {lib.isil}")
    act.door_revoked_at = utcnow() if revoked else None
    audit.record(s, actor, Action.DOOR_REVOKE if revoked else Action.DOOR_RESTORE, "ok", patron=patron,
                 card=row.number, library=lib.isil)
    audit.change(s, patron, ChangeKind.DOOR_REVOKED if revoked else ChangeKind.DOOR_RESTORED, actor, lib.isil)


def set_home_library_in(s: Session, actor: Actor, patron: Patron, row: Card, lib: Library) -> None:
    actors.require_may_change_home_library(actor, patron, lib.isil)
    if patron.home_library_id == lib.id:  # already the home library: nothing changes, nothing to sync
        audit.record(s, actor, Action.HOME_LIBRARY, "unchanged", patron=patron, card=row.number, library=lib.isil)
        return
    activate_at(s, actor, patron, lib)
    patron.home_library_id = lib.id
    patron.updated_at = utcnow()
    s.flush()
    s.refresh(patron)
    audit.record(s, actor, Action.HOME_LIBRARY, "ok", patron=patron, card=row.number, library=lib.isil)
    audit.change(s, patron, ChangeKind.HOME_LIBRARY, actor, lib.isil)


class Activations(Area):
    """Activating cards, door agreements and the home library."""

    def activate(
        self, actor: Actor, card: str, library: str, *, door_agreement: bool = False, rules_version: str | None = None,
    ) -> PatronView:
        """Activate the card at ``library`` (idempotent); optionally record the meråpent agreement.

        A library may activate a card at itself (first visit); the operator anywhere.
        """
        isil = fields.isil(library)
        actors.require_library_actor(actor, isil)
        rules_version = fields.version(rules_version, "rules version")
        with self._tx() as s:
            lib = records.library(s, isil)
            patron, row = records.patron_of(s, card, lock=True)
            activate_card_in(s, actor, patron, row, lib, door_agreement=door_agreement, rules_version=rules_version)
            s.flush()
            s.refresh(patron)
            return self._patron_view(patron, row)

    def revoke_door(self, actor: Actor, card: str, library: str, *, revoked: bool = True) -> PatronView:
        """The library withdraws (or restores) the patron's door access at itself."""
        isil = fields.isil(library)
        actors.require_library_actor(actor, isil)
        with self._tx() as s:
            lib = records.library(s, isil)
            patron, row = records.patron_of(s, card, lock=True)
            revoke_door_in(s, actor, patron, row, lib, revoked=revoked)
            return self._patron_view(patron, row)

    def set_home_library(self, actor: Actor, card: str, library: str) -> PatronView:
        """Move the patron's home library; the patron, an affiliated library or the operator may."""
        with self._tx() as s:
            lib = records.library(s, library)
            patron, row = records.patron_of(s, card, lock=True)
            set_home_library_in(s, actor, patron, row, lib)
            return self._patron_view(patron, row)

"""Innsyn (GDPR Art. 15): everything the register holds about a patron, audit trail included."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from gateway.register import actors, audit, records
from gateway.register.actors import Actor
from gateway.register.context import Area
from gateway.register.models import (
    AuditEvent,
    Change,
    utcnow,
)
from gateway.register.self_service import for_the_page
from gateway.register.settings import OSLO
from gateway.register.views import (
    jsonable,
)
from gateway.register.vocabulary import Action


class Innsyn(Area):
    """The patron's copy of their data."""

    def export_patron(self, actor: Actor, card: str) -> dict[str, Any]:
        """Everything the register holds about a patron (innsyn), national id and audit trail included.
        To the patron themself (a card + PIN login) the national id is masked and a secret address
        left out, as on the page."""
        with self._tx() as s:
            patron, row = records.patron_of(s, card)
            actors.require_may_export(actor, (c.number for c in patron.cards))
            audit.record(s, actor, Action.PATRON_EXPORT, "ok", patron=patron, card=row.number)
            s.flush()
            by_patron = actor.kind == "patron"
            view = self._patron_view(patron, with_national_id=not by_patron)
            if by_patron:  # a card + PIN login: masked as on the page (gateway.register.self_service)
                view = for_the_page(view)
            events = s.scalars(select(AuditEvent).where(AuditEvent.patron_id == patron.id).order_by(AuditEvent.id))
            changes = s.scalars(select(Change).where(Change.patron_id == patron.id).order_by(Change.id))
            out: dict[str, Any] = jsonable(view, OSLO)
            if by_patron:
                out["national_id"] = view.national_id_masked
                if view.secret_address:
                    out["address_note"] = ("An address is held and kept secret. It is not shown here; see it in "
                                           "person at one of your libraries, with identification.")
            out.pop("card_status", None)
            out.pop("has_pin", None)
            out["pin"] = "set (stored only as a slow hash)" if view.has_pin else "not set"
            out["audit"] = [jsonable(audit.event_view(e), OSLO) for e in events]
            out["changes"] = [jsonable(audit.change_view(c), OSLO) for c in changes]
            out["exported_at"] = utcnow().astimezone(OSLO).isoformat(timespec="seconds")
            out["note"] = "The register stores nothing about loans, reservations or fines."
            return out

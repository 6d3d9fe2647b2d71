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
from gateway.register.settings import OSLO
from gateway.register.views import (
    jsonable,
)
from gateway.register.vocabulary import Action


class Innsyn(Area):
    """The patron's copy of their data."""

    def export_patron(self, actor: Actor, card: str) -> dict[str, Any]:
        """Everything the register holds about a patron (innsyn), national id and audit trail included."""
        with self._tx() as s:
            patron, row = records.patron_of(s, card)
            actors.require_may_export(actor, (c.number for c in patron.cards))
            audit.record(s, actor, Action.PATRON_EXPORT, "ok", patron=patron, card=row.number)
            s.flush()
            view = self._patron_view(patron, with_national_id=True)
            events = s.scalars(select(AuditEvent).where(AuditEvent.patron_id == patron.id).order_by(AuditEvent.id))
            changes = s.scalars(select(Change).where(Change.patron_id == patron.id).order_by(Change.id))
            out: dict[str, Any] = jsonable(view, OSLO)
            out.pop("card_status", None)
            out.pop("has_pin", None)
            out["pin"] = "set (stored only as a slow hash)" if view.has_pin else "not set"
            out["audit"] = [jsonable(audit.event_view(e), OSLO) for e in events]
            out["changes"] = [jsonable(audit.change_view(c), OSLO) for c in changes]
            out["exported_at"] = utcnow().astimezone(OSLO).isoformat(timespec="seconds")
            out["note"] = "The register stores nothing about loans, reservations or fines."
            return out

"""The settings generation (issue 13): every transaction that adds, changes or removes a library,
a SIP2 terminal or an API client raises one number, in the same transaction, so that every gateway
process, which follows it with the change feed (gateway.register.recall), forgets the library
settings and client credentials it keeps in memory (gateway.register.memory) within a second."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, event, inspect, select, text
from sqlalchemy.orm import Session, sessionmaker

from gateway.register.models import APIClient, Library, SettingsGeneration, SIPTerminal

_SETTINGS = (Library, SIPTerminal, APIClient)
#: ``Session.info`` key: this transaction raised the generation (the store tells who listens, once committed).
RAISED = "nlr.settings_raised"
_table: Table = SettingsGeneration.__table__  # type: ignore[assignment]
# one statement on both backends, and whether or not the row is there (migration 0007 adds it)
RAISE = text("INSERT INTO settings_generation (id, value) VALUES (1, 1) "
             "ON CONFLICT (id) DO UPDATE SET value = settings_generation.value + 1")
READ = select(_table.c.value).where(_table.c.id == 1)


def _changed(obj: Any) -> bool:
    """A column of this object changed (a collection of it filling up, say activations, is no change)."""
    state = inspect(obj)
    return any(state.attrs[attr.key].history.has_changes() for attr in state.mapper.column_attrs)


def track(sessions: sessionmaker[Session]) -> None:
    """Raise the generation in every flush that writes a library, terminal or API client."""

    @event.listens_for(sessions, "after_flush")
    def _flushed(s: Session, _context: Any) -> None:
        if any(isinstance(o, _SETTINGS) for o in (*s.new, *s.deleted)) or any(
                isinstance(o, _SETTINGS) and _changed(o) for o in s.dirty):
            s.connection().execute(RAISE)
            s.info[RAISED] = True

"""Unaudited reads for maintenance tools outside the register (today the demo loader), so that they
need no SQLAlchemy of their own. Nothing here reads personal data."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import select

from gateway.register.models import Card

if TYPE_CHECKING:
    from gateway.register import Register


def cards_in_use(register: Register, numbers: Iterable[str]) -> set[str]:
    """Those of ``numbers`` (normalised card numbers) that exist in any state: active, lost,
    replaced, or of a deleted patron. Card numbers are never reused, so none of these can be issued."""
    wanted = list(numbers)
    with register.engine.connect() as conn:
        return set(conn.scalars(select(Card.number).where(Card.number.in_(wanted))))

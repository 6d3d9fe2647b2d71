"""The register's schema as the command line and the daemon see it: create or upgrade it, check it.

Callers (``nlr init``, and `gateway.runtime` opening the register for every other command and for
``nlr serve``) never touch SQLAlchemy: a database that cannot be used is `RegisterUnavailable`,
whose message is one line with the driver's reason (never SQL or parameters).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.exc import OperationalError

from gateway.register.database import make_engine, schema_is_current, upgrade
from gateway.register.errors import RegisterUnavailable

if TYPE_CHECKING:
    from gateway.register import Register


def database_down(exc: BaseException) -> str:
    """One line for a database that cannot be used, with the driver's reason (never SQL or parameters)."""
    cause = getattr(exc, "orig", None) or exc
    reason = str(cause).strip().splitlines()[0] if str(cause).strip() else cause.__class__.__name__
    return f"the database does not answer ({reason[:200]}); check database.url and that the server runs"


def initialise(database_url: str, *, connect_timeout: int = 5) -> tuple[str | None, str]:
    """Create or upgrade the schema to the newest revision; returns (revision before, revision now).

    Raises:
        RegisterUnavailable: the database does not answer.
    """
    engine = make_engine(database_url, connect_timeout=connect_timeout)
    try:
        return upgrade(engine)
    except OperationalError as exc:
        raise RegisterUnavailable(database_down(exc)) from None
    finally:
        engine.dispose()


def is_current(register: Register) -> bool:
    """Whether the register's database has the newest schema (False for an empty database).

    Raises:
        RegisterUnavailable: the database cannot be asked.
    """
    try:
        return schema_is_current(register.engine)
    except Exception as exc:  # noqa: BLE001 - whatever stops the question, the register cannot be used
        raise RegisterUnavailable(database_down(exc)) from None

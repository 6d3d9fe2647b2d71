"""Transactions: one use case, one transaction, and never a commit after its caller gave up.

Every register operation runs in one of three scopes:
- ``Store.session()``: an ORM session in one transaction (the operator's and libraries' changes);
- ``Store.core()``: one transaction on a plain connection (the batched hot paths);
- ``Store.read()``: a read-only connection (no write lock on SQLite).

A database that cannot be reached (or dropped the connection) is ``RegisterUnavailable`` in all
three. A caller may give the work a deadline (``deadline``, a ``time.monotonic()`` value, set per
thread by the daemon's pool of register calls): a transaction whose commit would start after it is
rolled back instead and fails with ``RegisterUnavailable``, so a caller that was answered with a
failure finds nothing committed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from gateway.register.errors import RegisterUnavailable, VersionConflict

_UNAVAILABLE = "the register database does not answer; try again shortly"
_LATE = "the register did not finish in time; nothing was changed; try again shortly"
_deadlines = threading.local()


@contextmanager
def deadline(at: float | None) -> Iterator[None]:
    """Run the block's register work under a deadline (``time.monotonic()``; None: none)."""
    before = getattr(_deadlines, "at", None)
    _deadlines.at = at
    try:
        yield
    finally:
        _deadlines.at = before


def check_deadline() -> None:
    """Raise RegisterUnavailable when this thread's deadline has passed."""
    at = getattr(_deadlines, "at", None)
    if at is not None and time.monotonic() > at:
        raise RegisterUnavailable(_LATE)


@contextmanager
def unavailable_on_trouble() -> Iterator[None]:
    """A database that cannot be reached (or dropped the connection) is RegisterUnavailable."""
    try:
        yield
    except OperationalError as exc:
        raise RegisterUnavailable(_UNAVAILABLE) from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise RegisterUnavailable(_UNAVAILABLE) from exc
        raise


class Store:
    """The engine, and the three ways the register uses it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # SQLite lets one writer in at a time, and makes the others poll with growing sleeps (up to
        # 100 ms each). Threads of this process queue on a lock instead and are handed the database
        # at once; other processes still meet SQLite's busy timeout.
        self._writer: AbstractContextManager[Any] = (
            threading.RLock() if engine.dialect.name == "sqlite" else nullcontext())

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction with an ORM session; committed when the block ends, unless the deadline
        has passed by then (then rolled back: RegisterUnavailable)."""
        with unavailable_on_trouble():
            try:
                with self._writer, self._sessions.begin() as session:
                    yield session
                    check_deadline()
            except StaleDataError:
                raise VersionConflict(
                    "the patron was changed by someone else meanwhile; fetch it again and retry") from None

    @contextmanager
    def core(self) -> Iterator[Connection]:
        """One transaction on a plain connection, for the batch paths that need no ORM session."""
        with unavailable_on_trouble(), self._writer, self.engine.begin() as conn:
            yield conn
            check_deadline()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for read-only work: no write lock on SQLite."""
        with unavailable_on_trouble(), self.engine.connect().execution_options(read_only=True) as conn:
            yield conn

    def ping(self) -> None:
        with self.read() as conn:
            conn.execute(text("SELECT 1"))

    def lock_series(self, s: Session) -> None:
        """Serialise number-series changes across processes (PostgreSQL; SQLite has one writer)."""
        if self.postgres:
            s.execute(text("SELECT pg_advisory_xact_lock(4242001)"))

"""Transactions: one use case, one transaction, and never a commit after its caller gave up.

Every register operation runs in one of three scopes:
- ``Store.session()``: an ORM session in one transaction (the operator's and libraries' changes);
  the changes it queued for the feed are written as its last statements (gateway.register.changelog);
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
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from gateway.register import changelog, generation
from gateway.register.errors import RegisterUnavailable, VersionConflict

_UNAVAILABLE = "the register database does not answer; try again shortly"
_LATE = "the register did not finish in time; nothing was changed; try again shortly"
_deadlines = threading.local()
LOCK_WAIT_SECONDS = 30.0  # SQLite's busy timeout (gateway.register.database): a longer wait is a hang


@contextmanager
def deadline(at: float | None, cancelled: Callable[[], bool] | None = None) -> Iterator[None]:
    """Run the block's register work under a deadline (``time.monotonic()``; None: none), and
    ``cancelled``: whether the caller has been answered already (then nothing may commit either)."""
    before = getattr(_deadlines, "at", None), getattr(_deadlines, "cancelled", None)
    _deadlines.at, _deadlines.cancelled = at, cancelled
    try:
        yield
    finally:
        _deadlines.at, _deadlines.cancelled = before


def check_deadline() -> None:
    """Raise RegisterUnavailable when this thread's deadline has passed or its caller gave up."""
    at = getattr(_deadlines, "at", None)
    cancelled = getattr(_deadlines, "cancelled", None)
    if (at is not None and time.monotonic() > at) or (cancelled is not None and cancelled()):
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
        self.sqlite = engine.dialect.name == "sqlite"
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        changelog.track_savepoints(self._sessions)
        generation.track(self._sessions)  # libraries, terminals, clients: the processes' memory forgets
        # SQLite lets one writer in at a time, and makes the others poll with growing sleeps (up to
        # 100 ms each). Threads of this process queue on a lock instead and are handed the database
        # at once; other processes still meet SQLite's busy timeout.
        self._writer = threading.RLock()
        # Told (changes written, whether the settings generation was raised) after each commit that
        # changed a patron, a library, a terminal or an API client; called in the committing thread.
        self.committed: list[Callable[[list[changelog.Pending], bool], None]] = []
        # threads now waiting for SQLite's write lock (ours or another process's): since when
        self._waiting: dict[int, float] = {}
        self._waiting_guard = threading.Lock()

    def lock_waits(self) -> int:
        """How many register calls are waiting for SQLite's write lock (or for a PIN check's place,
        on either backend) just now, and not longer than SQLite's own timeout: such a wait is a busy
        register, not a hung one; a longer one (the writer holding the lock hung) is."""
        limit = time.monotonic() - LOCK_WAIT_SECONDS
        with self._waiting_guard:
            return sum(1 for since in self._waiting.values() if since >= limit)

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """A wait the register chose (for a PIN check's place: gateway.register.pins), counted by
        ``lock_waits`` like a wait for the write lock: busy, not hung."""
        with self._waiting_for_lock():
            yield

    @contextmanager
    def _waiting_for_lock(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._waiting_guard:
            self._waiting[me] = time.monotonic()
        try:
            yield
        finally:
            with self._waiting_guard:
                self._waiting.pop(me, None)

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        if not self.sqlite:
            yield
            return
        with self._waiting_for_lock():
            self._writer.acquire()
        try:
            yield
        finally:
            self._writer.release()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction with an ORM session; committed when the block ends, unless the deadline
        has passed by then (then rolled back: RegisterUnavailable). Once committed, ``committed``'s
        listeners hear what changed (this process's memory forgets it at once: gateway.hot_path)."""
        with unavailable_on_trouble():
            try:
                with self._write_lock(), self._sessions.begin() as session:
                    if self.sqlite:
                        with self._waiting_for_lock():
                            session.connection()  # BEGIN IMMEDIATE: waits for other processes' writers
                    yield session
                    check_deadline()
                    written = changelog.write(session)  # the last statements: the feed's ids in commit order
                    settings = bool(session.info.pop(generation.RAISED, False))
            except StaleDataError:
                raise VersionConflict(
                    "the patron was changed by someone else meanwhile; fetch it again and retry") from None
        if written or settings:
            for listener in list(self.committed):
                listener(written, settings)

    @contextmanager
    def core(self) -> Iterator[Connection]:
        """One transaction on a plain connection, for the batch paths that need no ORM session."""
        with unavailable_on_trouble(), self._write_lock(), ExitStack() as stack:
            with self._waiting_for_lock() if self.sqlite else nullcontext():
                conn = stack.enter_context(self.engine.begin())  # BEGIN IMMEDIATE on SQLite
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

"""Engines, sessions and schema migrations for SQLite and PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, make_url, text

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration; a test checks it against the migrations folder.
SCHEMA_HEAD = "0007"


def make_engine(url: str, *, pool_size: int = 5, connect_timeout: int = 5) -> Engine:
    """An engine for the register; SQLite gets WAL, foreign keys and write-serialising transactions.
    SQL parameters (PIN hashes, national id index values, names) never appear in error messages."""
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:" and not path.startswith("file:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            create_private_file(Path(path))
        engine = create_engine(url, connect_args={"timeout": 30}, pool_size=pool_size, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            # IMMEDIATE takes the write lock at the start, so two writers never deadlock on an
            # upgrade from a read lock; readers are not blocked (WAL).
            # Read-only work (``read_only=True`` connections) begins deferred and never waits.
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("read_only") else "BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={"connect_timeout": connect_timeout},
        hide_parameters=True,
    )


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists, whatever the umask.

    The SQLite database holds names, addresses and e-mail addresses. SQLite would create it 0644
    (less the umask); created here first, it is 0600, and SQLite gives its -wal, -shm and -journal
    files the database file's own mode when it creates them, so they are 0600 too. An existing
    file keeps the mode the operator gave it.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)  # the umask may have taken bits from 0600 too (e.g. 0277)
    finally:
        os.close(fd)


# Alembic is imported only where it is used: every `nlr` command would otherwise pay for it.
def _alembic_config(engine: Engine) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Create or upgrade the schema to the newest revision; returns (before, after)."""
    from alembic import command
    from alembic.script import ScriptDirectory

    cfg = _alembic_config(engine)
    before = current_revision(engine)
    command.upgrade(cfg, "head")
    return before, ScriptDirectory.from_config(cfg).get_current_head() or SCHEMA_HEAD


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (None for an empty database); plain SQL, no Alembic."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def schema_is_current(engine: Engine) -> bool:
    return current_revision(engine) == SCHEMA_HEAD


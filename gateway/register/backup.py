"""``nlr backup``: a consistent copy of an SQLite register while it serves (issue 11, item 6).

SQLite's online backup API copies every page in one step inside one read transaction, so the copy
is the database as of one moment, whatever the gateway writes meanwhile (WAL: writers go on; the
copy does not block them for longer than it takes). The copy is written beside the target, checked
(``PRAGMA integrity_check``), made 0600 and renamed into place, so a half-written file never carries
the target's name. A PostgreSQL register is backed up with the server's own tools (pg_dump).

The keys file is not in the database: without it the national ids in a backup cannot be read.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

from gateway.register.database import create_private_file
from gateway.register.errors import InvalidInput, RegisterUnavailable

POSTGRES_HOW = ("a PostgreSQL register is backed up with PostgreSQL's own tools: "
                "pg_dump --format=custom --file=nlr.dump DBNAME "
                "(restore: pg_restore --clean --dbname=DBNAME nlr.dump), or continuous archiving; "
                "keep a copy of the keys file with it")


@dataclass(frozen=True)
class Backup:
    path: Path
    bytes: int
    schema: str | None
    patrons: int


def backup_sqlite(database_url: str, target: Path) -> Backup:
    """Copy the SQLite register at ``database_url`` to ``target`` (which must not exist).

    Raises:
        InvalidInput: not an SQLite register, or the target exists.
        RegisterUnavailable: the database cannot be read.
    """
    if not database_url.startswith("sqlite"):
        raise InvalidInput(POSTGRES_HOW)
    source = make_url(database_url).database
    if not source or source == ":memory:" or not Path(source).exists():
        raise RegisterUnavailable(f"there is no SQLite register at {source!r}; check database.url")
    if target.exists():
        raise InvalidInput(f"{target} exists already; give a new file name")
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    create_private_file(partial)
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
        dst = sqlite3.connect(partial)
        try:
            src.execute("PRAGMA busy_timeout=30000")
            src.backup(dst)  # every page in one step: the database as of one moment
            checked = dst.execute("PRAGMA integrity_check").fetchone()[0]
            if checked != "ok":
                raise RegisterUnavailable(f"the copy failed its integrity check ({checked[:200]})")
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
            schema = _scalar(dst, "SELECT version_num FROM alembic_version")
            patrons = _scalar(dst, "SELECT count(*) FROM patrons WHERE deleted_at IS NULL")
        finally:
            dst.close()
            src.close()
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(partial, 0o600)
        os.replace(partial, target)
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise RegisterUnavailable(f"the register could not be copied ({str(exc)[:200]})") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return Backup(target, target.stat().st_size, str(schema) if schema is not None else None, int(patrons or 0))


def _scalar(conn: sqlite3.Connection, sql: str) -> Any:
    try:
        row = conn.execute(sql).fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None

"""Shared fixtures: a fresh register on SQLite and on PostgreSQL for every test that asks for one.

``register`` is that register empty; ``reg`` is it holding Oslo, Bergen and Trondheim with their
number series (`register_helpers.setup_libraries`); ``gateway`` is the NCIP site over ``reg`` plus the
examples' data. Plain helpers (constants, actors, patrons, messages) live in the *_helpers modules and
are imported from there; a fixture is found here by pytest, never imported. (The SIP2 server's
fixtures are still in sip2_server_helpers, because tests/test_sip2_server*.py import them.)

PostgreSQL: ``$NLR_TEST_DATABASE_URL`` or the local test server. On a machine without it the
PostgreSQL variants skip with the reason; in CI (``CI=true``) or with ``NLR_REQUIRE_POSTGRES=1``
they fail instead, so CI can never go green without them.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import daemon_helpers
import pytest
import pytest_twisted
import sip2_server_helpers as sip2
from register_helpers import TEST_SETTINGS, setup_libraries
from sqlalchemy import Engine, create_engine, text
from twisted.logger import formatEvent, globalLogPublisher

from gateway.register import Register
from gateway.register.crypto import KeyRing
from gateway.register.database import make_engine, upgrade
from gateway.register.models import Base

if TYPE_CHECKING:
    from ncip_gateway_helpers import Gateway

PG_URL = os.environ.get("NLR_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("CI", "").lower() == "true" or os.environ.get("NLR_REQUIRE_POSTGRES") == "1"


# ---------------------------------------------------------------------- databases
def _postgres_problem() -> str | None:
    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001
        return f"PostgreSQL at {PG_URL} does not answer ({exc.__class__.__name__})"


@pytest.fixture(scope="session")
def postgres_schema_url() -> Iterator[str]:
    """A private schema on the PostgreSQL test server, migrated once; dropped at the end."""
    problem = _postgres_problem()
    if problem:
        if REQUIRE_PG:
            pytest.fail(f"{problem}; CI requires PostgreSQL (start it, or unset CI/NLR_REQUIRE_POSTGRES)")
        pytest.skip(f"{problem}; set NLR_TEST_DATABASE_URL to run the PostgreSQL variants")
    schema = f"nlr_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "register.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()  # closing the last connection checkpoints the WAL into the file
    return path


def _truncate(engine: Engine) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty, migrated register database, on each backend in turn."""
    if request.param == "sqlite":
        path = tmp_path / "register.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    url = request.getfixturevalue("postgres_schema_url")
    engine = make_engine(url)
    _truncate(engine)
    engine.dispose()
    yield url


@pytest.fixture
def keys_path(tmp_path: Path) -> Path:
    path = tmp_path / "keys.yaml"
    KeyRing.create(path)
    return path


# ---------------------------------------------------------------------- registers
@pytest.fixture
def register(database_url: str, keys_path: Path) -> Iterator[Register]:
    """A fresh register (libraries, series, patrons: none) on each backend."""
    engine = make_engine(database_url)
    reg = Register(engine, KeyRing.load(keys_path), TEST_SETTINGS)
    yield reg
    engine.dispose()


@pytest.fixture
def reg(register: Register) -> Register:
    """The fresh register holding Oslo, Bergen and Trondheim with their series (no patrons)."""
    setup_libraries(register)
    return register


# ---------------------------------------------------------------------- the NCIP gateway
@pytest.fixture
def gateway(reg: Register) -> Iterator[Gateway]:
    """The HTTP site on a register holding the examples' data."""
    from ncip_gateway_helpers import serve, setup_examples  # the web stack, only for the tests that use it

    gw = serve(reg, setup_examples(reg))
    yield gw
    pytest_twisted.blockon(gw.close())


# ---------------------------------------------------------------------- SIP2 servers (tests/test_sip2_server*.py)
@pytest.fixture(scope="session")
def sip2_template(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> sip2.Template:
    """One populated register, built once per session; every test gets a copy."""
    folder = tmp_path_factory.mktemp("sip2")
    db, keys = folder / "register.db", folder / "keys.yaml"
    shutil.copy(sqlite_template, db)
    KeyRing.create(keys)
    engine = make_engine(f"sqlite:///{db}")
    ids = sip2.populate(Register(engine, KeyRing.load(keys), TEST_SETTINGS))
    engine.dispose()
    return sip2.Template(db, keys, ids)


@pytest.fixture
def servers(sip2_template: sip2.Template, tmp_path: Path, no_daemon_failures: None) -> Iterator[sip2.Servers]:
    """SIP2 servers for the test on copies of the populated register; the test fails if the daemon
    logged a traceback meanwhile."""
    s = sip2.Servers(sip2_template, tmp_path)
    yield s
    s.stop()


@pytest.fixture
def sip(servers: sip2.Servers) -> sip2.Server:
    return servers.start()


@pytest.fixture
def logs() -> Iterator[list[str]]:
    """Every log line the daemon writes during the test, formatted (tracebacks included)."""
    lines: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        text = formatEvent(event)
        if "log_failure" in event:
            text += "\n" + event["log_failure"].getTraceback()
        lines.append(text)

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


@pytest.fixture
def no_daemon_failures() -> Iterator[None]:
    """Fail a test during which the daemon logged a traceback (a bug, or an unhandled Deferred error)."""
    failures: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        if "log_failure" in event:
            failures.append(formatEvent(event) + "\n" + event["log_failure"].getTraceback())

    globalLogPublisher.addObserver(observe)
    yield
    globalLogPublisher.removeObserver(observe)
    assert not failures, failures[0]


# ---------------------------------------------------------------------- `nlr serve` daemons
@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[daemon_helpers.Daemon]]:
    """Daemons a test starts; any still running at the end are killed."""
    started: list[daemon_helpers.Daemon] = []
    yield started
    for daemon in started:
        daemon.kill()

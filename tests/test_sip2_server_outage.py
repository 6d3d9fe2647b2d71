"""Database outages (sip2.md A.3): 98 says offline, patron requests get a clean "register unavailable"
refusal at a kiosk and at a door, nothing hangs, and service resumes by itself when the database
returns. PostgreSQL is reached through a TCP proxy the test controls (the shared server never stops).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TEST_SETTINGS, _truncate
from db_proxy import DatabaseProxy
from register_helpers import OSLO
from sip2_server_helpers import (
    KARI,
    KARI_NAME,
    PASSWORD,
    D,
    fields,
    over_tcp,
    patron_enable,
    patron_information,
    patron_status,
    populate,
)

from gateway.register import Register
from gateway.register.crypto import KeyRing
from gateway.register.database import make_engine
from gateway.register.views import Reason
from gateway.sip2 import answers

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("no_daemon_failures")]

UNAVAILABLE = answers.SCREEN[Reason.REGISTER_UNAVAILABLE]


@pytest.fixture
def proxied(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Register, DatabaseProxy]]:
    """A populated PostgreSQL register, and one reached only through a proxy."""
    url = request.getfixturevalue("postgres_schema_url")
    direct = make_engine(url)
    _truncate(direct)
    keys = tmp_path / "keys.yaml"
    KeyRing.create(keys)
    populate(Register(direct, KeyRing.load(keys), TEST_SETTINGS))
    direct.dispose()
    proxy = DatabaseProxy(url)
    engine = make_engine(proxy.url, connect_timeout=2)
    register = Register(engine, KeyRing.load(keys), TEST_SETTINGS)
    yield register, proxy
    proxy.close()


@over_tcp
def test_a_database_outage_and_recovery(servers, proxied, logs):
    register, proxy = proxied
    sip = servers.start(register=register)
    kiosk, door = sip.login("kiosk1"), sip.login("door1")
    assert fields(kiosk.ask("9900302.00")).fixed["online_status"] == "Y"
    assert fields(kiosk.ask(patron_status(KARI))).fixed["patron_status"] == " " * 14

    proxy.down()
    start = time.monotonic()
    status = fields(kiosk.ask("9900302.00"))
    assert (status.fixed["online_status"], status.fixed["timeout_period"], status.get("AF")) == (
        "N", "000", UNAVAILABLE)
    assert status.get("BX") == answers.BX
    for ask in (patron_status, patron_information):
        m = fields(kiosk.ask(ask(KARI)))
        assert (m.fixed["patron_status"], m.get("BL"), m.get("AE"), m.get("CQ"), m.get("AF")) == \
            (answers.DENIED, "N", "", "N", UNAVAILABLE)
        d = fields(door.ask(ask(KARI)))
        assert (d.fixed["patron_status"], d.get("BL"), d.get("AE"), d.get("AF")) == (
            answers.DENIED, "N", "", UNAVAILABLE)
    enable = fields(kiosk.ask(patron_enable(KARI)))
    assert (enable.code, enable.get("BL"), enable.get("AF")) == ("26", "N", UNAVAILABLE)
    block = fields(kiosk.ask(f"01N{D}AO{OSLO}|ALx|AA{KARI}|AC|"))
    assert (block.code, block.get("BL"), block.get("AF")) == ("24", "N", UNAVAILABLE)
    assert kiosk.ask(f"35{D}AO{OSLO}|AA{KARI}|").startswith(b"36Y")
    assert kiosk.ask(f"17{D}AO{OSLO}|ABitem|").startswith(b"18")
    with sip.client() as newcomer:  # a terminal cannot log in now; no strike against it
        assert newcomer.ask("9900302.00")[2:3] == b"N"
        for _ in range(3):
            assert newcomer.ask(f"9300CNkiosk1|CO{PASSWORD}|") == b"940"
        assert not newcomer.closed(timeout=0.3)
    assert time.monotonic() - start < 15  # every answer came promptly

    proxy.up()  # service resumes by itself
    granted = fields(kiosk.ask(patron_status(KARI)))
    assert (granted.fixed["patron_status"], granted.get("AE")) == (" " * 14, f"{KARI_NAME[0]} {KARI_NAME[1]}")
    assert fields(door.ask(patron_information(KARI))).get("AF") == answers.DOOR_GRANTED
    assert fields(kiosk.ask("9900302.00")).fixed["online_status"] == "Y"
    with sip.login("kiosk1") as again:
        assert fields(again.ask(patron_status(KARI))).get("BL") == "Y"
    kiosk.close()
    door.close()
    assert any("does not answer" in line for line in logs)
    assert any("answers again" in line for line in logs)


@over_tcp
def test_a_database_that_hangs_never_hangs_a_terminal(servers, proxied):
    register, proxy = proxied
    sip = servers.start(register=register, register_timeout=1.0)
    kiosk = sip.login("kiosk1")
    proxy.hang()
    try:
        start = time.monotonic()
        m = fields(kiosk.ask(patron_status(KARI)))
        assert (m.get("BL"), m.get("AF")) == ("N", UNAVAILABLE)
        assert fields(kiosk.ask("9900302.00")).fixed["online_status"] == "N"
        assert time.monotonic() - start < 4
    finally:
        proxy.up()
    deadline = time.monotonic() + 20
    while True:  # resumes once the stalled database work has drained
        m = fields(kiosk.ask(patron_status(KARI)))
        if m.get("BL") == "Y" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert m.fixed["patron_status"] == " " * 14
    kiosk.close()

"""A hung register marks the gateway offline (issue 9, item 5; finding 6): once the register has not
answered for 1 s, every channel answers at once — SIP2 the clean "register unavailable" (98: online
N), NCIP its temporary-failure Problem, /healthz 503 — instead of each request waiting its full 8 s,
and the gateway comes back by itself when a probe succeeds. PostgreSQL is reached through a TCP
proxy the test controls; the shared server never stops."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_helpers import Daemon, free_port, get, start, write_config
from db_proxy import DatabaseProxy
from ncip_gateway_helpers import lookup_user
from register_helpers import OSLO, add_patron, setup_libraries
from sip2_server_helpers import Client, fields, patron_status

from gateway.register import Register
from gateway.register.views import OPERATOR, Reason
from gateway.sip2 import answers

PASSWORD = "kiosk-pass-1"
UNAVAILABLE = answers.SCREEN[Reason.REGISTER_UNAVAILABLE]


@pytest.fixture
def proxy(database_url: str) -> Iterator[DatabaseProxy]:
    p = DatabaseProxy(database_url)
    yield p
    p.close()


def _ncip(port: int, token: str, card: str) -> tuple[float, str]:
    h = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    started = time.monotonic()
    h.request("POST", "/ncip", lookup_user(card), {"Authorization": f"Bearer {token}"})
    body = h.getresponse().read().decode()
    h.close()
    return time.monotonic() - started, body


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_hung_register_is_answered_at_once_on_every_channel(register: Register, database_url: str,
                                                              proxy: DatabaseProxy, keys_path: Path, tmp_path: Path,
                                                              daemons: list[Daemon]) -> None:
    setup_libraries(register)
    card = add_patron(register, 0, OSLO).card
    register.add_terminal(OPERATOR, "kiosk", PASSWORD, OSLO, "kiosk", pin_required=False)
    token = register.add_client(OPERATOR, "ils", OSLO, ["lookup"]).token
    assert token is not None
    http_port, sip2_port = free_port(), free_port()
    cfg = write_config(tmp_path / "nlr.yaml", proxy.url, keys_path, http=[f"tcp:{http_port}:interface=127.0.0.1"],
                       sip2=[f"tcp:{sip2_port}:interface=127.0.0.1"])
    daemon = start(daemons, cfg, tmp_path)
    base = f"http://127.0.0.1:{http_port}"
    daemon.health(base, 200)
    kiosk = Client(sip2_port, timeout=20)
    assert kiosk.ask(f"9300CNkiosk|CO{PASSWORD}|") == b"941"
    assert fields(kiosk.ask(patron_status(card, None))).get("BL") == "Y"

    proxy.hang()
    try:
        started = time.monotonic()
        while True:  # from memory while the feed was read within 1 s (gateway.hot_path), then the register
            first = fields(kiosk.ask(patron_status(card, None)))  # waits for the register, until offline
            if first.get("AF") == UNAVAILABLE:
                break
            assert first.get("BL") == "Y" and time.monotonic() - started < 1.1, "memory used past its second"
        assert time.monotonic() - started < 4  # the 1 s of silence, then the answer (not the 8 s timeout)
        # offline now: every channel answers at once
        for _ in range(3):
            t0 = time.monotonic()
            m = fields(kiosk.ask(patron_status(card, None)))
            assert (m.get("BL"), m.get("AF")) == ("N", UNAVAILABLE)
            assert fields(kiosk.ask("9900302.00")).fixed["online_status"] == "N"
            assert time.monotonic() - t0 < 1.0
            took, body = _ncip(http_port, token, card)
            assert "Temporary Processing Failure" in body and took < 1.0, (took, body[:300])
        t0 = time.monotonic()
        status, _ = get(f"{base}/healthz", timeout=10)
        assert status == 503 and time.monotonic() - t0 < 3
    finally:
        proxy.down()
        proxy.up()
    # back by itself once a probe succeeds
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        m = fields(kiosk.ask(patron_status(card, None)))
        if m.get("BL") == "Y":
            break
        time.sleep(0.2)
    assert m.get("BL") == "Y", m
    assert fields(kiosk.ask("9900302.00")).fixed["online_status"] == "Y"
    took, body = _ncip(http_port, token, card)
    assert "<ns1:UserId>" in body
    kiosk.close()
    log = daemon.log.read_text(errors="replace")
    assert "offline" in log and "answers again" in log
    assert "NCIP request failed" not in log  # offline is logged once by the pool, not per request
    assert daemon.stop() == 0

"""Min side over two `nlr serve` gateways on one register (issue 10): a session is stored in the
database, so any gateway serves it and a logout on one ends it on the other; the PIN lockout of the
page is the register's, so wrong PINs on one gateway's page lock SIP2 on the other; a PIN changed on
the page works at once over SIP2 on the other gateway. On SQLite (one file) and PostgreSQL."""

from __future__ import annotations

import http.client
import urllib.parse
from pathlib import Path

import pytest
from daemon_helpers import Daemon, free_port, start, write_config
from register_helpers import OSLO, PIN, add_patron, setup_libraries
from sip2_server_helpers import Client, patron_status
from web_helpers import HiddenFields

from gateway.register import Register
from gateway.register.views import OPERATOR

PASSWORD = "kiosk-pass-1"
FAILED = "Feil lånenummer eller PIN-kode"



class Browser:
    """A cookie-keeping HTTP client of one gateway's page, following no redirects."""

    def __init__(self, port: int, cookies: dict[str, str] | None = None) -> None:
        self.port, self.cookies = port, dict(cookies or {})

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            headers.update({"Content-Type": "application/x-www-form-urlencoded",
                            "Origin": f"http://127.0.0.1:{self.port}"})
        conn.request(method, path, body, headers)
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                self.cookies[key.strip()] = rest.split(";", 1)[0]
        conn.close()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, text

    def hidden(self, path: str, action: str | None = None) -> dict[str, str]:
        status, _, page = self.request("GET", path)
        assert status == 200, (path, status)
        parser = HiddenFields()
        parser.feed(page)
        wanted = action or path
        found = next((fields for act, fields in parser.forms.items() if act.endswith(wanted)), None)
        assert found is not None, (wanted, parser.forms)
        return found

    def log_in(self, card: str, pin: str) -> tuple[int, str]:
        fields = self.hidden("/min-side/logg-inn")
        status, headers, page = self.request("POST", "/min-side/logg-inn", {**fields, "card": card, "pin": pin})
        return status, headers.get("location", "") if status in (302, 303) else page


def _sip2_status(port: int, card: str, pin: str) -> str:
    with Client(port, timeout=30) as c:
        assert c.ask(f"9300CNkiosk|CO{PASSWORD}|") == b"941"
        return c.ask(patron_status(card, pin)).decode()


@pytest.fixture
def two_gateways(register: Register, database_url: str, keys_path: Path, tmp_path: Path,
                 daemons: list[Daemon]) -> tuple[list[tuple[int, int]], str]:
    setup_libraries(register)
    card = add_patron(register, 0, OSLO).card
    register.add_terminal(OPERATOR, "kiosk", PASSWORD, OSLO, "kiosk")
    ports = [(free_port(), free_port()) for _ in range(2)]
    for n, (sip2_port, http_port) in enumerate(ports):
        cfg = write_config(tmp_path / f"nlr-{n}.yaml", database_url, keys_path,
                           http=[f"tcp:{http_port}:interface=127.0.0.1"], sip2=[f"tcp:{sip2_port}:interface=127.0.0.1"])
        start(daemons, cfg, tmp_path).health(f"http://127.0.0.1:{http_port}", 200)
    return ports, card


def test_a_session_is_served_by_every_gateway(two_gateways: tuple[list[tuple[int, int]], str],
                                               daemons: list[Daemon]) -> None:
    (sip_a, http_a), (sip_b, http_b) = two_gateways[0]
    card = two_gateways[1]
    on_a = Browser(http_a)
    status, where = on_a.log_in(card, PIN)
    assert status in (302, 303) and where.endswith("/min-side/"), (status, where)
    on_b = Browser(http_b, on_a.cookies)  # the same cookie, the other gateway
    status, _, page = on_b.request("GET", "/min-side/")
    assert status == 200 and card in page and "Nordmann0" in page
    logout = on_b.hidden("/min-side/", "/min-side/logg-ut")
    status, _, _ = on_b.request("POST", "/min-side/logg-ut", logout)
    assert status in (302, 303)
    status, headers, _ = Browser(http_a, {"nlr_session": on_a.cookies["nlr_session"]}).request("GET", "/min-side/")
    assert status in (302, 303) and "logg-inn" in headers["location"]
    for daemon in daemons:
        assert daemon.stop() == 0


def test_wrong_pins_on_one_page_lock_sip2_on_the_other_gateway(two_gateways: tuple[list[tuple[int, int]], str],
                                                                daemons: list[Daemon]) -> None:
    (sip_a, http_a), (sip_b, http_b) = two_gateways[0]
    card = two_gateways[1]
    page = Browser(http_a)
    for _ in range(5):
        status, body = page.log_in(card, "0000")
        assert status == 200 and FAILED in body
    assert "For mange feil" in _sip2_status(sip_b, card, PIN)  # the right PIN, locked everywhere
    status, body = Browser(http_b).log_in(card, PIN)
    assert status == 200 and FAILED in body  # locked looks like wrong on the page
    for daemon in daemons:
        assert daemon.stop() == 0


def test_a_pin_changed_on_the_page_works_over_sip2_at_once(two_gateways: tuple[list[tuple[int, int]], str],
                                                            daemons: list[Daemon]) -> None:
    (sip_a, http_a), (sip_b, http_b) = two_gateways[0]
    card = two_gateways[1]
    me, elsewhere = Browser(http_a), Browser(http_b)
    assert me.log_in(card, PIN)[0] in (302, 303) and elsewhere.log_in(card, PIN)[0] in (302, 303)
    fields = me.hidden("/min-side/pin")
    status, _, _ = me.request("POST", "/min-side/pin", {**fields, "old_pin": PIN, "new_pin": "86420",
                                                       "new_pin_again": "86420"})
    assert status in (200, 302, 303)
    assert "CQY" in _sip2_status(sip_b, card, "86420")
    assert "CQN" in _sip2_status(sip_b, card, PIN)
    assert me.request("GET", "/min-side/")[0] == 200  # this session goes on
    assert elsewhere.request("GET", "/min-side/")[0] in (302, 303)  # the other one ended
    for daemon in daemons:
        assert daemon.stop() == 0


def test_a_burst_of_logins_is_throttled_and_leaves_every_channel_online(
        two_gateways: tuple[list[tuple[int, int]], str], register: Register, daemons: list[Daemon]) -> None:
    """Found from outside: 50 logins at once for one card took the gateway offline for every channel
    (the PIN checks waiting for a place looked like a hung register), and none met the per-source
    throttle (every one was checked)."""
    import threading

    (sip_a, http_a), _ = two_gateways[0]
    card = two_gateways[1]
    other = add_patron(register, 1, OSLO).card
    pages = [Browser(http_a) for _ in range(50)]
    forms = [page.hidden("/min-side/logg-inn") for page in pages]
    barrier = threading.Barrier(len(pages))
    codes: list[int] = []

    def log_in(i: int) -> None:
        barrier.wait(timeout=30)
        status, _, _ = pages[i].request("POST", "/min-side/logg-inn", {**forms[i], "card": card, "pin": "0000"})
        codes.append(status)

    workers = [threading.Thread(target=log_in, args=(i,)) for i in range(len(pages))]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert len(codes) == 50 and 503 not in codes, sorted(codes)
    assert codes.count(200) <= 10 and codes.count(429) >= 40, sorted(codes)  # the throttle: 10 per source
    assert "CQY" in _sip2_status(sip_a, other, PIN)  # SIP2 answers as ever
    for daemon in daemons:
        assert daemon.stop() == 0

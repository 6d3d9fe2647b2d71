"""The PIN lockout race through the public contract (issue 8): 40 wrong PINs and (sometimes) the
right one sent at once, two thirds as SIP2 23 at a kiosk and one third as NCIP LookupUser with card
+ PIN, over two `nlr serve` gateways on one register. Before the fix, 10-26 wrong guesses were
checked per burst and the right PIN was accepted in 3 of 8 bursts."""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from pathlib import Path

import pytest
from daemon_helpers import Daemon, free_port, start, write_config
from ncip_gateway_helpers import auth, message
from register_helpers import OSLO, PIN, add_patron, setup_libraries
from sip2_server_helpers import Client, patron_status

from gateway.register import Register, Settings
from gateway.register.views import OPERATOR

GUESSES, SIP2_SHARE = 40, 2 / 3
PASSWORD = "kiosk-pass-1"


def _ncip_lookup(card: str, pin: str) -> bytes:
    return message("LookupUser", auth("Barcode Id", card) + auth("PIN", pin))


def _burst(daemons: list[tuple[int, int]], token: str, card: str, pins: list[str]) -> Counter[str]:
    """Every PIN sent at the same moment, alternately to each gateway: (sip2 port, http port)."""
    sip2_count = round(len(pins) * SIP2_SHARE)
    sessions: list[object] = []
    for i, _ in enumerate(pins):
        sip2_port, http_port = daemons[i % len(daemons)]
        if i < sip2_count:
            c = Client(sip2_port, timeout=30)
            assert c.ask(f"9300CNkiosk|CO{PASSWORD}|") == b"941"
            sessions.append(c)
        else:
            h = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
            h.connect()
            sessions.append(h)
    barrier = threading.Barrier(len(pins))
    outcomes: list[str] = []
    lock = threading.Lock()

    def send(i: int) -> None:
        session, pin = sessions[i], pins[i]
        try:
            barrier.wait(timeout=30)
            if isinstance(session, Client):
                answer = session.ask(patron_status(card, pin)).decode()
                outcome = ("ok" if "CQY" in answer else "locked" if "For mange feil" in answer
                           else "wrong" if "Feil PIN" in answer else f"? {answer}")
                session.close()
            else:
                assert isinstance(session, http.client.HTTPConnection)
                session.request("POST", "/ncip", _ncip_lookup(card, pin),
                                {"Authorization": f"Bearer {token}", "Content-Type": "application/xml"})
                body = session.getresponse().read().decode()
                outcome = ("locked" if "PIN Locked" in body else "wrong" if "User Authentication Failed" in body
                           else "ok" if "<ns1:UserId>" in body else f"? {body[:300]}")
                session.close()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            outcome = f"error {exc!r}"
        with lock:
            outcomes.append(outcome)

    workers = [threading.Thread(target=send, args=(i,)) for i in range(len(pins))]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=90)
    assert len(outcomes) == len(pins) and all(o in ("ok", "wrong", "locked") for o in outcomes), outcomes
    return Counter(outcomes)


@pytest.mark.parametrize("right", [False, True], ids=["guesses", "guesses-and-the-right-pin"])
def test_a_burst_of_pins_over_two_gateways(register: Register, database_url: str, keys_path: Path, tmp_path: Path,
                                           daemons: list[Daemon], right: bool) -> None:
    setup_libraries(register)
    card = add_patron(register, 0, OSLO, pin=None).card
    # the PIN hashed as slowly as in production, so that the guesses are checked at the same time
    Register(register.engine, register.keys, Settings(allow_synthetic_ids=True, pin_hash_cost=14)).set_pin(
        OPERATOR, card, PIN)
    register.add_terminal(OPERATOR, "kiosk", PASSWORD, OSLO, "kiosk")
    token = register.add_client(OPERATOR, "ils", OSLO, ["lookup"]).token
    assert token is not None
    ports = [(free_port(), free_port()) for _ in range(2)]
    for n, (sip2_port, http_port) in enumerate(ports):
        cfg = write_config(tmp_path / f"nlr-{n}.yaml", database_url, keys_path,
                           http=[f"tcp:{http_port}:interface=127.0.0.1"], sip2=[f"tcp:{sip2_port}:interface=127.0.0.1"])
        start(daemons, cfg, tmp_path).health(f"http://127.0.0.1:{http_port}", 200)
    pins = ["0000"] * GUESSES + ([PIN] if right else [])
    if right:
        pins[len(pins) // 3], pins[-1] = pins[-1], pins[len(pins) // 3]  # among the SIP2 ones, not first
    counts = _burst(ports, token, card, pins)
    limit = register.settings.pin_max_failures
    if counts["ok"]:
        assert right and counts["ok"] == 1 and counts["wrong"] <= 2 * (limit - 1), counts
    else:
        assert counts["wrong"] <= limit - 1, counts  # the guess that reaches the limit answers "locked"
        with Client(ports[1][0], timeout=30) as c:  # and once locked, the right PIN is refused too
            assert c.ask(f"9300CNkiosk|CO{PASSWORD}|") == b"941"
            assert "For mange feil" in c.ask(patron_status(card, PIN)).decode()
    for daemon in daemons:
        assert daemon.stop() == 0

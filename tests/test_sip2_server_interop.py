"""Interop with third-party SIP2 code from PyPI (issue 3 item 5): the `sip2` client library talks to
the server end to end, and the `pysip2` codec reads every kind of response the server sends."""

from __future__ import annotations

import logging
from functools import partial

import pysip2
import pytest
from register_helpers import BERGEN, OSLO
from Sip2.sip2 import Sip2
from sip2_server_helpers import (
    BERGEN_PATRON,
    KARI,
    KARI_NAME,
    PASSWORD,
    PIN,
    SECRET,
    UNKNOWN,
    WRONG_PIN,
    D,
    fields,
    make_certificate,
    over_tcp,
    patron_enable,
    patron_information,
    patron_status,
    tls_endpoint,
)

from gateway.register.views import OPERATOR
from gateway.sip2 import answers

pytestmark = pytest.mark.usefixtures("no_daemon_failures")  # a traceback in the daemon fails the test

KARI_FULL = f"{KARI_NAME[0]} {KARI_NAME[1]}"


def sip2_client(port: int, *, tls: bool = False, encoding: str = "utf-8") -> Sip2:
    client = Sip2()
    client.log = logging.getLogger("sip2-interop")  # not its default: a log file in the working folder
    client.hostName, client.hostPort, client.hostEncoding = "127.0.0.1", port, encoding
    client.tlsEnable = tls
    client.socketTimeout = 10
    client.institutionId = OSLO
    client.scLocation = "test"
    return client


def session(client: Sip2, login: str = "kiosk1") -> None:
    """A kiosk's day with the `sip2` client library, each answer read by its own parsers."""
    client.connect()
    c = client
    assert c.sip_login_response(c.get_response(c.sip_login_request(login, PASSWORD)))["fixed"]["Ok"] == "1"
    status = c.sip_sc_status_response(c.get_response(c.sip_sc_status_request()))
    assert status["fixed"]["OnlineStatus"] == "Y" and status["fixed"]["ProtocolVersion"] == "2.00"
    assert status["variable"]["BX"] == ["YNNYYYYYYNNNYNNN"] and status["variable"]["AO"] == [OSLO]
    c.patron, c.patronpwd = KARI, PIN
    ps = c.sip_patron_status_response(c.get_response(c.sip_patron_status_request()))
    assert ps["fixed"]["PatronStatus"] == " " * 14
    assert (ps["variable"]["AE"], ps["variable"]["BL"], ps["variable"]["CQ"]) == ([KARI_FULL], ["Y"], ["Y"])
    info = c.sip_patron_information_response(c.get_response(c.sip_patron_information_request("hold")))
    assert info["fixed"]["HoldItemsCount"] == "0000" and info["variable"]["AA"] == [KARI]
    assert info["variable"]["AF"] == [answers.SCREEN[answers.Reason.GRANTED]]
    c.patron, c.patronpwd = BERGEN_PATRON, PIN
    enabled = c.sip_patron_enable_response(c.get_response(c.sip_patron_enable_request()))
    assert enabled["fixed"]["PatronStatus"] == " " * 14 and enabled["variable"]["AF"] == [answers.ACTIVATED]
    c.patron, c.patronpwd = WRONG_PIN, "9999"
    wrong = c.sip_patron_status_response(c.get_response(c.sip_patron_status_request()))
    assert wrong["fixed"]["PatronStatus"] == answers.DENIED and wrong["variable"]["CQ"] == ["N"]
    checkout = c.sip_checkout_response(c.get_response(c.sip_checkout_request("item-1")))
    assert checkout["fixed"]["Ok"] == "0" and checkout["variable"]["AF"] == [answers.CIRCULATION_REFUSED]
    checkin = c.sip_checkin_response(c.get_response(c.sip_checkin_request("item-1")))
    assert checkin["fixed"]["Ok"] == "0"
    hold = c.sip_hold_response(c.get_response(c.sip_hold_request("+", itemIdentifier="item-1")))
    assert hold["fixed"]["Ok"] == "0"
    renew = c.sip_renew_all_response(c.get_response(c.sip_renew_all_request()))
    assert renew["fixed"]["Ok"] == "0"
    item = c.sip_item_information_response(c.get_response(c.sip_item_information_request("item-1")))
    assert item["variable"]["AB"] == ["item-1"]
    fee = c.sip_fee_paid_response(c.get_response(c.sip_fee_paid_request(1, 0, "12.50", currencyType="NOK")))
    assert fee["fixed"]["PaymentAccepted"] == "N"
    c.patron = KARI
    ended = c.sip_end_patron_session_response(c.get_response(c.sip_end_patron_session_request()))
    assert ended["fixed"]["EndSession"] == "Y"
    c.patron = WRONG_PIN
    blocked = c.sip_patron_status_response(c.get_response(c.sip_block_patron_request("glemt i automaten", "Y")))
    assert blocked["fixed"]["PatronStatus"].startswith("YYYY") and blocked["variable"]["AF"] == [answers.BLOCKED]
    client.disconnect()


@over_tcp
def test_the_sip2_client_library_end_to_end(sip):
    session(sip2_client(sip.port))
    assert sip.register.find_patron(OPERATOR, WRONG_PIN).blocked
    assert sip.register.find_patron(OPERATOR, BERGEN_PATRON).activation_at(OSLO) is not None


@over_tcp
def test_the_sip2_client_library_over_tls(servers, tmp_path):
    key, cert = make_certificate(tmp_path)
    sip = servers.start(endpoint=tls_endpoint(key, cert))
    client = sip2_client(sip.port, tls=True)  # trusts the self-signed certificate on first use
    session(client, "kiosk-tls")


@over_tcp
def test_the_sip2_client_library_trying_tls_on_the_plain_port(sip, logs):
    """It sends a ClientHello first, we close, it falls back to plain text (B.10): still served."""
    session(sip2_client(sip.port, tls=True))
    assert any("TLS ClientHello" in line for line in logs)


@over_tcp
def test_the_sip2_client_library_in_cp850(sip):
    client = sip2_client(sip.port, encoding="cp850")
    client.connect()
    assert client.get_response(client.sip_login_request("kiosk-cp850", PASSWORD)).startswith("941")
    client.patron, client.patronpwd = KARI, PIN
    ps = client.sip_patron_status_response(client.get_response(client.sip_patron_status_request()))
    assert ps["variable"]["AE"] == [KARI_FULL] and ps["variable"]["AF"] == ["Lånekortet er gyldig."]
    client.disconnect()


# ---------------------------------------------------------------------- pysip2 reads every answer
def every_kind_of_answer(sip, login: str, encoding: str) -> list[bytes]:
    """Every response type the server sends, with and without error detection."""
    frames: list[bytes] = []
    with sip.client(encoding=encoding) as c:
        c.ask("9910302.00")  # 98 before login
        c.ask("9300CNnobody|COnothing|")  # 940
        c.ask(f"9300CN{login}|CO{PASSWORD}|", seq=0)  # 941 with AY/AZ
        c.ask("97")  # the last response again
        c.ask("9910302.00AY1AZ0000")  # 96 (bad checksum)
        for seq in (None, 2):
            ask = partial(c.ask, seq=seq) if seq is not None else c.ask
            ask("9910302.00")
            for card, pin, ao in [(KARI, PIN, OSLO), (UNKNOWN, PIN, OSLO), (WRONG_PIN, "9999", OSLO),
                                  (KARI, None, OSLO), (KARI, PIN, BERGEN), (SECRET, PIN, OSLO)]:
                ask(patron_status(card, pin, ao=ao))
                ask(patron_information(card, pin, ao=ao))
            ask(patron_enable(BERGEN_PATRON))
            ask(patron_enable(UNKNOWN))
            ask(f"35{D}AO{OSLO}|AA{KARI}|")
            for request in [f"11YN{D}{' ' * 18}AO{OSLO}|AA{KARI}|ABitem-1|AC|", f"09N{D}{D}APx|AO{OSLO}|ABitem-1|AC|",
                            f"17{D}AO{OSLO}|ABitem-1|", f"19{D}AO{OSLO}|ABitem-1|CHx|",
                            f"15+{D}AO{OSLO}|AA{KARI}|ABitem-1|", f"29NN{D}{' ' * 18}AO{OSLO}|AA{KARI}|ABitem-1|",
                            f"65{D}AO{OSLO}|AA{KARI}|", f"37{D}0100NOKBV1.00|AO{OSLO}|AA{KARI}|"]:
                ask(request)
            ask(f"23000{D}AO{OSLO}|AA{KARI}|AA{UNKNOWN}|")  # unreadable: a refusal
            ask(f"01N{D}AO{OSLO}|ALtest|AA{UNKNOWN}|AC|")
        frames += c.received
    return frames


@pytest.mark.parametrize("login, encoding", [("ils1", "utf-8"), ("kiosk1", "utf-8"), ("door1", "utf-8"),
                                             ("kiosk-cp850", "cp850"), ("kiosk-latin1", "latin-1")])
@over_tcp
def test_pysip2_reads_every_response(sip, login, encoding):
    frames = every_kind_of_answer(sip, login, encoding)
    kinds = set()
    for frame in frames:
        decoded = pysip2.decode_message(frame, encoding=encoding)
        ours = fields(frame[:-1], encoding)
        kinds.add(frame[:2])
        if ours.code in ("24", "64", "26"):
            assert decoded.message.personal_name == ours.get("AE")
            assert decoded.message.patron_identifier == ours.get("AA")
            assert decoded.message.patron_status == ours.fixed["patron_status"]
            assert decoded.message.valid_patron == ours.get("BL")
            assert decoded.message.screen_message == tuple(ours.get_all("AF"))
        if ours.code == "98":
            assert decoded.message.supported_messages == "YNNYYYYYYNNNYNNN"
        assert decoded.sequence_number == ours.sequence and decoded.checksum == ours.checksum
    assert kinds == {b"98", b"94", b"96", b"24", b"64", b"26", b"36", b"12", b"10", b"18", b"20", b"16", b"30",
                     b"66", b"38"}

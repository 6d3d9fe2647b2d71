"""Hostile input and transport security (sip2.md A.6, B.10, B.11 robustness, C.8): the server stays
up, answers only SIP2, and keeps answering everyone else."""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sip2_server_helpers import (
    KARI,
    PASSWORD,
    PIN,
    Client,
    D,
    fields,
    make_certificate,
    over_tcp,
    patron_status,
    signed,
    tls_endpoint,
)

from gateway.sip2.protocol import LoginThrottle
from protocols.sip2 import LAYOUTS, SIP2Error, parse

pytestmark = pytest.mark.usefixtures("no_daemon_failures")  # a traceback in the daemon fails the test

RESPONSES = {lay.code for lay in LAYOUTS.values() if lay.response is None} - {"97"}


def still_serving(sip) -> None:
    """Another terminal logs in and is answered, promptly."""
    start = time.monotonic()
    with sip.login() as c:
        assert fields(c.ask(patron_status(KARI))).get("CQ") == "Y"
    assert time.monotonic() - start < 2


def send_all_until_closed(c: Client, data: bytes, chunk: int = 65536) -> None:
    try:
        for i in range(0, len(data), chunk):
            c.send(data[i:i + chunk])
    except OSError:
        pass  # closed by the server meanwhile


@over_tcp
def test_one_megabyte_without_a_terminator(sip, logs):
    with sip.login() as other:
        for attempt in (b"", b"9300CNkiosk1|CO" + PASSWORD.encode() + b"|\r"):  # before and after login
            with sip.client() as c:
                if attempt:
                    c.send(attempt)
                    assert c.frame() == b"941"
                send_all_until_closed(c, b"23" + b"A" * (1 << 20))
                assert c.closed(timeout=5) and not c.buffer
            assert fields(other.ask(patron_status(KARI))).get("CQ") == "Y"
    assert sum("longer than 8192 bytes" in line for line in logs) == 2
    still_serving(sip)


@over_tcp
def test_nul_bytes(sip):
    with sip.client() as c:
        c.send(b"\x00" * 1000 + b"\r")  # a line of NULs is blank: ignored
        assert c.ask(f"9300CNkiosk1|CO{PASSWORD}|") == b"941"
        refused = fields(c.ask(b"23\x00\x00\x00" + patron_status(KARI).encode()[2:]))
        assert refused.code == "24" and refused.get("AF") == "Ugyldig melding."
    with sip.client() as c:
        c.send(b"93\x0000CNkiosk1|CO" + PASSWORD.encode() + b"|\r")  # before login: closed
        assert c.closed() and not c.buffer
    with sip.client() as c:
        send_all_until_closed(c, b"\x00" * 20000)  # no terminator: too long
        assert c.closed() and not c.buffer
    still_serving(sip)


@over_tcp
def test_ten_thousand_connections_opened_and_dropped(servers):
    # A listen backlog for floods, as a busy site's endpoint string would set it (the default, 50,
    # overflows under a burst and the kernel then delays new connects by a second: slow, not down).
    sip = servers.start(endpoint="tcp:0:interface=127.0.0.1:backlog=4096")

    def churn(count: int, reset: bool) -> None:
        for _ in range(count):
            s = socket.socket()
            if reset:  # dropped hard: RST instead of FIN
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.connect(("127.0.0.1", sip.port))
            s.close()

    start = time.monotonic()
    workers = [threading.Thread(target=churn, args=(1250, i % 2 == 0)) for i in range(8)]
    for w in workers:
        w.start()
    with sip.login() as c:  # answered while the churn goes on
        while any(w.is_alive() for w in workers):
            assert c.ask("9900302.00")[:2] == b"98"
            time.sleep(0.05)
    for w in workers:
        w.join()
    assert time.monotonic() - start < 30
    deadline = time.monotonic() + 10
    while sip.factory.connections > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sip.factory.connections == 0  # every connection was cleaned up
    still_serving(sip)


@over_tcp
def test_a_slow_client_sending_one_byte_a_second(servers, logs):
    sip = servers.start(login_timeout_seconds=3)
    slow = sip.client()
    closed_at = None
    start = time.monotonic()
    with sip.login() as other:
        for byte in f"9300CNkiosk1|CO{PASSWORD}|".encode():
            try:
                slow.send(bytes([byte]))
            except OSError:
                closed_at = time.monotonic() - start
                break
            t = time.monotonic()
            assert fields(other.ask(patron_status(KARI))).get("CQ") == "Y"  # others answered meanwhile
            assert time.monotonic() - t < 1
            time.sleep(max(0.0, 1 - (time.monotonic() - t)))
    assert slow.closed(timeout=2) and not slow.buffer
    assert closed_at is None or closed_at < 6
    assert any("no successful login within 3 s" in line for line in logs)
    slow.close()
    still_serving(sip)


JUNK = st.one_of(
    st.binary(max_size=1500),
    st.lists(st.sampled_from([
        b"23", b"63", b"25", b"01", b"35", b"11", b"93", b"97", b"99", b"96", b"24", b"42", b"AO", b"AA", b"AD",
        b"AC", b"AY", b"AZ", b"|", b"\r", b"\n", b"\r\n", b"\x00", b"\x16\x03\x01", b"0", b"Y", b" ", D.encode(),
        b"NO-2030000", KARI.encode(), PIN.encode(), "æøå".encode(), "æøå".encode("cp850"), b"\xff\xfe", b"AZFEF6",
    ]), max_size=60).map(b"".join),
)


@over_tcp
def test_arbitrary_bytes_get_only_sip2_answers(servers):
    # Junk holding "93…" is a failed login; enough of them would (rightly) lock 127.0.0.1 out by the
    # login throttle, which is tested on its own. Here every example must be able to log in.
    sip = servers.start(throttle=LoginThrottle(time.monotonic, limit=10**6))

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(junk=JUNK)
    def prop(junk: bytes) -> None:
        with sip.login(timeout=10) as c:
            marker = signed("9900302.00", 9) + b"\r"
            c.send(junk + b"\r" + marker)
            frames = []
            try:
                while True:
                    frame = c.frame()
                    frames.append(frame)
                    if frame.startswith(b"98") and b"AY9AZ" in frame:
                        break
            except ConnectionError:
                assert b"93" in junk or junk.count(b"\r") + junk.count(b"\n") > 200, (junk, frames)
            for frame in frames:  # nothing but well-formed SIP2 answers
                try:
                    answer = parse(frame)
                except SIP2Error as exc:
                    raise AssertionError(f"not SIP2: {frame!r}") from exc
                assert answer.code in RESPONSES and frame[:2].isdigit(), frame
                assert answer.checksum is None or answer.checksum_basis == "bytes"

    prop()
    still_serving(sip)


# ---------------------------------------------------------------------- TLS (A.6, B.10)
@over_tcp
def test_tls_with_a_certificate_made_here(servers, tmp_path):
    key, cert = make_certificate(tmp_path)
    sip = servers.start(endpoint=tls_endpoint(key, cert), cafile=str(cert))
    with sip.client(tls=True) as c:
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
        assert c.ask(f"9300CNkiosk-tls|CO{PASSWORD}|", seq=0).startswith(b"941AY0AZ")  # TLS-only terminal
        m = fields(c.ask(patron_status(KARI), seq=1))
        assert (m.get("BL"), m.get("CQ"), m.sequence) == ("Y", "Y", 1)
    with sip.client(tls=True) as c:
        assert c.ask(f"9300CNkiosk1|CO{PASSWORD}|") == b"941"
    with sip.client() as c:  # plain SIP2 to the TLS port: no handshake, no answer
        c.send(f"9300CNkiosk1|CO{PASSWORD}|\r")
        assert c.closed(timeout=10)
        assert b"941" not in c.buffer
    with sip.client(tls=True) as c:
        assert c.ask(f"9300CNkiosk1|CO{PASSWORD}|") == b"941"


@over_tcp
def test_tls_client_hello_on_the_plaintext_port(sip, logs):
    raw = socket.create_connection(("127.0.0.1", sip.port), timeout=5)
    context = ssl.create_default_context()
    try:
        context.wrap_socket(raw, server_hostname="127.0.0.1")
        raise AssertionError("a TLS handshake succeeded on a plaintext port")
    except (ssl.SSLError, ConnectionError, OSError):
        pass
    raw.close()
    assert any("TLS ClientHello arrived on a plaintext SIP2 port" in line for line in logs)
    still_serving(sip)

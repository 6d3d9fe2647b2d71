"""GET /metrics (issue 11, item 3), black box: `nlr serve` in a subprocess, a SIP2 session and NCIP
lookups, then the Prometheus text parsed with prometheus_client's own parser; who may read it
(``metrics.allowed_networks``, judged by the source a PROXY header names); no card number, PIN,
password, token or national id in any label; the PIN lockout counted; and, with workers, one view
over all of them."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from daemon_helpers import Daemon, free_port, get
from ncip_gateway_helpers import lookup_user
from observability_helpers import PASSWORD, WRONG_PIN, Served, samples, serving, value
from register_helpers import PIN
from sip2_server_helpers import Client, patron_information, patron_status

from gateway import metrics
from gateway.register import Register


@pytest.fixture
def serve_with(register: Register, database_url: str, keys_path: Path, tmp_path: Path,
               daemons: list[Daemon]) -> Callable[..., Served]:
    return serving(register, database_url, keys_path, tmp_path, daemons)


def _session(s: Served) -> None:
    """A SIP2 session: 93, 23 and 63 with the right PIN, 23 with a wrong one, an unknown code, 99."""
    with Client(s.sip2_port, timeout=30) as c:
        assert c.ask(f"9300CNkiosk|CO{PASSWORD}|") == b"941"
        assert "CQY" in c.ask(patron_status(s.card, PIN)).decode()
        c.ask(patron_information(s.card, PIN))
        assert "CQN" in c.ask(patron_status(s.card, WRONG_PIN)).decode()
        c.ask("99001202.00")


def test_a_sip2_session_and_ncip_lookups_are_counted_with_bounded_labels(serve_with: Callable[..., Served]) -> None:
    s = serve_with()
    before = samples(s.scrape())
    assert value(before, "nlr_register_up") == 1
    assert value(before, "nlr_sip2_connections") == 0
    build = [labels for (name, labels) in before if name == "nlr_build_info"]
    assert len(build) == 1 and dict(build[0])["version"], build
    _session(s)
    for _ in range(2):
        assert "<ns1:UserId>" in s.ncip(lookup_user(s.card, types=("Name Information",)))
    assert "Unknown User" in s.ncip(lookup_user("N000199999", types=("Name Information",)))
    s.ncip(lookup_user(s.card, pin=PIN, types=("Name Information",)))
    with Client(s.sip2_port, timeout=30) as c:  # an open connection is counted while it is open
        assert c.ask(f"9300CNkiosk|CO{PASSWORD}|") == b"941"
        during = samples(s.scrape())
    assert value(during, "nlr_sip2_connections") == 1

    found = samples(s.scrape())
    total = "nlr_sip2_requests_total"
    assert value(found, total, command="93", outcome="ok") == 2
    assert value(found, total, command="23", outcome="ok") == 1
    assert value(found, total, command="23", outcome="refused") == 1
    assert value(found, total, command="63", outcome="ok") == 1
    assert value(found, total, command="99", outcome="ok") == 1
    assert value(found, "nlr_sip2_request_duration_seconds_count", command="23") == 2
    assert value(found, "nlr_ncip_requests_total", service="LookupUser", outcome="ok") == 3
    assert value(found, "nlr_ncip_requests_total", service="LookupUser", outcome="refused") == 1
    assert value(found, "nlr_ncip_request_duration_seconds_count", service="LookupUser") == 4
    assert value(found, "nlr_decisions_total", channel="sip2", reason="granted") == 2
    assert value(found, "nlr_decisions_total", channel="sip2", reason="pin_wrong") == 1
    assert value(found, "nlr_decisions_total", channel="ncip", reason="granted") == 1
    assert value(found, "nlr_register_call_duration_seconds_count") >= 8
    assert value(found, "nlr_sip2_connections") == 0

    commands = {dict(labels)["command"] for (name, labels) in found if name == total}
    assert commands <= metrics.SIP2_COMMANDS | {"other"}, commands
    for name, labels in found:
        for key, _ in labels:
            assert key in ("command", "outcome", "service", "channel", "reason", "version", "le", "result"), (name, key)
            if key == "result":  # the decision memory's (gateway.hot_path)
                assert dict(labels)[key] in ("hit", "miss"), labels
    # no card, login's password, PIN, token or national id anywhere in the exposition or the log
    text = s.scrape()
    log = s.daemon.log.read_text(errors="replace")
    for secret in (s.card, PIN, WRONG_PIN, PASSWORD, s.token, s.national_id):
        assert secret not in text, secret
        assert secret not in log, secret
    assert s.daemon.stop() == 0


def test_an_unknown_command_counts_as_other(serve_with: Callable[..., Served]) -> None:
    s = serve_with()
    with Client(s.sip2_port, timeout=30) as c:
        assert c.ask(f"9300CNkiosk|CO{PASSWORD}|") == b"941"
        c.send("XY123\r")  # no such command: ignored, not answered
        c.ask("99001202.00")
    found = samples(s.scrape())
    assert value(found, "nlr_sip2_requests_total", command="other", outcome="refused") == 1


def test_a_pin_lockout_is_counted_once(serve_with: Callable[..., Served]) -> None:
    s = serve_with()
    with Client(s.sip2_port, timeout=30) as c:
        assert c.ask(f"9300CNkiosk|CO{PASSWORD}|") == b"941"
        for _ in range(7):  # the 5th wrong PIN locks; the 6th and 7th meet the lock
            c.ask(patron_status(s.card, WRONG_PIN))
    found = samples(s.scrape())
    assert value(found, "nlr_pin_lockouts_total") == 1
    assert value(found, "nlr_decisions_total", channel="sip2", reason="pin_wrong") == 4
    assert value(found, "nlr_decisions_total", channel="sip2", reason="pin_locked") == 3


def test_metrics_answer_only_the_allowed_networks(serve_with: Callable[..., Served]) -> None:
    s = serve_with("metrics:\n  allowed_networks: [\"10.0.0.0/8\"]\n")
    status, body = get(f"{s.base}/metrics")
    assert status == 403 and b"allowed_networks" in body
    status, _ = get(f"{s.base}/healthz/live")
    assert status == 200


def _proxied_get(port: int, source: str, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"PROXY TCP4 {source} 127.0.0.1 40000 {port}\r\n".encode()
                     + f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_behind_a_proxy_the_source_its_header_names_is_judged(serve_with: Callable[..., Served]) -> None:
    port = free_port()
    # the proxy is 127.0.0.1 (the test): the http section's proxy_from, continued by the extra lines
    s = serve_with("  proxy_from: [\"127.0.0.1/32\"]\n", http=[f"haproxy:tcp:{port}:interface=127.0.0.1"])
    deadline = time.monotonic() + 20
    while True:
        try:
            answer = _proxied_get(port, "127.0.0.1", "/healthz/live")
            break
        except OSError:
            assert time.monotonic() < deadline, s.daemon.output()
            time.sleep(0.1)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert _proxied_get(port, "203.0.113.5", "/metrics").startswith(b"HTTP/1.1 403")
    assert _proxied_get(port, "127.0.0.1", "/metrics").startswith(b"HTTP/1.1 200")


def test_health_live_and_ready(serve_with: Callable[..., Served]) -> None:
    s = serve_with()
    import json

    status, body = get(f"{s.base}/healthz/live")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    status, body = get(f"{s.base}/healthz/ready")
    assert status == 200 and json.loads(body) == {"status": "ready", "database": "ok", "listeners": "up"}
    status, body = get(f"{s.base}/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok", "database": "ok"}  # as it was
    assert get(f"{s.base}/healthz/nothing")[0] == 404


def test_one_view_over_every_worker(serve_with: Callable[..., Served]) -> None:
    """With two workers every scrape sums both: 20 NCIP lookups on fresh connections, spread by the
    kernel over the workers, are all counted whichever worker answers the scrape."""
    s = serve_with("server:\n  workers: 2\n")
    for _ in range(20):
        assert "<ns1:UserId>" in s.ncip(lookup_user(s.card, types=("Name Information",)))
    for _ in range(4):  # whichever worker answers
        found = samples(s.scrape())
        assert value(found, "nlr_ncip_requests_total", service="LookupUser", outcome="ok") == 20
        assert value(found, "nlr_register_up") == 1
    assert s.daemon.stop() == 0

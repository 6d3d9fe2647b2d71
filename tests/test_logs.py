"""The daemon's log (issue 11, item 4): one line per request with the fields operators need and
nothing secret, as text (UTC, the default) or JSON lines; ``logging.requests`` choosing which
requests get a line; the request id on the line is the one the request's audit rows carry; SIGHUP
reads ``logging.level`` again; no ``Starting factory`` noise."""

from __future__ import annotations

import io
import json
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import Daemon, get
from ncip_gateway_helpers import lookup_user
from observability_helpers import PASSWORD, WRONG_PIN, Served, serving
from register_helpers import PIN
from sip2_server_helpers import Client, patron_status
from twisted.logger import Logger, LogLevel, LogPublisher, formatEvent

from gateway import logs
from gateway.register import Register

UTC_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")


@pytest.fixture
def serve_with(register: Register, database_url: str, keys_path: Path, tmp_path: Path,
               daemons: list[Daemon]) -> Callable[..., Served]:
    return serving(register, database_url, keys_path, tmp_path, daemons)


def _traffic(s: Served) -> None:
    """A SIP2 session (a granted and a refused 23), two NCIP lookups (one by card + PIN), a Min side login page."""
    with Client(s.sip2_port, timeout=30) as c:
        assert c.ask(f"9300CNkiosk|CO{PASSWORD}|") == b"941"
        assert "CQY" in c.ask(patron_status(s.card, PIN)).decode()
        assert "CQN" in c.ask(patron_status(s.card, WRONG_PIN)).decode()
    assert "<ns1:UserId>" in s.ncip(lookup_user(s.card, types=("Name Information",)))
    assert "User Authentication Failed" in s.ncip(lookup_user(s.card, pin=WRONG_PIN, types=("Name Information",)))
    assert get(f"{s.base}/min-side/logg-inn")[0] == 200


def _lines(s: Served, wait_for: str | None = None) -> list[str]:
    deadline = time.monotonic() + 10
    while True:
        text = s.daemon.log.read_text(errors="replace")
        if wait_for is None or wait_for in text or time.monotonic() > deadline:
            return text.splitlines()
        time.sleep(0.05)


def _no_secret(s: Served, text: str) -> None:
    for secret in (s.card, PIN, WRONG_PIN, PASSWORD, s.token, s.national_id):
        assert secret not in text, secret


def test_json_lines_parse_and_carry_the_request_fields(serve_with: Callable[..., Served], register: Register) -> None:
    s = serve_with("logging:\n  format: json\n")
    _traffic(s)
    assert s.daemon.stop() == 0
    lines = _lines(s)
    events = [json.loads(line) for line in lines]  # every line, not only the request lines
    assert all({"time", "level", "event", "namespace"} <= set(e) for e in events)
    assert all(e["time"].endswith("Z") for e in events)
    requests = [e for e in events if e["event"] == "request"]
    sip2 = [e for e in requests if e["protocol"] == "sip2"]
    assert [(e["command"], e["outcome"]) for e in sip2] == [("93", "ok"), ("23", "ok"), ("23", "refused")], sip2
    for e in sip2:
        assert e["terminal"] == "kiosk" and e["library"] == "NO-2030000" and e["level"] == "info"
        assert isinstance(e["duration_ms"], float) and re.fullmatch(r"[0-9a-f]{12}", e["request_id"])
    assert sip2[1]["reason"] == "granted" and sip2[2]["reason"] == "pin_wrong"
    ncip = [e for e in requests if e["protocol"] == "ncip"]
    assert [(e["service"], e["outcome"], e["client"], e["library"]) for e in ncip] == [
        ("LookupUser", "ok", "ils", "NO-2030000"), ("LookupUser", "refused", "ils", "NO-2030000")]
    assert ncip[1]["reason"] == "User Authentication Failed"
    web = [e for e in requests if e["protocol"] == "web"]
    assert [(e["service"], e["status"]) for e in web] == [("GET /min-side/logg-inn", "200")]
    assert not any("Starting factory" in line or "Stopping factory" in line for line in lines)
    assert not any(" 0x" in e.get("message", "") for e in events)
    _no_secret(s, "\n".join(lines))

    # the id on each line is the one the request's audit rows carry
    trail = {e.request_id: (e.action, e.outcome) for e in register.audit_events(s.card)}
    assert trail[sip2[1]["request_id"]] == ("patron_check", "granted")
    assert trail[sip2[2]["request_id"]] == ("patron_check", "pin_wrong")
    assert trail[ncip[0]["request_id"]] == ("patron_lookup", "ok")
    assert trail[ncip[1]["request_id"]][0] == "patron_check"


def test_text_lines_are_stamped_in_utc_and_readable(serve_with: Callable[..., Served]) -> None:
    s = serve_with()
    _traffic(s)
    lines = _lines(s, wait_for="web GET")
    requests = [line for line in lines if "[nlr.request#info]" in line]
    assert len(requests) == 6, requests
    assert all(UTC_STAMP.match(line) for line in lines if line[:1].isdigit())
    granted = next(line for line in requests if "reason=granted" in line)
    assert re.search(r"\] sip2 23 terminal=kiosk library=NO-2030000 outcome=ok reason=granted [0-9.]+ ms "
                     r"id=[0-9a-f]{12}$", granted), granted
    refused = next(line for line in requests if "ncip" in line and "refused" in line)
    assert 'reason="User Authentication Failed"' in refused and "client=ils" in refused, refused
    assert not any("Starting factory" in line for line in lines)
    assert not any('"POST /ncip' in line or '"GET /min-side' in line for line in lines)  # their own lines instead
    _no_secret(s, "\n".join(lines))


def test_only_refusals_get_a_line_when_told(serve_with: Callable[..., Served]) -> None:
    s = serve_with("logging:\n  format: json\n  requests: refused\n")
    _traffic(s)
    assert s.daemon.stop() == 0
    requests = [e for e in map(json.loads, _lines(s)) if e["event"] == "request"]
    assert [(e["protocol"], e["outcome"]) for e in requests] == [("sip2", "refused"), ("ncip", "refused")], requests


def test_no_request_lines_when_told(serve_with: Callable[..., Served]) -> None:
    s = serve_with("logging:\n  requests: none\n")
    _traffic(s)
    assert s.daemon.stop() == 0
    assert not any("[nlr.request#" in line for line in _lines(s))


def test_sighup_reads_the_log_level_again(serve_with: Callable[..., Served], tmp_path: Path) -> None:
    s = serve_with()
    config = tmp_path / "nlr.yaml"
    config.write_text(config.read_text() + "logging:\n  level: warn\n")
    s.daemon.proc.send_signal(signal.SIGHUP)
    _lines(s, wait_for="SIGHUP: log level warn")
    _traffic(s)
    time.sleep(0.3)
    after = "\n".join(_lines(s)).split("SIGHUP: log level warn", 1)[1]
    assert "[nlr.request#info]" not in after
    config.write_text(config.read_text().replace("level: warn", "level: info"))
    s.daemon.proc.send_signal(signal.SIGHUP)
    _lines(s, wait_for="SIGHUP: log level info")
    _traffic(s)
    assert "[nlr.request#info]" in "\n".join(_lines(s, wait_for="web GET")).split("SIGHUP: log level info", 1)[1]
    assert s.daemon.stop() == 0


def test_a_failure_is_one_json_line_with_its_traceback() -> None:
    out = io.StringIO()
    publisher = LogPublisher(logs.observer(out, "json"))
    log = Logger(namespace="nlr.test", observer=publisher)
    try:
        raise ValueError("boom")
    except ValueError:
        log.failure("it failed for {who}", who="kiosk")
    log.info("Starting factory {factory!r}", factory=object())  # Twisted's noise: dropped
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines
    event = json.loads(lines[0])
    assert event["level"] == "critical" and event["message"] == "it failed for kiosk"
    assert "ValueError: boom" in event["traceback"]


def test_request_lines_are_not_even_built_when_not_wanted(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[Any] = []
    monkeypatch.setattr(logs, "request", lambda *a, **k: built.append(a))
    try:
        logs.set_requests("none")
        assert not logs.wants("ok") and not logs.wants("refused")
        logs.set_requests("refused")
        assert not logs.wants("ok") and logs.wants("refused") and logs.wants("error")
    finally:
        logs.set_requests("all")
    assert logs.wants("ok")


def test_the_level_filter_follows_set_level() -> None:
    out = io.StringIO()
    publisher = LogPublisher(logs.observer(out, "text"))
    log = Logger(namespace="nlr.test", observer=publisher)
    try:
        logs.set_level("warn")
        log.info("hidden")
        log.warn("shown")
    finally:
        logs.set_level("info")
    log.info("shown again")
    text = out.getvalue()
    assert "hidden" not in text and "shown" in text and "shown again" in text
    assert all(UTC_STAMP.match(line) for line in text.splitlines())
    assert formatEvent({"log_format": "{x}", "x": 1, "log_level": LogLevel.info}) == "1"
